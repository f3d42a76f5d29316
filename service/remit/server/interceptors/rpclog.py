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
from typing import Any

import grpc

from remit.server.interceptors._handlers import observed, status_name

log = logging.getLogger("remit.server")


class LoggingInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        method = details.method

        def finish(
            started: float, context: grpc.ServicerContext, raised: BaseException | None
        ) -> None:
            code = status_name(context, raised)
            log.log(
                logging.DEBUG if code == "OK" else logging.INFO,
                "rpc %s %s %.3fms",
                method,
                code,
                (time.perf_counter() - started) * 1000,
            )

        return observed(continuation(details), time.perf_counter, finish)
