"""OpenTelemetry spans per RPC, on only when the OTEL_* settings ask for it.

Off (the default) nothing from OpenTelemetry is imported. On, :func:`setup` builds a tracer
provider with the configured exporter (``otlp``: the OTLP/gRPC exporter, which reads its own
``OTEL_EXPORTER_OTLP_*`` settings; ``console``: JSON to stderr, so the decision log on stdout
stays clean) and returns the interceptor, which goes first in the chain so its span covers
every other interceptor. The OpenTelemetry packages are an optional extra:
``pip install 'remit[otel]'``.

Span attributes are a fixed list: ``rpc.system``, ``rpc.service``, ``rpc.method``,
``rpc.grpc.status_code``, and for an answered Authorise ``remit.council``,
``remit.decision``, ``remit.effect``, ``remit.policy_version``. Never the actor, the peer
address, the request id or any context fact.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import grpc

from remit.config import Config
from remit.server.metrics import StreamBehaviour, UnaryBehaviour, status_code, wrap_handler
from remit.v1 import remit_pb2 as pb

STATUS_NUMBER = {c.name: c.value[0] for c in grpc.StatusCode}


class Tracing:
    """A tracer provider and the interceptor that uses it; ``shutdown()`` flushes spans."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider
        self.tracer = provider.get_tracer("remit")

    def interceptor(self) -> grpc.ServerInterceptor:
        return TracingInterceptor(self.tracer)

    def shutdown(self) -> None:
        self._provider.shutdown()


def setup(config: Config, exporter: Any = None) -> Tracing | None:
    """Tracing as the config asks, or None when it is off. ``exporter`` overrides (tests)."""
    if not config.tracing_exporter and exporter is None:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if exporter is None:
        if config.tracing_exporter == "console":
            exporter = ConsoleSpanExporter(out=sys.stderr)
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": config.otel_service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider)


class TracingInterceptor(grpc.ServerInterceptor):
    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        full = details.method.lstrip("/")
        service, _, method = full.partition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
        tracer = self._tracer

        def finish(span: Any, context: grpc.ServicerContext, raised: bool) -> None:
            code = status_code(context, raised)
            span.set_attribute("rpc.grpc.status_code", STATUS_NUMBER.get(code, 2))
            if code != "OK":
                span.set_status(Status(StatusCode.ERROR, code))

        def unary(inner: UnaryBehaviour) -> UnaryBehaviour:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                with tracer.start_as_current_span(
                    full,
                    kind=SpanKind.SERVER,
                    attributes=attributes,
                    record_exception=False,
                    set_status_on_exception=False,
                ) as span:
                    raised = True
                    try:
                        response = inner(request, context)
                        raised = False
                    finally:
                        finish(span, context, raised)
                    if (
                        isinstance(response, pb.AuthoriseResponse)
                        and status_code(context, False) == "OK"
                    ):
                        span.set_attribute("remit.council", request.council)
                        span.set_attribute("remit.decision", request.decision)
                        span.set_attribute("remit.effect", pb.Effect.Name(response.effect))
                        span.set_attribute("remit.policy_version", response.policy_version)
                    return response

            return behaviour

        def stream(inner: StreamBehaviour) -> StreamBehaviour:
            def behaviour(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                with tracer.start_as_current_span(
                    full,
                    kind=SpanKind.SERVER,
                    attributes=attributes,
                    record_exception=False,
                    set_status_on_exception=False,
                ) as span:
                    raised = True
                    try:
                        yield from inner(requests, context)
                        raised = False
                    finally:
                        finish(span, context, raised)

            return behaviour

        return wrap_handler(continuation(details), unary, stream)
