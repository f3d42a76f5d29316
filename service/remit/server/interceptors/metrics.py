"""Metrics: every call counted by method and the status code it ended with, and the calls
in flight (:class:`remit.server.metrics.Metrics`). It sits outside recovery, so INTERNAL is
counted too. Decisions are not counted here: the decision hook counts each answered
decision, unary, batch item or stream item alike (``Metrics.on_decision``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc

from remit.server.interceptors._handlers import Behaviour, StreamBehaviour, status_name, wrap
from remit.server.metrics import Metrics


class MetricsInterceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        method = details.method
        m = self._m

        def unary(inner: Behaviour) -> Behaviour:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                m.in_flight.inc()
                raised: BaseException | None = None
                try:
                    return inner(request, context)
                except BaseException as exc:
                    raised = exc
                    raise
                finally:
                    m.in_flight.dec()
                    m.count_rpc(method, status_name(context, raised))

            return behaviour

        def stream(inner: StreamBehaviour) -> StreamBehaviour:
            def behaviour(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                m.in_flight.inc()
                raised: BaseException | None = None
                try:
                    yield from inner(requests, context)
                except BaseException as exc:
                    raised = exc
                    raise
                finally:
                    m.in_flight.dec()
                    m.count_rpc(method, status_name(context, raised))

            return behaviour

        return wrap(continuation(details), unary, stream)
