"""Thin gRPC servicers: convert, call plain functions, convert back.

An Authorise request, and each item of a batch or stream, goes: :mod:`remit.server.convert`
(wire -> :class:`~remit.model.request.Request`) -> the authorise use case
(:func:`remit.engine.authorise.authorise`, the same for ``remit check`` and ``remit test``)
-> convert back, then the decision hook (:mod:`remit.server.hook`: log, count, trace) before
the answer is returned.

Errors are raised as :class:`RequestError`; the validation interceptor turns them into
INVALID_ARGUMENT / NOT_FOUND with the field named. In a batch or stream each item gets its
own result or its own error, so one bad item never fails the rest; an item whose decision-log
entry the sink refuses (strict mode) is an UNAVAILABLE item, a unary call an UNAVAILABLE call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence

import grpc
from google.rpc import code_pb2

from remit.audit.log import AuditUnavailable, CallInfo
from remit.distribution.holder import PolicyHolder
from remit.engine.authorise import Outcome
from remit.engine.authorise import authorise as authorise_request
from remit.engine.evaluate import council_policy
from remit.engine.notify import notifications
from remit.engine.queries import permitted_decisions, who_may_decide
from remit.model.conditions import FactValue
from remit.model.errors import InvalidArgument, RequestError
from remit.model.policy import PolicySet
from remit.model.request import Grant
from remit.server import convert as _convert
from remit.server.access import CALLER, check_council
from remit.server.hook import DecisionHook
from remit.server.interceptors.validation import check_message, check_string, status_code
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

log = logging.getLogger("remit.server")

DEFAULT_BATCH_LIMIT = 100


def _item_error(correlation_id: str, code: int, message: str, field: str = "") -> pb.BatchResult:
    return pb.BatchResult(
        correlation_id=correlation_id,
        error=pb.ItemError(code=code, message=message, field=field),
    )


def _request_error(correlation_id: str, exc: RequestError) -> pb.BatchResult:
    return _item_error(correlation_id, status_code(exc), str(exc), exc.field)


def answer(
    policies: PolicySet,
    request: pb.AuthoriseRequest,
    window: _convert.TimeWindow = _convert.TimeWindow(),  # noqa: B008  # frozen, shared
) -> tuple[Outcome, pb.AuthoriseResponse]:
    """One wire request through the use case: its outcome and its response. A claimed
    decision time outside ``window`` is refused."""
    req = _convert.request_from_proto(request, policies, window)
    outcome = authorise_request(policies, req, _convert.host_from_proto(request))
    return outcome, _convert.outcome_to_proto(outcome)


def authorise(policies: PolicySet, request: pb.AuthoriseRequest) -> pb.AuthoriseResponse:
    """The response to one wire request, without the decision hook (benchmarks, tools)."""
    return answer(policies, request)[1]


def call_info(request: pb.AuthoriseRequest, started: float, correlation_id: str = "") -> CallInfo:
    """What the decision log keeps of the call: the current caller, the latency since
    ``started`` (``time.perf_counter()``), the ids, and never the request's content."""
    return CallInfo(
        caller=CALLER.get().identity,
        seconds=time.perf_counter() - started,
        correlation_id=correlation_id,
        case_reference=request.case_reference,
        masked_fields=_convert.masked_fields(request),
    )


def authorise_item(
    policies: PolicySet,
    item: pb.BatchItem,
    hook: DecisionHook,
    window: _convert.TimeWindow = _convert.TimeWindow(),  # noqa: B008  # frozen, shared
) -> pb.BatchResult:
    """One batch item: its answer (logged, counted and traced), or its own error. An internal
    fault is INTERNAL; an entry the decision log refuses is UNAVAILABLE."""
    result = pb.BatchResult(correlation_id=item.correlation_id)
    try:
        check_string("correlation_id", item.correlation_id)  # the item's one own string
        check_message(item.request)  # fields named as in a single AuthoriseRequest
        check_council(item.request.council)
        started = time.perf_counter()  # as for Authorise: after the generic checks
        outcome, response = answer(policies, item.request, window)
        hook.answered(outcome, call_info(item.request, started, item.correlation_id))
        result.response.CopyFrom(response)
    except RequestError as exc:
        return _request_error(item.correlation_id, exc)
    except AuditUnavailable as exc:
        return _item_error(item.correlation_id, code_pb2.UNAVAILABLE, str(exc))
    except Exception:
        log.exception("internal error in batch item")
        return _item_error(
            item.correlation_id, code_pb2.INTERNAL, "internal error; no decision was made"
        )
    return result


def _typed_context(
    policies: PolicySet, council: str, context: pb.Context
) -> tuple[dict[str, FactValue], str, Grant | None]:
    """The request context as typed facts, scheme facts checked against their declared kinds
    (an unknown council is left to the engine, which names the field)."""
    return _convert.context_from_proto(context, policies.councils.get(council))


class AuthorisationServicer(pb_grpc.AuthorisationServiceServicer):
    """Authorise, AuthoriseBatch, AuthoriseStream and the list queries. ``hook`` sees every
    answered decision (the decision log, metrics, tracing: see :mod:`remit.server.hook`)."""

    def __init__(
        self,
        holder: PolicyHolder,
        hook: DecisionHook,
        batch_limit: int = DEFAULT_BATCH_LIMIT,
        window: _convert.TimeWindow = _convert.TimeWindow(),  # noqa: B008  # frozen, shared
    ) -> None:
        self._holder = holder
        self._hook = hook
        self._batch_limit = batch_limit
        self._window = window

    def Authorise(
        self, request: pb.AuthoriseRequest, context: grpc.ServicerContext
    ) -> pb.AuthoriseResponse:
        started = time.perf_counter()
        outcome, response = answer(self._holder.current(), request, self._window)  # one version
        try:
            self._hook.answered(outcome, call_info(request, started))
        except AuditUnavailable as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return response

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
        return pb.AuthoriseBatchResponse(results=self._items(policies, request.items))

    def _items(self, policies: PolicySet, items: Sequence[pb.BatchItem]) -> list[pb.BatchResult]:
        """A batch's or stream message's items, their entries logged as one group (one
        fsync); if the log refused the group, every answered item is UNAVAILABLE."""
        with self._hook.group() as group:
            results = [authorise_item(policies, item, self._hook, self._window) for item in items]
        if group.failed is None:
            return results
        return [
            _item_error(r.correlation_id, code_pb2.UNAVAILABLE, str(group.failed))
            if r.HasField("response")
            else r
            for r in results
        ]

    def AuthoriseStream(
        self, request_iterator: Iterator[pb.AuthoriseStreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.AuthoriseStreamResponse]:
        for message in request_iterator:
            if not context.is_active():  # cancelled or past its deadline: stop deciding
                return
            too_many = self._too_many(len(message.items))
            if too_many is not None:  # the whole message is refused, item by item
                results = [_request_error(item.correlation_id, too_many) for item in message.items]
                yield pb.AuthoriseStreamResponse(results=results)
                continue
            policies = self._holder.current()  # each message under one version
            yield pb.AuthoriseStreamResponse(results=self._items(policies, message.items))

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
        policy = council_policy(policies, request.council)  # NOT_FOUND with the closest ids
        return _convert.scheme_to_proto(policies, policy)
