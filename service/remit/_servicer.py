"""Thin gRPC servicers: convert, call plain functions, convert back.

Errors are raised as :class:`RequestError`; the validation interceptor turns them into
INVALID_ARGUMENT / NOT_FOUND with the field named.
"""

from __future__ import annotations

import grpc

from remit import _convert
from remit._engine import decide
from remit._errors import NotFound
from remit._holder import PolicyHolder
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc


class AuthorisationServicer(pb_grpc.AuthorisationServiceServicer):
    def __init__(self, holder: PolicyHolder) -> None:
        self._holder = holder

    def Authorise(
        self, request: pb.AuthoriseRequest, context: grpc.ServicerContext
    ) -> pb.AuthoriseResponse:
        policies = self._holder.current()  # one whole version for the whole request
        req = _convert.request_from_proto(request)
        policy = policies.councils.get(request.council)
        if policy is not None:
            _convert.check_declared_kinds(policy, request)
        answer = decide(policies, req)
        return _convert.answer_to_proto(answer, request.request_id)


class CatalogueServicer(pb_grpc.CatalogueServiceServicer):
    def __init__(self, holder: PolicyHolder) -> None:
        self._holder = holder

    def ListCouncils(
        self, request: pb.ListCouncilsRequest, context: grpc.ServicerContext
    ) -> pb.ListCouncilsResponse:
        return _convert.councils_to_proto(self._holder.current())

    def GetScheme(
        self, request: pb.GetSchemeRequest, context: grpc.ServicerContext
    ) -> pb.GetSchemeResponse:
        policies = self._holder.current()
        policy = policies.councils.get(request.council)
        if policy is None:
            raise NotFound("council", f"unknown council {request.council!r}")
        return _convert.scheme_to_proto(policies, policy)
