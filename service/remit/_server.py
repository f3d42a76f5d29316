"""Assemble and run the gRPC server.

``create_server(address, deps) -> (server, port)`` builds an unstarted server with the
interceptors in their fixed order, the standard health service and reflection. Tests bind
port 0 and read the port back.
"""

from __future__ import annotations

import logging
import os
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
from remit._access import AccessPolicy
from remit._audit import AuditLog, StreamSink, log_from_env
from remit._errors import PolicyError
from remit._holder import PolicyHolder
from remit._interceptors import (
    AuditInterceptor,
    LoggingInterceptor,
    RecoveryInterceptor,
    ValidationInterceptor,
)
from remit._servicer import DEFAULT_BATCH_LIMIT, AuthorisationServicer, CatalogueServicer
from remit._signing import Verifier
from remit._source import LocalSource, PolicySource
from remit.v1 import remit_pb2, remit_pb2_grpc

log = logging.getLogger("remit.server")

SERVICE_NAMES = (
    remit_pb2.DESCRIPTOR.services_by_name["AuthorisationService"].full_name,
    remit_pb2.DESCRIPTOR.services_by_name["CatalogueService"].full_name,
)
MAX_MESSAGE_BYTES = 64 * 1024


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


@dataclass(frozen=True)
class TlsFiles:
    """Server certificate and key; ``client_ca`` turns on mTLS (a client cert is required)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes() if self.client_ca else None,
            require_client_auth=self.client_ca is not None,
        )


@dataclass
class Deps:
    holder: PolicyHolder
    audit: AuditLog = field(default_factory=lambda: AuditLog(StreamSink(), "strict"))
    access: AccessPolicy = field(default_factory=AccessPolicy.open_access)
    tls: TlsFiles | None = None
    allow_plaintext: bool = False  # plaintext off loopback must be asked for explicitly
    max_workers: int = 16
    batch_limit: int = DEFAULT_BATCH_LIMIT  # items per AuthoriseBatch / AuthoriseStream message


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def create_server(address: str, deps: Deps) -> tuple[grpc.Server, int]:
    if deps.tls is None and not is_loopback(address) and not deps.allow_plaintext:
        raise ValueError(
            f"refusing plaintext gRPC on {address}: set REMIT_TLS_CERT/REMIT_TLS_KEY, "
            "or REMIT_ALLOW_PLAINTEXT=1 to accept the risk"
        )
    if deps.tls is not None and deps.tls.client_ca is not None and deps.access.open:
        raise ValueError("mTLS needs REMIT_ACCESS_FILE: which caller may query which councils")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=deps.max_workers, thread_name_prefix="remit-rpc"),
        interceptors=[
            RecoveryInterceptor(),
            ValidationInterceptor(deps.access),
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
    if deps.tls is not None:
        port = server.add_secure_port(address, deps.tls.credentials())
    else:
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
    redis_url = os.environ.get("REMIT_REDIS_URL", "")
    source: PolicySource
    try:
        if redis_url:
            from remit._replica import RedisSource

            public_key = os.environ.get("REMIT_BUNDLE_PUBLIC_KEY", "")
            verifier = Verifier.from_file(Path(public_key)) if public_key else None
            source = RedisSource(
                redis_url, directory if directory.is_dir() else None, verifier=verifier
            )
        else:
            source = LocalSource(directory)
    except PolicyError as exc:
        log.error("cannot load compiled policy from %s: %s", directory, exc)
        return 4
    source.start()
    policies = source.holder.current()
    try:
        deps = deps_from_env(source.holder)
        server, port = create_server(address, deps)
    except (ValueError, OSError) as exc:
        log.error("cannot start: %s", exc)
        source.stop()
        return 2
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
    deps.audit.flush()
    source.stop()
    return 0


def deps_from_env(holder: PolicyHolder) -> Deps:
    """TLS, access and audit settings from the environment (validated; ValueError names it)."""
    cert, key = os.environ.get("REMIT_TLS_CERT", ""), os.environ.get("REMIT_TLS_KEY", "")
    client_ca = os.environ.get("REMIT_TLS_CLIENT_CA", "")
    tls = None
    if cert or key or client_ca:
        if not (cert and key):
            raise ValueError("REMIT_TLS_CERT and REMIT_TLS_KEY are both required for TLS")
        for name, value in (
            ("REMIT_TLS_CERT", cert),
            ("REMIT_TLS_KEY", key),
            ("REMIT_TLS_CLIENT_CA", client_ca),
        ):
            if value and not Path(value).is_file():
                raise ValueError(f"{name}: no such file {value}")
        tls = TlsFiles(Path(cert), Path(key), Path(client_ca) if client_ca else None)
    access_file = os.environ.get("REMIT_ACCESS_FILE", "")
    access = (
        AccessPolicy.from_file(Path(access_file)) if access_file else AccessPolicy.open_access()
    )
    allow = os.environ.get("REMIT_ALLOW_PLAINTEXT", "")
    if allow not in ("", "0", "1"):
        raise ValueError("REMIT_ALLOW_PLAINTEXT: 0 or 1")
    return Deps(holder, log_from_env(), access, tls, allow == "1")
