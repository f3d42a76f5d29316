"""Logging: one line per call with the method, the status code it ends with and the
latency; never request contents. OK calls at DEBUG (a line per decision is the decision
log's job), every other code at INFO.

It is the innermost interceptor, so a refused request reaches it as the raw RequestError
(validation, outside it, turns that into the status): the code logged is the one the call
will end with (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, UNAVAILABLE, INTERNAL...),
never UNKNOWN for a client error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import grpc

from remit.server.interceptors._handlers import Behaviour, StreamBehaviour, status_name, wrap

log = logging.getLogger("remit.server")


class LoggingInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        method = details.method

        def emit(code: str, started: float) -> None:
            log.log(
                logging.DEBUG if code == "OK" else logging.INFO,
                "rpc %s %s %.3fms",
                method,
                code,
                (time.perf_counter() - started) * 1000,
            )

        def unary(inner: Behaviour) -> Behaviour:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                started = time.perf_counter()
                try:
                    response = inner(request, context)
                except Exception as exc:
                    emit(status_name(context, exc), started)
                    raise
                emit(status_name(context, None), started)
                return response

            return behaviour

        def stream(inner: StreamBehaviour) -> StreamBehaviour:
            def behaviour(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                started = time.perf_counter()
                try:
                    yield from inner(requests, context)
                except Exception as exc:
                    emit(status_name(context, exc), started)
                    raise
                emit(status_name(context, None), started)

            return behaviour

        return wrap(continuation(details), unary, stream)
