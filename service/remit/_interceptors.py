"""Server interceptors, installed in this fixed order (outermost first):

1. recovery   — any unexpected exception becomes INTERNAL with an error id; never an answer
2. validation — request size and identifier limits; engine RequestErrors become
                INVALID_ARGUMENT / NOT_FOUND with a google.rpc.BadRequest naming the field
3. audit      — one decision-log entry per Authorise answer
4. logging    — method, status code and latency; never request contents
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from remit._audit import AuditSink
from remit._errors import NotFound, RequestError

log = logging.getLogger("remit.server")

Behaviour = Callable[[Any, grpc.ServicerContext], Any]

MAX_STRING = 256
MAX_REPEATED = 128
_CONTROL = re.compile(r"[\x00-\x1f]")  # the same test as any(ord(ch) < 32), done in C


def _wrap(
    handler: grpc.RpcMethodHandler[Any, Any] | None, wrap: Callable[[Behaviour], Behaviour]
) -> Any:
    if handler is None or handler.unary_unary is None:
        return handler
    return grpc.unary_unary_rpc_method_handler(
        wrap(handler.unary_unary),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _aborted(context: grpc.ServicerContext) -> bool:
    code = context.code()  # type: ignore[attr-defined]
    return code is not None and code != grpc.StatusCode.OK


def abort_request_error(context: grpc.ServicerContext, exc: RequestError) -> None:
    code = code_pb2.NOT_FOUND if isinstance(exc, NotFound) else code_pb2.INVALID_ARGUMENT
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
    status = status_pb2.Status(code=code, message=str(exc), details=[detail])
    context.abort_with_status(rpc_status.to_status(status))


class RecoveryInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        def wrap(inner: Behaviour) -> Behaviour:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return inner(request, context)
                except Exception:
                    if _aborted(context):
                        raise
                    error_id = uuid.uuid4().hex[:12]
                    log.exception("internal error %s in %s", error_id, details.method)
                    context.abort(
                        grpc.StatusCode.INTERNAL, f"internal error {error_id}; no decision was made"
                    )

            return behaviour

        return _wrap(continuation(details), wrap)


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
    from remit._errors import InvalidArgument

    return InvalidArgument(field, message)


class ValidationInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        def wrap(inner: Behaviour) -> Behaviour:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    if isinstance(request, Message):
                        check_message(request)
                    return inner(request, context)
                except RequestError as exc:
                    abort_request_error(context, exc)

            return behaviour

        return _wrap(continuation(details), wrap)


class AuditInterceptor(grpc.ServerInterceptor):
    """Writes one decision-log entry for every Authorise that returns an answer."""

    def __init__(self, sink: AuditSink) -> None:
        self._sink = sink

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        if not details.method.endswith("/Authorise"):
            return continuation(details)

        def wrap(inner: Behaviour) -> Behaviour:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                started = time.perf_counter()
                response = inner(request, context)
                self._sink.write_decision(
                    request, response, context.peer(), time.perf_counter() - started
                )
                return response

            return behaviour

        return _wrap(continuation(details), wrap)


class LoggingInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
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
                    log.info(
                        "rpc %s %s %.3fms",
                        details.method,
                        code,
                        (time.perf_counter() - started) * 1000,
                    )

            return behaviour

        return _wrap(continuation(details), wrap)
