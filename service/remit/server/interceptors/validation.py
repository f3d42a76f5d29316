"""Validation: who is calling (mTLS identity / dev token) and may they query this council
(PERMISSION_DENIED); request size and identifier limits; engine RequestErrors become
INVALID_ARGUMENT / NOT_FOUND with a google.rpc.BadRequest naming the field.

The caller is held in a context variable (:data:`remit.server.access.CALLER`) for the
duration of the call only, and defaults to a caller allowed nothing. Batch items are checked
one by one by the servicer (:func:`check_message`), so one bad item fails only itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from remit.model.errors import InvalidArgument, RequestError
from remit.server.access import CALLER, AccessPolicy, check_council
from remit.server.interceptors._handlers import (
    Behaviour,
    StreamBehaviour,
    request_error_code,
    wrap,
)
from remit.server.limits import StreamSlots
from remit.server.registry import UNDECODABLE
from remit.v1 import remit_pb2 as pb

log = logging.getLogger("remit.server")

MAX_STRING = 256
MAX_REPEATED = 128
_CONTROL = re.compile(r"[\x00-\x1f]")  # the same test as any(ord(ch) < 32), done in C


def status_code(exc: RequestError) -> int:
    """The google.rpc code a refused request is answered with."""
    return request_error_code(exc)


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


_SCALAR, _MESSAGE, _MAP, _REPEATED = range(4)
_KINDS: dict[FieldDescriptor, int] = {}


def _kind(fd: FieldDescriptor) -> int:
    """A field's kind, cached per descriptor (GetOptions is slow per call); bounded: one
    entry per field of the compiled protos."""
    kind = _KINDS.get(fd)
    if kind is None:
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            kind = _MAP
        elif fd.is_repeated:
            kind = _REPEATED
        elif fd.message_type is not None:
            kind = _MESSAGE
        else:
            kind = _SCALAR
        _KINDS[fd] = kind
    return kind


def check_message(msg: Message, prefix: str = "") -> None:
    """Generic limits on every string and repeated field; raises InvalidArgument."""
    for fd, value in msg.ListFields():
        kind = _KINDS.get(fd)
        if kind is None:
            kind = _kind(fd)
        if kind == _SCALAR:
            if isinstance(value, str) and (len(value) > MAX_STRING or _CONTROL.search(value)):
                check_string(f"{prefix}{fd.name}", value)
            continue
        name = f"{prefix}{fd.name}"
        if kind == _MESSAGE:
            check_message(value, f"{name}.")
        elif kind == _MAP:
            if len(value) > MAX_REPEATED:
                raise _limit(name, f"at most {MAX_REPEATED} entries")
            for key, item in value.items():
                if isinstance(key, str) and len(key) > MAX_STRING:
                    raise _limit(name, f"keys are at most {MAX_STRING} characters")
                if isinstance(item, Message):
                    check_message(item, f"{name}[{key}].")
                elif isinstance(item, str) and len(item) > MAX_STRING:
                    raise _limit(f"{name}[{key}]", f"at most {MAX_STRING} characters")
        else:
            if len(value) > MAX_REPEATED:
                raise _limit(name, f"at most {MAX_REPEATED} entries")
            for i, item in enumerate(value):
                if isinstance(item, Message):
                    check_message(item, f"{name}[{i}].")
                elif isinstance(item, str) and len(item) > MAX_STRING:
                    raise _limit(f"{name}[{i}]", f"at most {MAX_STRING} characters")


def check_string(name: str, value: str) -> None:
    """The limits of :func:`check_message` on one string field ``name``."""
    if len(value) > MAX_STRING:
        raise _limit(name, f"at most {MAX_STRING} characters")
    if _CONTROL.search(value):
        raise _limit(name, "control characters are not allowed")


def _limit(field: str, message: str) -> RequestError:
    return InvalidArgument(field, message)


def _undecodable() -> RequestError:
    return InvalidArgument("request", "the message's bytes do not decode as this method's request")


def _decoded(requests: Iterator[Any]) -> Iterator[Any]:
    """A stream's messages; one that did not decode ends the call with INVALID_ARGUMENT."""
    for request in requests:
        if request is UNDECODABLE:
            raise _undecodable()
        yield request


class ValidationInterceptor(grpc.ServerInterceptor):
    def __init__(self, access: AccessPolicy, streams: StreamSlots | None = None) -> None:
        self._access = access
        self._streams = streams

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
                    if request is UNDECODABLE:
                        raise _undecodable()
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
                caller = resolve(context)
                slots = self._streams
                if slots is not None and not slots.acquire(caller.identity):
                    log.warning("stream refused: all %d stream slots in use", slots.total)
                    context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"too many open streams: at most {slots.total}, "
                        f"{slots.per_caller} per caller; retry later or use AuthoriseBatch",
                    )
                token = CALLER.set(caller)
                try:
                    decoded = _decoded(requests)
                    if slots is not None:
                        decoded = slots.watch(context, decoded)
                    yield from inner(decoded, context)
                except RequestError as exc:
                    abort_request_error(context, exc)
                finally:
                    CALLER.reset(token)
                    if slots is not None:
                        slots.release(caller.identity)

            return behaviour

        return wrap(continuation(details), unary, stream)
