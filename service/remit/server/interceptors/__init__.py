"""The server's interceptors, one module each, and their order, declared once (:data:`ORDER`).

Outermost first::

    tracing -> metrics -> recovery -> validation -> logging

* ``tracing`` (:mod:`.tracing`, only when OTEL_* asks): one server span per call, covering
  every other interceptor;
* ``metrics`` (:mod:`.metrics`, only with a metrics registry): calls by method and final
  status code, in flight; outside recovery, so INTERNAL is counted too;
* ``recovery`` (:mod:`.recovery`): any unexpected exception becomes INTERNAL with an error
  id; never an answer;
* ``validation`` (:mod:`.validation`): the caller and the councils it may query
  (PERMISSION_DENIED), the open-stream slots (RESOURCE_EXHAUSTED, :mod:`remit.server.limits`),
  undecodable bytes, size and identifier limits, RequestErrors as INVALID_ARGUMENT /
  NOT_FOUND with a google.rpc.BadRequest naming the field;
* ``logging`` (:mod:`.rpclog`): method, the status code the call ends with, latency.

Decisions are not seen here: the servicer calls the decision hook (:mod:`remit.server.hook`)
once per answered decision, inside all of these, and it logs, counts and traces each one.
:func:`chain` builds the list :func:`remit.server.serve.create_server` installs; the README
quotes :data:`ORDER` (a test checks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from remit.server.access import AccessPolicy
from remit.server.interceptors.metrics import MetricsInterceptor
from remit.server.interceptors.recovery import RecoveryInterceptor
from remit.server.interceptors.rpclog import LoggingInterceptor
from remit.server.interceptors.validation import ValidationInterceptor
from remit.server.limits import StreamSlots

if TYPE_CHECKING:
    from remit.server.metrics import Metrics
    from remit.server.tracing import Tracing

ORDER: tuple[str, ...] = ("tracing", "metrics", "recovery", "validation", "logging")


def chain(
    access: AccessPolicy,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
    streams: StreamSlots | None = None,
) -> list[grpc.ServerInterceptor]:
    """The interceptors in :data:`ORDER`, outermost first; tracing and metrics only when
    configured; ``streams``: the open-stream slots validation enforces."""
    made: dict[str, grpc.ServerInterceptor | None] = {
        "tracing": tracing.interceptor() if tracing is not None else None,
        "metrics": MetricsInterceptor(metrics) if metrics is not None else None,
        "recovery": RecoveryInterceptor(),
        "validation": ValidationInterceptor(access, streams),
        "logging": LoggingInterceptor(),
    }
    return [i for i in (made[name] for name in ORDER) if i is not None]
