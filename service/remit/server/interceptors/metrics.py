"""Metrics: every call counted by method and the status code it ended with, and the calls
in flight (:class:`remit.server.metrics.Metrics`). It sits outside recovery, so INTERNAL is
counted too. Decisions are not counted here: the decision hook counts each answered
decision, unary, batch item or stream item alike (``Metrics.on_decision``)."""

from __future__ import annotations

import time
from typing import Any

import grpc

from remit.server.interceptors._handlers import observed, status_name
from remit.server.metrics import Metrics


class MetricsInterceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        method = details.method
        m = self._m
        handler = continuation(details)
        streaming = bool(handler is not None and handler.request_streaming)

        def start() -> float:
            m.rpc_started(method, streaming)
            return time.perf_counter()

        def finish(
            started: float, context: grpc.ServicerContext, raised: BaseException | None
        ) -> None:
            m.in_flight.dec()
            seconds = time.perf_counter() - started
            m.count_rpc(method, status_name(context, raised), seconds, streaming)

        return observed(handler, start, finish)
