"""Prometheus metrics, served on a side HTTP port (``REMIT_METRICS_ADDRESS``).

Each server has its own registry (no process-global state, so tests can run several).
Calls are counted by the metrics interceptor (:mod:`remit.server.interceptors.metrics`),
which sits outside recovery, so it sees the final status code of every call, INTERNAL
included. Decisions are counted by the decision hook (:meth:`Metrics.on_decision`, see
:mod:`remit.server.hook`), once per answered decision: Authorise, and every answered item
of AuthoriseBatch and AuthoriseStream. Labels are limited to values from a fixed set: the
gRPC method and code, and for decisions the council, decision and effect of an *answered*
request (an answer means the council and decision were found in the catalogue, so junk
requests cannot create label values). Never actor ids or request facts.

Metrics (all prefixed ``remit_``):

* ``decisions_total{council,decision,effect}`` — answered decisions (unary, batch and
  stream items alike).
* ``decision_latency_seconds`` — the server's time answering one decision (histogram),
  for every answered decision.
* ``rpcs_total{method,code}``, ``rpc_errors_total{method,code}`` (code != OK),
  ``rpcs_in_flight``.
* ``http_requests_total{endpoint,status}``, ``http_request_duration_seconds{endpoint}``
  (histogram), ``http_requests_in_flight`` — the AuthZEN HTTP port's counterpart of the RPC
  metrics; ``endpoint`` is the route's template (``/access/v1/evaluation``,
  ``/{tenant}/access/v1/evaluation``; ``unmatched`` for any other path), never the request's
  path, so neither a tenant nor junk makes a label value; ``status`` the HTTP status code.
* ``policy_bundle_info{version,origin}``, ``policy_last_reload_timestamp_seconds``,
  ``policy_reloads_total``, ``policy_refused_total`` — from the policy source's status.
* ``redis_state{state}`` — 1 for the current state (disabled, connected, unreachable).
* ``audit_dropped_total`` — decision-log entries the audit sink dropped (its ``dropped``
  attribute; a sink without one never drops: it fails the call instead).
* ``audit_anchor_seq``, ``audit_anchor_timestamp_seconds`` — this writer's last signed anchor
  of the decision log (0 when anchors are off).

Beside them, what dashboards built for the Prometheus gRPC conventions (go-grpc-prometheus,
py-grpc-prometheus) expect, counted by the same interceptor, labelled ``grpc_type``
(``unary`` / ``bidi_stream``), ``grpc_service``, ``grpc_method`` (registered methods only:
an unknown method has no handler and is not counted) and, once handled, ``grpc_code``:

* ``grpc_server_started_total``, ``grpc_server_handled_total{grpc_code}``,
  ``grpc_server_handling_seconds`` (histogram, the whole call; a stream's until it ends).
* ``process_*`` (CPU seconds, resident and virtual memory, open fds, start time) from
  prometheus_client's own ``ProcessCollector``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from remit.audit.log import CallInfo
from remit.distribution.source import SourceStatus
from remit.engine.authorise import Outcome

REDIS_STATES = ("disabled", "connected", "unreachable")
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
# grpc_server_handling_seconds: unary calls take about a millisecond, streams up to minutes
HANDLING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0, 60.0)
GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")


def grpc_labels(method: str, streaming: bool) -> tuple[str, str, str]:
    """``/pkg.Service/Method`` as the conventional (grpc_type, grpc_service, grpc_method)."""
    service, _, name = method.lstrip("/").rpartition("/")
    return ("bidi_stream" if streaming else "unary", service, name)


class _StatusCollector(Collector):
    def __init__(
        self,
        status: Callable[[], SourceStatus],
        audit_dropped: Callable[[], int],
        audit_anchor: Callable[[], tuple[int, float]],
    ) -> None:
        self._status = status
        self._audit_dropped = audit_dropped
        self._audit_anchor = audit_anchor

    def collect(self) -> Iterable[Any]:
        s = self._status()
        info = InfoMetricFamily("remit_policy_bundle", "The policy version in force")
        info.add_metric([], {"version": s.version, "origin": s.origin})
        yield info
        yield GaugeMetricFamily(
            "remit_policy_last_reload_timestamp_seconds",
            "Unix time the policy in force was installed",
            value=s.last_reload,
        )
        yield CounterMetricFamily(
            "remit_policy_reloads", "Policy versions installed after start", value=s.reloads
        )
        yield CounterMetricFamily(
            "remit_policy_refused",
            "Policy versions refused (kept the last good one)",
            value=s.refused,
        )
        redis = GaugeMetricFamily(
            "remit_redis_state", "Redis connection state (1 = current)", labels=["state"]
        )
        for state in REDIS_STATES:
            redis.add_metric([state], 1.0 if s.redis == state else 0.0)
        yield redis
        yield CounterMetricFamily(
            "remit_audit_dropped",
            "Decision-log entries dropped by the audit sink",
            value=self._audit_dropped(),
        )
        seq, at = self._audit_anchor()
        yield GaugeMetricFamily(
            "remit_audit_anchor_seq", "Seq of this writer's last decision-log anchor", value=seq
        )
        yield GaugeMetricFamily(
            "remit_audit_anchor_timestamp_seconds",
            "Unix time of this writer's last decision-log anchor",
            value=at,
        )


class Metrics:
    def __init__(
        self,
        status: Callable[[], SourceStatus],
        audit_dropped: Callable[[], int] = lambda: 0,
        audit_anchor: Callable[[], tuple[int, float]] = lambda: (0, 0.0),
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            "remit_decisions", "Answered decisions", ["council", "decision", "effect"], registry=r
        )
        self.latency = Histogram(
            "remit_decision_latency_seconds",
            "The server's time answering one decision",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rpcs = Counter("remit_rpcs", "RPCs handled", ["method", "code"], registry=r)
        self.rpc_errors = Counter(
            "remit_rpc_errors",
            "RPCs that ended with a code other than OK",
            ["method", "code"],
            registry=r,
        )
        self.in_flight = Gauge("remit_rpcs_in_flight", "RPCs being handled", registry=r)
        self.grpc_started = Counter(
            "grpc_server_started", "RPCs started on the server", GRPC_LABELS, registry=r
        )
        self.grpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by status code",
            (*GRPC_LABELS, "grpc_code"),
            registry=r,
        )
        self.grpc_handling = Histogram(
            "grpc_server_handling_seconds",
            "Time the server took to handle an RPC, to its end",
            GRPC_LABELS,
            buckets=HANDLING_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "remit_http_requests",
            "AuthZEN HTTP requests answered, by endpoint (route template) and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "remit_http_request_duration_seconds",
            "Time the server took to answer an AuthZEN HTTP request",
            ["endpoint"],
            buckets=HANDLING_BUCKETS,
            registry=r,
        )
        self.http_in_flight = Gauge(
            "remit_http_requests_in_flight", "AuthZEN HTTP requests being handled", registry=r
        )
        ProcessCollector(registry=r)
        # label children by (method, streaming[, code]): bounded by the registered methods
        self._grpc_children: dict[tuple[str, bool], tuple[Any, Any]] = {}
        self._handled_children: dict[tuple[str, bool, str], tuple[Any, Any, Any]] = {}
        r.register(_StatusCollector(status, audit_dropped, audit_anchor))
        self._http: WSGIServer | None = None
        self._http_thread: threading.Thread | None = None

    def _grpc(self, method: str, streaming: bool) -> tuple[Any, Any]:
        """The started counter and handling histogram children of one method, looked up once
        (``labels()`` costs several microseconds a call; methods are the registered few)."""
        key = (method, streaming)
        children = self._grpc_children.get(key)
        if children is None:
            labels = grpc_labels(method, streaming)
            children = (
                self.grpc_started.labels(*labels),
                self.grpc_handling.labels(*labels),
            )
            self._grpc_children[key] = children
        return children

    def rpc_started(self, method: str, streaming: bool) -> None:
        """A call to a registered method began (the metrics interceptor)."""
        self.in_flight.inc()
        self._grpc(method, streaming)[0].inc()

    def count_rpc(
        self, method: str, code: str, seconds: float | None = None, streaming: bool = False
    ) -> None:
        """A call ended with ``code`` after ``seconds`` (remit's and the conventional
        counters; the conventional ones only when the interceptor gives the duration)."""
        key = (method, streaming, code)
        counters = self._handled_children.get(key)
        if counters is None:
            counters = (
                self.rpcs.labels(method, code),
                self.rpc_errors.labels(method, code) if code != "OK" else None,
                self.grpc_handled.labels(*grpc_labels(method, streaming), code),
            )
            self._handled_children[key] = counters
        rpcs, errors, handled = counters
        rpcs.inc()
        if errors is not None:
            errors.inc()
        if seconds is not None:
            handled.inc()
            self._grpc(method, streaming)[1].observe(seconds)

    def count_http(self, endpoint: str, status: int, seconds: float) -> None:
        """An AuthZEN HTTP request to the route ``endpoint`` (its template) was answered."""
        self.http_requests.labels(endpoint, str(status)).inc()
        self.http_duration.labels(endpoint).observe(seconds)

    def on_decision(self, outcome: Outcome, call: CallInfo) -> None:
        """The decision hook: count one answered decision and observe its latency."""
        answer = outcome.answer
        effect = "EFFECT_ALLOW" if answer.allowed else "EFFECT_DENY"
        self.decisions.labels(answer.council, answer.decision, effect).inc()
        self.latency.observe(call.seconds)

    def serve_http(self, address: str) -> int:
        """Serve /metrics on ``address`` (HOST:PORT) in a daemon thread; returns the port."""
        host, port = address.rsplit(":", 1)
        self._http, self._http_thread = start_http_server(
            int(port), addr=host.strip("[]"), registry=self.registry
        )
        return int(self._http.server_port)

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
