"""Tracing: one OpenTelemetry server span per call, outermost so it covers every other
interceptor (:mod:`remit.server.tracing` sets it up, only when the OTEL_* settings ask).

Span attributes are a fixed list: ``rpc.system``, ``rpc.service``, ``rpc.method``,
``rpc.grpc.status_code``; never the actor, the peer address, the request id or any context
fact, and exceptions are not recorded (their messages may echo the request). Each answered
decision is a child span of its call's span, made by the decision hook
(``Tracing.on_decision``), for unary, batch and stream alike.
"""

from __future__ import annotations

from typing import Any

import grpc

from remit.server.interceptors._handlers import observed, status_name

STATUS_NUMBER = {c.name: c.value[0] for c in grpc.StatusCode}


class TracingInterceptor(grpc.ServerInterceptor):
    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        full = details.method.lstrip("/")
        service, _, method = full.partition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
        tracer = self._tracer

        def span() -> Any:
            return tracer.start_as_current_span(
                full,
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            )

        def start() -> tuple[Any, Any]:
            manager = span()
            return manager, manager.__enter__()

        def finish(
            started: tuple[Any, Any], context: grpc.ServicerContext, raised: BaseException | None
        ) -> None:
            manager, current = started
            code = status_name(context, raised)
            current.set_attribute("rpc.grpc.status_code", STATUS_NUMBER.get(code, 2))
            if code != "OK":
                current.set_status(Status(StatusCode.ERROR, code))
            manager.__exit__(None, None, None)  # exceptions are not recorded (see above)

        return observed(continuation(details), start, finish)
