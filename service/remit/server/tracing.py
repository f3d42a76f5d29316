"""OpenTelemetry spans per RPC and per decision, on only when the OTEL_* settings ask for it.

Off (the default) nothing from OpenTelemetry is imported. On, :func:`setup` builds a tracer
provider with the configured exporter (``otlp``: the OTLP/gRPC exporter, which reads its own
``OTEL_EXPORTER_OTLP_*`` settings; ``console``: JSON to stderr, so the decision log on stdout
stays clean) and returns :class:`Tracing`. Its interceptor
(:mod:`remit.server.interceptors.tracing`) goes first in the chain so the call's span
covers every other interceptor; the decision hook calls :meth:`Tracing.on_decision` for
every answered decision (Authorise, and each answered item of a batch or stream), a child
span ``remit.decision`` of the call's span. The OpenTelemetry packages are an optional
extra: ``pip install 'remit[otel]'``.

Span attributes are a fixed list: ``rpc.system``, ``rpc.service``, ``rpc.method``,
``rpc.grpc.status_code`` on the call's span; ``remit.council``, ``remit.decision``,
``remit.effect``, ``remit.policy_version`` on a decision's. Never the actor, the peer
address, the request id, the correlation id or any context fact.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import grpc

from remit.audit.log import CallInfo
from remit.config import Config
from remit.engine.authorise import Outcome

DECISION_SPAN = "remit.decision"


class Tracing:
    """A tracer provider and the interceptor that uses it; ``shutdown()`` flushes spans."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider
        self.tracer = provider.get_tracer("remit")

    def interceptor(self) -> grpc.ServerInterceptor:
        """The tracing interceptor: one server span per call."""
        from remit.server.interceptors.tracing import TracingInterceptor

        return TracingInterceptor(self.tracer)

    def on_decision(self, outcome: Outcome, call: CallInfo) -> None:
        """The decision hook: one span per answered decision, a child of the current (the
        call's) span, covering the time the server took to answer it."""
        from opentelemetry.trace import SpanKind

        answer = outcome.answer
        end = time.time_ns()
        span = self.tracer.start_span(
            DECISION_SPAN,
            kind=SpanKind.INTERNAL,
            start_time=end - int(call.seconds * 1e9),
            attributes={
                "remit.council": answer.council,
                "remit.decision": answer.decision,
                "remit.effect": "EFFECT_ALLOW" if answer.allowed else "EFFECT_DENY",
                "remit.policy_version": answer.policy_version,
            },
            record_exception=False,
            set_status_on_exception=False,
        )
        span.end(end_time=end)

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
