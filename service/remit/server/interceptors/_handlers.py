"""What every interceptor shares: wrapping a method's handler, and the status a call ends with.

Unary-unary and stream-stream handlers are wrapped (remit has no other kinds); any other
kind passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.rpc import code_pb2

from remit.model.errors import NotFound, RequestError
from remit.server.access import PermissionDenied

Behaviour = Callable[[Any, grpc.ServicerContext], Any]
StreamBehaviour = Callable[[Iterator[Any], grpc.ServicerContext], Iterator[Any]]
T = TypeVar("T")


def wrap(
    handler: grpc.RpcMethodHandler[Any, Any] | None,
    unary: Callable[[Behaviour], Behaviour],
    stream: Callable[[StreamBehaviour], StreamBehaviour] | None = None,
) -> Any:
    """``handler`` with its behaviour wrapped by ``unary`` (unary-unary) or ``stream``
    (stream-stream; unwrapped when ``stream`` is None)."""
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


def observed(
    handler: grpc.RpcMethodHandler[Any, Any] | None,
    start: Callable[[], T],
    finish: Callable[[T, grpc.ServicerContext, BaseException | None], None],
) -> Any:
    """``handler`` with ``start()`` before the call and ``finish(started, context, raised)``
    after it, however it ends (``raised``: the exception it ended with, or None), for
    unary-unary and stream-stream alike: what the metrics, tracing and logging interceptors
    each need."""

    def unary(inner: Behaviour) -> Behaviour:
        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            started = start()
            raised: BaseException | None = None
            try:
                return inner(request, context)
            except BaseException as exc:
                raised = exc
                raise
            finally:
                finish(started, context, raised)

        return behaviour

    def stream(inner: StreamBehaviour) -> StreamBehaviour:
        def behaviour(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            started = start()
            raised: BaseException | None = None
            try:
                yield from inner(requests, context)
            except BaseException as exc:
                raised = exc
                raise
            finally:
                finish(started, context, raised)

        return behaviour

    return wrap(handler, unary, stream)


def aborted(context: grpc.ServicerContext) -> bool:
    """Whether the call has already been given a status other than OK (``abort``)."""
    code = context.code()  # type: ignore[attr-defined]
    return code is not None and code != grpc.StatusCode.OK


def request_error_code(exc: RequestError) -> int:
    """The google.rpc code of a refused request: PERMISSION_DENIED, NOT_FOUND or
    INVALID_ARGUMENT."""
    if isinstance(exc, PermissionDenied):
        return int(code_pb2.PERMISSION_DENIED)
    if isinstance(exc, NotFound):
        return int(code_pb2.NOT_FOUND)
    return int(code_pb2.INVALID_ARGUMENT)


def status_name(context: grpc.ServicerContext, exc: BaseException | None) -> str:
    """The status code name the call ends with, as seen from inside the chain: the code
    already set (an abort), else OK when nothing was raised, the refusal's code for a
    RequestError (validation turns it into that status), CANCELLED for a stream closed
    under it, and INTERNAL for anything else
    (recovery turns it into INTERNAL)."""
    code = context.code()  # type: ignore[attr-defined]
    if code is not None and (exc is None or code != grpc.StatusCode.OK):
        name: str = code.name
        return name
    if exc is None:
        return "OK"
    if isinstance(exc, GeneratorExit):  # a stream the client cancelled, closed by grpc
        return "CANCELLED"
    if isinstance(exc, RequestError):
        return str(code_pb2.Code.Name(request_error_code(exc)))
    return "INTERNAL"
