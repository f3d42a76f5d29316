"""Thin gRPC servicers: convert, call plain functions, convert back.

Errors are raised as :class:`RequestError`; the validation interceptor turns them into
INVALID_ARGUMENT / NOT_FOUND with the field named. In a batch or stream each item gets its
own result or its own error, so one bad item never fails the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
from google.rpc import code_pb2

from remit.distribution.holder import PolicyHolder
from remit.engine.evaluate import decide
from remit.engine.notify import Notice, implied, notifications
from remit.engine.queries import permitted_decisions, who_may_decide
from remit.model.conditions import FactValue
from remit.model.errors import InvalidArgument, NotFound, RequestError
from remit.model.policy import CouncilPolicy, PolicySet
from remit.model.request import Grant
from remit.server import convert as _convert
from remit.server.access import CALLER, check_council
from remit.server.interceptors import check_message, status_code
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

log = logging.getLogger("remit.server")

DEFAULT_BATCH_LIMIT = 100


def _checked_kinds(policies: PolicySet, council: str, context: pb.Context) -> CouncilPolicy | None:
    """The council's policy, once its scheme facts are checked against their declared kinds
    (an unknown council is left to the engine, which names the field)."""
    policy = policies.councils.get(council)
    if policy is not None:
        _convert.check_declared_kinds(policy, context)
    return policy


def _item_error(correlation_id: str, exc: RequestError) -> pb.BatchResult:
    return pb.BatchResult(
        correlation_id=correlation_id,
        error=pb.ItemError(code=status_code(exc), message=str(exc), field=exc.field),
    )


def authorise(policies: PolicySet, request: pb.AuthoriseRequest) -> pb.AuthoriseResponse:
    req = _convert.request_from_proto(request)
    policy = _checked_kinds(policies, request.council, request.context)
    host = None
    if request.HasField("host"):  # host records, mapped per council (adapters package)
        from adapters._grpc import add_mapped, apply_host

        req, host = apply_host(request, req)
    answer = decide(policies, req)
    when = req.decision_time or _convert.now()
    notices: list[Notice] = []
    if answer.allowed and policy is not None:
        notices = implied(policy, policy.decisions[answer.decision], req.facts, when)
    response = _convert.answer_to_proto(answer, request.request_id, when, notices)
    if host is not None:
        add_mapped(response, host)
    return response


def authorise_item(policies: PolicySet, item: pb.BatchItem) -> pb.BatchResult:
    """One batch item: its answer, or its own error. An internal fault is INTERNAL."""
    result = pb.BatchResult(correlation_id=item.correlation_id)
    try:
        check_message(pb.BatchItem(correlation_id=item.correlation_id))
        check_message(item.request)  # fields named as in a single AuthoriseRequest
        check_council(item.request.council)
        result.response.CopyFrom(authorise(policies, item.request))
    except RequestError as exc:
        return _item_error(item.correlation_id, exc)
    except Exception:
        log.exception("internal error in batch item")
        result.error.CopyFrom(
            pb.ItemError(code=code_pb2.INTERNAL, message="internal error; no decision was made")
        )
    return result


def _typed_context(
    policies: PolicySet, council: str, context: pb.Context
) -> tuple[dict[str, FactValue], str, Grant | None]:
    """The request context as typed facts, scheme facts checked against their declared kinds."""
    _checked_kinds(policies, council, context)
    return _convert.context_from_proto(context)


class AuthorisationServicer(pb_grpc.AuthorisationServiceServicer):
    def __init__(self, holder: PolicyHolder, batch_limit: int = DEFAULT_BATCH_LIMIT) -> None:
        self._holder = holder
        self._batch_limit = batch_limit

    def Authorise(
        self, request: pb.AuthoriseRequest, context: grpc.ServicerContext
    ) -> pb.AuthoriseResponse:
        return authorise(self._holder.current(), request)  # one version for the request

    def _too_many(self, items: int) -> InvalidArgument | None:
        if items > self._batch_limit:
            return InvalidArgument("items", f"at most {self._batch_limit} items per message")
        return None

    def AuthoriseBatch(
        self, request: pb.AuthoriseBatchRequest, context: grpc.ServicerContext
    ) -> pb.AuthoriseBatchResponse:
        too_many = self._too_many(len(request.items))
        if too_many is not None:
            raise too_many
        policies = self._holder.current()  # the whole batch under one version
        return pb.AuthoriseBatchResponse(
            results=[authorise_item(policies, item) for item in request.items]
        )

    def AuthoriseStream(
        self, request_iterator: Iterator[pb.AuthoriseStreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.AuthoriseStreamResponse]:
        for message in request_iterator:
            if not context.is_active():  # cancelled or past its deadline: stop deciding
                return
            too_many = self._too_many(len(message.items))
            if too_many is not None:  # the whole message is refused, item by item
                results = [_item_error(item.correlation_id, too_many) for item in message.items]
                yield pb.AuthoriseStreamResponse(results=results)
                continue
            policies = self._holder.current()  # each message under one version
            yield pb.AuthoriseStreamResponse(
                results=[authorise_item(policies, item) for item in message.items]
            )

    def ListPermittedDecisions(
        self, request: pb.ListPermittedDecisionsRequest, context: grpc.ServicerContext
    ) -> pb.ListPermittedDecisionsResponse:
        policies = self._holder.current()
        actor = _convert.actor_from_proto(request.actor)
        facts, area, grant = _typed_context(policies, request.council, request.context)
        when = _convert.time_from_proto(request, "decision_time")
        found = permitted_decisions(policies, request.council, actor, facts, area, grant, when)
        return _convert.permitted_to_proto(found, policies.version, when or _convert.now())

    def ListAuthorisers(
        self, request: pb.ListAuthorisersRequest, context: grpc.ServicerContext
    ) -> pb.ListAuthorisersResponse:
        policies = self._holder.current()
        facts, area, grant = _typed_context(policies, request.council, request.context)
        when = _convert.time_from_proto(request, "decision_time")
        who = who_may_decide(policies, request.council, request.decision, facts, area, grant, when)
        return pb.ListAuthorisersResponse(
            authorisers=[_convert.authoriser_to_proto(a) for a in who.authorisers],
            policy_version=policies.version,
            decided_outside=who.decided_outside,
        )

    def Notifications(
        self, request: pb.NotificationsRequest, context: grpc.ServicerContext
    ) -> pb.NotificationsResponse:
        policies = self._holder.current()
        facts, area, grant = _typed_context(policies, request.council, request.context)
        if area or grant is not None:
            field = "context.service_area" if area else "context.grant"
            raise InvalidArgument(field, "does not apply to a notification")
        when = _convert.time_from_proto(request, "decision_time")
        found = notifications(policies, request.council, request.event, facts, when)
        return pb.NotificationsResponse(
            notifications=[_convert.notice_to_proto(n) for n in found],
            policy_version=policies.version,
        )


class CatalogueServicer(pb_grpc.CatalogueServiceServicer):
    def __init__(self, holder: PolicyHolder) -> None:
        self._holder = holder

    def ListCouncils(
        self, request: pb.ListCouncilsRequest, context: grpc.ServicerContext
    ) -> pb.ListCouncilsResponse:
        caller = CALLER.get()
        return _convert.councils_to_proto(self._holder.current(), caller.may)

    def GetScheme(
        self, request: pb.GetSchemeRequest, context: grpc.ServicerContext
    ) -> pb.GetSchemeResponse:
        policies = self._holder.current()
        policy = policies.councils.get(request.council)
        if policy is None:
            raise NotFound("council", f"unknown council {request.council!r}")
        return _convert.scheme_to_proto(policies, policy)
