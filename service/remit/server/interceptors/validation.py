"""Server interceptors, installed in this fixed order (outermost first):

1. recovery   — any unexpected exception becomes INTERNAL with an error id; never an answer
2. validation — who is calling (mTLS identity / dev token) and may they query this council
                (PERMISSION_DENIED); request size and identifier limits; engine RequestErrors
                become INVALID_ARGUMENT / NOT_FOUND with a google.rpc.BadRequest naming the field
3. audit      — one decision-log entry per answered decision (Authorise, and every item of
                AuthoriseBatch / AuthoriseStream); in strict mode an entry the sink refuses
                fails the call (UNAVAILABLE) rather than return an unlogged decision
4. logging    — method, status code and latency; never request contents

Unary-unary and stream-stream handlers are both wrapped. The caller is held in a context
variable for the duration of the call only, and defaults to a caller allowed nothing.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from remit.audit.log import AuditLog, AuditUnavailable
from remit.model.errors import InvalidArgument, NotFound, RequestError
from remit.server.access import CALLER, AccessPolicy, PermissionDenied, check_council
from remit.v1 import remit_pb2 as pb

log = logging.getLogger("remit.server")

Behaviour = Callable[[Any, grpc.ServicerContext], Any]
StreamBehaviour = Callable[[Iterator[Any], grpc.ServicerContext], Iterator[Any]]

MAX_STRING = 256
MAX_REPEATED = 128
_CONTROL = re.compile(r"[\x00-\x1f]")  # the same test as any(ord(ch) < 32), done in C


def _wrap(
    handler: grpc.RpcMethodHandler[Any, Any] | None,
    unary: Callable[[Behaviour], Behaviour],
    stream: Callable[[StreamBehaviour], StreamBehaviour] | None = None,
) -> Any:
    if handler is None:
        return handler
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            unary(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None and stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            stream(handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


def _aborted(context: grpc.ServicerContext) -> bool:
    code = context.code()  # type: ignore[attr-defined]
    return code is not None and code != grpc.StatusCode.OK


def status_code(exc: RequestError) -> int:
    if isinstance(exc, PermissionDenied):
        return int(code_pb2.PERMISSION_DENIED)
    if isinstance(exc, NotFound):
        return int(code_pb2.NOT_FOUND)
    return int(code_pb2.INVALID_ARGUMENT)


def abort_request_error(context: grpc.ServicerContext, exc: RequestError) -> None:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=exc.field, description=exc.message
                )
            ]
        )
    )
    status = status_pb2.Status(code=status_code(exc), message=str(exc), details=[detail])
    context.abort_with_status(rpc_status.to_status(status))


class RecoveryInterceptor(grpc.ServerInterceptor):
    """Outermost of the fixed four. It keeps the wrapped chain per method: the inner
    interceptors depend only on the method name (never on per-call details), so the chain is
    built once per method instead of on every call. Unknown methods are not kept."""

    def __init__(self) -> None:
        self._chains: dict[str, Any] = {}

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        chain = self._chains.get(details.method)
        if chain is None:
            chain = self._build(continuation, details)
            if chain is not None:
                self._chains[details.method] = chain
        return chain

    def _build(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        method = details.method

        def fail(context: grpc.ServicerContext) -> None:
            error_id = uuid.uuid4().hex[:12]
            log.exception("internal error %s in %s", error_id, method)
            context.abort(
                grpc.StatusCode.INTERNAL, f"internal error {error_id}; no decision was made"
            )

        def unary(inner: Behaviour) -> Behaviour:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return inner(request, context)
                except Exception:
                    if _aborted(context):
                        raise
                    fail(context)

            return behaviour

        def stream(inner: StreamBehaviour) -> StreamBehaviour:
            def behaviour(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from inner(requests, context)
                except Exception:
                    if _aborted(context):
                        raise
                    fail(context)

            return behaviour

        return _wrap(continuation(details), unary, stream)


_MAP_FIELDS: dict[FieldDescriptor, bool] = {}


def _is_map(fd: FieldDescriptor) -> bool:
    """Whether a field is a map (cached per descriptor: GetOptions is slow per call)."""
    known = _MAP_FIELDS.get(fd)
    if known is None:
        known = fd.message_type is not None and bool(fd.message_type.GetOptions().map_entry)
        _MAP_FIELDS[fd] = known  # bounded: one entry per field of the compiled protos
    return known


def check_message(msg: Message, prefix: str = "") -> None:
    """Generic limits on every string and repeated field; raises InvalidArgument."""
    for fd, value in msg.ListFields():
        name = f"{prefix}{fd.name}"
        if _is_map(fd):
            if len(value) > MAX_REPEATED:
                raise _limit(name, f"at most {MAX_REPEATED} entries")
            for key, item in value.items():
                if isinstance(key, str) and len(key) > MAX_STRING:
                    raise _limit(name, f"keys are at most {MAX_STRING} characters")
                if isinstance(item, Message):
                    check_message(item, f"{name}[{key}].")
                elif isinstance(item, str) and len(item) > MAX_STRING:
                    raise _limit(f"{name}[{key}]", f"at most {MAX_STRING} characters")
        elif fd.is_repeated:
            if len(value) > MAX_REPEATED:
                raise _limit(name, f"at most {MAX_REPEATED} entries")
            for i, item in enumerate(value):
                if isinstance(item, Message):
                    check_message(item, f"{name}[{i}].")
                elif isinstance(item, str) and len(item) > MAX_STRING:
                    raise _limit(f"{name}[{i}]", f"at most {MAX_STRING} characters")
        elif isinstance(value, Message):
            check_message(value, f"{name}.")
        elif isinstance(value, str):
            if len(value) > MAX_STRING:
                raise _limit(name, f"at most {MAX_STRING} characters")
            if _CONTROL.search(value):
                raise _limit(name, "control characters are not allowed")


def _limit(field: str, message: str) -> RequestError:
    return InvalidArgument(field, message)


class ValidationInterceptor(grpc.ServerInterceptor):
    def __init__(self, access: AccessPolicy) -> None:
        self._access = access

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        def resolve(context: grpc.ServicerContext) -> Any:
            caller = self._access.resolve(context)
            if caller is None:
                log.warning(
                    "permission denied: unknown caller %s on %s", context.peer(), details.method
                )
                context.abort(grpc.StatusCode.PERMISSION_DENIED, "caller identity not recognised")
            return caller

        def unary(inner: Behaviour) -> Behaviour:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                token = CALLER.set(resolve(context))
                try:
                    # batch items are checked one by one, so one bad item fails only itself
                    if isinstance(request, Message) and not isinstance(
                        request, pb.AuthoriseBatchRequest
                    ):
                        check_message(request)
                        council = getattr(request, "council", None)
                        if isinstance(council, str) and council:
                            check_council(council)
                    return inner(request, context)
                except RequestError as exc:
                    abort_request_error(context, exc)
                finally:
                    CALLER.reset(token)

            return behaviour

        def stream(inner: StreamBehaviour) -> StreamBehaviour:
            def behaviour(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                token = CALLER.set(resolve(context))
                try:
                    yield from inner(requests, context)
                except RequestError as exc:
                    abort_request_error(context, exc)
                finally:
                    CALLER.reset(token)

            return behaviour

        return _wrap(continuation(details), unary, stream)


class AuditInterceptor(grpc.ServerInterceptor):
    """One decision-log entry per answered decision, single or batched."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def _write(
        self,
        request: pb.AuthoriseRequest,
        response: pb.AuthoriseResponse,
        context: grpc.ServicerContext,
        seconds: float,
        correlation_id: str = "",
    ) -> None:
        try:
            self._audit.write_decision(
                request, response, CALLER.get().identity, seconds, correlation_id
            )
        except AuditUnavailable as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    def _items(
        self,
        items: Any,
        results: Any,
        context: grpc.ServicerContext,
        seconds: float,
    ) -> None:
        for item, result in zip(items, results, strict=False):
            if result.HasField("response"):
                self._write(item.request, result.response, context, seconds, item.correlation_id)

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        method = details.method.rsplit("/", 1)[-1]
        if method not in ("Authorise", "AuthoriseBatch", "AuthoriseStream"):
            return continuation(details)

        def unary(inner: Behaviour) -> Behaviour:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                started = time.perf_counter()
                response = inner(request, context)
                seconds = time.perf_counter() - started
                if method == "Authorise":
                    self._write(request, response, context, seconds)
                else:
                    self._items(
                        request.items,
                        response.results,
                        context,
                        seconds / max(1, len(request.items)),
                    )
                return response

            return behaviour

        def stream(inner: StreamBehaviour) -> StreamBehaviour:
            def behaviour(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                pending: deque[Any] = deque()

                def remember() -> Iterator[Any]:
                    for message in requests:
                        pending.append(message)
                        yield message

                started = time.perf_counter()
                for response in inner(remember(), context):
                    message = pending.popleft()
                    seconds = (time.perf_counter() - started) / max(1, len(message.items))
                    self._items(message.items, response.results, context, seconds)
                    yield response
                    started = time.perf_counter()

            return behaviour

        return _wrap(continuation(details), unary, stream)


class LoggingInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        method = details.method

        def wrap(inner: Behaviour) -> Behaviour:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                started = time.perf_counter()
                code = "OK"
                try:
                    return inner(request, context)
                except Exception:
                    c = context.code()  # type: ignore[attr-defined]
                    code = c.name if c is not None else "UNKNOWN"
                    raise
                finally:
                    # OK calls at DEBUG (a line per decision is the audit log's job);
                    # every error at INFO
                    log.log(
                        logging.DEBUG if code == "OK" else logging.INFO,
                        "rpc %s %s %.3fms",
                        method,
                        code,
                        (time.perf_counter() - started) * 1000,
                    )

            return behaviour

        return _wrap(continuation(details), wrap)
