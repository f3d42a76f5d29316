"""Assemble and run the gRPC server.

``create_server(address, deps) -> (server, port)`` builds an unstarted server with the
interceptors in their fixed order, the standard health service and reflection. Tests bind
port 0 and read the port back.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from remit import _paths
from remit._audit import AuditSink, JsonLinesSink
from remit._errors import PolicyError
from remit._holder import PolicyHolder
from remit._interceptors import (
    AuditInterceptor,
    LoggingInterceptor,
    RecoveryInterceptor,
    ValidationInterceptor,
)
from remit._servicer import DEFAULT_BATCH_LIMIT, AuthorisationServicer, CatalogueServicer
from remit._source import LocalSource
from remit.v1 import remit_pb2, remit_pb2_grpc

log = logging.getLogger("remit.server")

SERVICE_NAMES = (
    remit_pb2.DESCRIPTOR.services_by_name["AuthorisationService"].full_name,
    remit_pb2.DESCRIPTOR.services_by_name["CatalogueService"].full_name,
)
MAX_MESSAGE_BYTES = 64 * 1024


@dataclass
class Deps:
    holder: PolicyHolder
    audit: AuditSink = field(default_factory=JsonLinesSink)
    max_workers: int = 16
    batch_limit: int = DEFAULT_BATCH_LIMIT  # items per AuthoriseBatch / AuthoriseStream message


def create_server(address: str, deps: Deps) -> tuple[grpc.Server, int]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=deps.max_workers, thread_name_prefix="remit-rpc"),
        interceptors=[
            RecoveryInterceptor(),
            ValidationInterceptor(),
            AuditInterceptor(deps.audit),
            LoggingInterceptor(),
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    remit_pb2_grpc.add_AuthorisationServiceServicer_to_server(
        AuthorisationServicer(deps.holder, deps.batch_limit), server
    )
    remit_pb2_grpc.add_CatalogueServiceServicer_to_server(CatalogueServicer(deps.holder), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return server, port


def serve_forever(address: str, policy_dir: Path | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    directory = policy_dir or _paths.generated_dir()
    try:
        source = LocalSource(directory)
    except PolicyError as exc:
        log.error("cannot load compiled policy from %s: %s", directory, exc)
        return 4
    source.start()
    policies = source.holder.current()
    server, port = create_server(address, Deps(source.holder))
    server.start()
    host = address.rsplit(":", 1)[0]
    log.info(
        "remit serving %d council(s), policy %s, on %s:%d",
        len(policies.councils),
        policies.version,
        host,
        port,
    )
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stop.wait()
    server.stop(grace=10).wait()
    source.stop()
    return 0
