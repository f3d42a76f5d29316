"""Tracing: one OpenTelemetry server span per call, outermost so it covers every other
interceptor (:mod:`remit.server.tracing` sets it up, only when the OTEL_* settings ask).

Span attributes are a fixed list: ``rpc.system``, ``rpc.service``, ``rpc.method``,
``rpc.grpc.status_code``; never the actor, the peer address, the request id or any context
fact, and exceptions are not recorded (their messages may echo the request). Each answered
decision is a child span of its call's span, made by the decision hook
(``Tracing.on_decision``), for unary, batch and stream alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc

from remit.server.interceptors._handlers import Behaviour, StreamBehaviour, status_name, wrap

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

        def finish(
            current: Any, context: grpc.ServicerContext, raised: BaseException | None
        ) -> None:
            code = status_name(context, raised)
            current.set_attribute("rpc.grpc.status_code", STATUS_NUMBER.get(code, 2))
            if code != "OK":
                current.set_status(Status(StatusCode.ERROR, code))

        def unary(inner: Behaviour) -> Behaviour:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                with span() as current:
                    raised: BaseException | None = None
                    try:
                        return inner(request, context)
                    except BaseException as exc:
                        raised = exc
                        raise
                    finally:
                        finish(current, context, raised)

            return behaviour

        def stream(inner: StreamBehaviour) -> StreamBehaviour:
            def behaviour(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                with span() as current:
                    raised: BaseException | None = None
                    try:
                        yield from inner(requests, context)
                    except BaseException as exc:
                        raised = exc
                        raise
                    finally:
                        finish(current, context, raised)

            return behaviour

        return wrap(continuation(details), unary, stream)
