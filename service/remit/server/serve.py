"""Assemble and run the gRPC server.

``create_server(address, deps) -> (server, port)`` builds an unstarted server with the
interceptors in their fixed order (:data:`remit.server.interceptors.ORDER`, outermost first:
tracing when OTEL_* asks, metrics, recovery, validation, logging), the decision hook (the
decision log, then metrics and tracing: :mod:`remit.server.hook`), the health service and
reflection. Tests bind port 0 and read the port back.

``serve_forever(config)`` is ``remit serve``: open the policy source (the port opens only
once a policy is loaded), start with health NOT_SERVING, start the source, then SERVING. On
SIGTERM/SIGINT: NOT_SERVING at once, keep answering for the drain period, stop accepting,
let in-flight calls finish within the grace period, flush the audit sink and the tracer,
exit 0. ``workers > 1`` hands over to the pre-fork supervisor in :mod:`remit.server.workers`.

Health detail: grpc.health.v1 has no detail field, so every ``Check`` answer carries trailing
metadata ``remit-policy-version``, ``remit-policy-origin``, ``remit-redis``,
``remit-policy-last-reload`` (unix seconds), ``remit-policy-detail``, ``remit-pid`` and
``remit-audit-anchor`` (this writer's last decision-log anchor, ``SEQ@UNIXTIME``);
``remit health`` prints them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from remit.audit.log import (
    AnchorSigner,
    AuditLog,
    Pseudonymiser,
    StreamSink,
    sink_from_spec,
    writer_id,
)
from remit.audit.watermark import Watermark
from remit.config import Config, ConfigError
from remit.distribution.holder import PolicyHolder
from remit.distribution.source import SourceStatus, open_source
from remit.model.errors import PolicyError
from remit.server.access import AccessPolicy, check_transport
from remit.server.convert import TimeWindow
from remit.server.hook import DecisionHook, DecisionObserver
from remit.server.http.app import HttpDeps
from remit.server.interceptors import chain
from remit.server.limits import StreamSlots
from remit.server.metrics import Metrics
from remit.server.registry import add_service
from remit.server.servicers import DEFAULT_BATCH_LIMIT, AuthorisationServicer, CatalogueServicer
from remit.server.tracing import Tracing
from remit.server.tracing import setup as setup_tracing
from remit.v1 import remit_pb2

log = logging.getLogger("remit.server")

SERVICE_NAMES = (
    remit_pb2.DESCRIPTOR.services_by_name["AuthorisationService"].full_name,
    remit_pb2.DESCRIPTOR.services_by_name["CatalogueService"].full_name,
)
MAX_MESSAGE_BYTES = 64 * 1024


def _ascii(text: str, limit: int = 200) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)[:limit]


class RemitHealth(health.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1 with the policy version and Redis state in trailing metadata."""

    def __init__(
        self,
        status: Callable[[], SourceStatus],
        audit_anchor: Callable[[], tuple[int, float]] | None = None,
    ) -> None:
        super().__init__()
        self._status = status
        self._audit_anchor = audit_anchor

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = super().Check(request, context)
        s = self._status()
        context.set_trailing_metadata(
            (
                ("remit-policy-version", _ascii(s.version)),
                ("remit-policy-origin", _ascii(s.origin)),
                ("remit-redis", _ascii(s.redis)),
                ("remit-policy-last-reload", f"{s.last_reload:.3f}"),
                ("remit-policy-detail", _ascii(s.detail)),
                ("remit-pid", str(os.getpid())),
                *self._anchor_detail(),
            )
        )
        return response

    def _anchor_detail(self) -> tuple[tuple[str, str], ...]:
        """``remit-audit-anchor``: this writer's last decision-log anchor, "SEQ@UNIXTIME"."""
        if self._audit_anchor is None:
            return ()
        seq, at = self._audit_anchor()
        return (("remit-audit-anchor", f"{seq}@{at:.3f}"),)

    def set_all(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            self.set(name, status)


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


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS or host.startswith("127.")


@dataclass
class Deps:
    holder: PolicyHolder
    audit: AuditLog = field(default_factory=lambda: AuditLog(StreamSink(), "strict"))
    max_workers: int = 16
    access: AccessPolicy = field(default_factory=AccessPolicy.open_access)
    tls: TlsFiles | None = None
    allow_plaintext: bool = False  # plaintext off loopback must be asked for explicitly
    batch_limit: int = DEFAULT_BATCH_LIMIT  # items per AuthoriseBatch / AuthoriseStream message
    decision_time_window_days: int = 31  # how far back a request may claim its decision time
    stream_idle_seconds: float = 30.0  # an open stream sending nothing this long is cancelled
    # What health detail and metrics report; default: the holder's version, origin "local".
    status: Callable[[], SourceStatus] | None = None
    metrics: Metrics | None = None
    tracing: Tracing | None = None
    health: RemitHealth | None = None
    start_serving: bool = True  # False: health starts NOT_SERVING (serve_forever flips it)
    reuse_port: bool = False  # SO_REUSEPORT, for the workers of `remit serve --workers N`

    def status_now(self) -> SourceStatus:
        if self.status is not None:
            return self.status()
        return SourceStatus(self.holder.current().version, "local")


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
_REFLECTION_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _rename_types(messages: Any, old: str, new: str) -> None:
    for message in messages:
        for f in message.field:
            if f.type_name.startswith(old):
                f.type_name = new + f.type_name.removeprefix(old)
        _rename_types(message.nested_type, old, new)


def _register_reflection_v1() -> None:
    """Put ``grpc/reflection/v1/reflection.proto`` in the default descriptor pool, so
    reflection can describe its own v1 service.

    grpcio-reflection (1.85) ships only v1alpha. v1 is the same file with the package renamed
    (every message, field and number is the same), so its descriptor is v1alpha's with the
    package and type names rewritten, and the same servicer, with v1alpha's message classes,
    answers both: the bytes on the wire are identical."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_REFLECTION_V1_FILE)
        return
    except KeyError:
        pass
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    fdp = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(fdp)
    fdp.name, fdp.package = _REFLECTION_V1_FILE, "grpc.reflection.v1"
    fdp.ClearField("options")  # v1alpha's deprecation and language options
    _rename_types(fdp.message_type, old, new)
    for service in fdp.service:
        for method in service.method:
            method.input_type = new + method.input_type.removeprefix(old)
            method.output_type = new + method.output_type.removeprefix(old)
    pool.AddSerializedFile(fdp.SerializeToString())


def enable_reflection(server: grpc.Server, service_names: tuple[str, ...]) -> None:
    """Serve ``grpc.reflection.v1`` (what grpcurl and current clients ask first) and
    ``grpc.reflection.v1alpha`` (older clients) from one servicer."""
    _register_reflection_v1()
    names = (*service_names, REFLECTION_V1, reflection.SERVICE_NAME)
    servicer = reflection.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        REFLECTION_V1,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))


def create_server(address: str, deps: Deps) -> tuple[grpc.Server, int]:
    check_transport(
        "gRPC",
        address,
        is_loopback(address),
        deps.tls is not None,
        deps.tls is not None and deps.tls.client_ca is not None,
        deps.access,
        deps.allow_plaintext,
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=deps.max_workers, thread_name_prefix="remit-rpc"),
        interceptors=chain(
            deps.access,
            deps.metrics,
            deps.tracing,
            StreamSlots.for_threads(deps.max_workers, deps.stream_idle_seconds),
        ),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 1 if deps.reuse_port else 0),
        ],
    )
    services = remit_pb2.DESCRIPTOR.services_by_name  # non-raising deserializers: registry.py
    add_service(
        server,
        services["AuthorisationService"],
        AuthorisationServicer(
            deps.holder,
            decision_hook(deps),
            deps.batch_limit,
            TimeWindow(past=timedelta(days=deps.decision_time_window_days)),
        ),
    )
    add_service(server, services["CatalogueService"], CatalogueServicer(deps.holder))
    if deps.health is None:
        deps.health = RemitHealth(deps.status_now)
    health_pb2_grpc.add_HealthServicer_to_server(deps.health, server)
    deps.health.set_all(
        health_pb2.HealthCheckResponse.SERVING
        if deps.start_serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    enable_reflection(server, (*SERVICE_NAMES, health.SERVICE_NAME))
    if deps.tls is not None:
        port = server.add_secure_port(address, deps.tls.credentials())
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return server, port


def decision_hook(deps: Deps) -> DecisionHook:
    """The decision hook every answered decision goes through: the log, metrics, tracing."""
    observers: list[DecisionObserver] = [o for o in (deps.metrics, deps.tracing) if o is not None]
    return DecisionHook(deps.audit, observers)


def http_deps(deps: Deps) -> HttpDeps:
    """What the AuthZEN HTTP API shares with gRPC: policy, hook, access, limits."""
    return HttpDeps(
        deps.holder,
        decision_hook(deps),
        deps.access,
        TimeWindow(past=timedelta(days=deps.decision_time_window_days)),
        deps.batch_limit,
        metrics=deps.metrics,
    )


def key_notice(config: Config) -> tuple[int, str]:
    """What ``remit serve`` says when no case-reference key is set: on the embedded default
    (a first run) one INFO line on what that means and how to set one; a WARNING when the
    config is a deployment's (TLS, a Redis bundle, an access file, a kept decision log),
    where the pseudonyms of one case must link across restarts and replicas."""
    how = (
        "set REMIT_AUDIT_HMAC_KEY (or REMIT_AUDIT_HMAC_KEY_FILE) to at least 16 random bytes "
        "in hex, e.g. python3 -c 'import secrets; print(secrets.token_hex(32))'"
    )
    deployed = [
        name
        for name, on in (
            ("REMIT_TLS_CERT", config.tls_cert is not None),
            ("REMIT_REDIS_URL", bool(config.redis_url)),
            ("REMIT_ACCESS_FILE", config.access_file is not None),
            ("REMIT_AUDIT_SINK", config.audit_sink != "stdout"),
        )
        if on
    ]
    if deployed:
        return logging.WARNING, (
            f"REMIT_AUDIT_HMAC_KEY is not set although {', '.join(deployed)} is: the case "
            "pseudonyms in the decision log use a per-process random key, so one case's "
            f"entries do not link across restarts or replicas; {how}"
        )
    return logging.INFO, (
        "case pseudonyms in the decision log use a per-process random key (fine for trying "
        f"remit; they link within this run only); to keep them stable, {how}"
    )


def _tls_paths(config: Config) -> tuple[Path | None, Path | None, Path | None, bool]:
    return config.tls_cert, config.tls_key, config.tls_client_ca, config.allow_plaintext


def serve_forever(config: Config) -> int:
    """Run ``remit serve`` until SIGTERM/SIGINT; returns the exit code."""
    logging.basicConfig(
        level=config.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if config.workers > 1:
        from remit.server.workers import supervise

        return supervise(config)
    # The handler only writes the signal number to a pipe the main thread reads: no lock and
    # no logging in it (an Event.set there deadlocks when the signal lands while the main
    # thread is inside Event.wait holding the same lock, and the server never stops).
    stop_read, stop_write = os.pipe()

    def _stop(signum: int, _frame: object) -> None:
        os.write(stop_write, bytes([signum]))

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        source = open_source(config)
    except ConfigError as exc:
        print(f"remit: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        log.error("cannot load the policy: %s", exc)
        return 4
    try:
        audit = AuditLog(
            sink_from_spec(config.audit_sink, config.audit_rotate_bytes),
            config.audit_mode,
            Pseudonymiser(bytes.fromhex(config.audit_hmac_key) if config.audit_hmac_key else None),
            writer=(writer := writer_id(config.audit_writer, config.worker_index)),
            signer=AnchorSigner.from_file(config.audit_signing_key)
            if config.audit_signing_key
            else None,
            anchor_seconds=config.audit_anchor_seconds,
            group_window=config.audit_group_window_ms / 1000,
            watermark=Watermark(config.audit_state_dir, writer)
            if config.audit_state_dir and config.audit_mode == "best-effort"
            else None,
        )
        if audit.pseudonymise.ephemeral:
            log.log(*key_notice(config))
        access = (
            AccessPolicy.from_file(config.access_file)
            if config.access_file
            else AccessPolicy.open_access()
        )
    except (OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        source.stop()
        return 2
    tls = (
        TlsFiles(config.tls_cert, config.tls_key, config.tls_client_ca)
        if config.tls_cert and config.tls_key
        else None
    )
    tracing = setup_tracing(config)
    metrics = Metrics(source.status, lambda: audit.stats.dropped, lambda: audit.last_anchor)
    health_servicer = RemitHealth(source.status, lambda: audit.last_anchor)
    deps = Deps(
        source.holder,
        audit,
        config.threads,
        status=source.status,
        metrics=metrics,
        tracing=tracing,
        health=health_servicer,
        start_serving=False,
        reuse_port=config.worker_index >= 0,
        access=access,
        tls=tls,
        allow_plaintext=config.allow_plaintext,
        batch_limit=config.batch_limit,
        decision_time_window_days=config.decision_time_window_days,
        stream_idle_seconds=config.stream_idle_seconds,
    )
    try:
        server, port = create_server(config.address, deps)
        metrics_port = metrics.serve_http(config.metrics_address) if config.metrics_address else 0
    except ValueError as exc:
        log.error("cannot start: %s", exc)
        source.stop()
        return 2
    except (OSError, RuntimeError) as exc:
        log.error("cannot listen: %s", exc)
        source.stop()
        return 1
    http = None
    if config.http_address:  # AuthZEN over HTTP/JSON, the same use case and decision hook
        from remit.server.http.directory import load as load_directory
        from remit.server.http.server import start_http
        from remit.server.http.signed import MetadataSigner

        try:
            http_setup = http_deps(deps)
            http_setup.base_url = config.http_base_url
            if config.authzen_directory is not None:
                http_setup.directory = load_directory(config.authzen_directory)
            if config.authzen_metadata_key is not None:
                http_setup.signer = MetadataSigner.from_file(config.authzen_metadata_key)
            http = start_http(config.http_address, http_setup, *_tls_paths(config))
        except (OSError, ValueError) as exc:
            log.error("cannot serve AuthZEN on %s: %s", config.http_address, exc)
            source.stop()
            return 2
        log.info("AuthZEN HTTP API on port %d", http.port)
    server.start()
    source.start()
    health_servicer.set_all(health_pb2.HealthCheckResponse.SERVING)
    status = source.status()
    log.info(
        "remit serving policy %s (%s) on %s:%d%s%s, pid %d",
        status.version,
        status.origin,
        config.address.rsplit(":", 1)[0],
        port,
        f", metrics on :{metrics_port}" if metrics_port else "",
        f", tracing to {config.tracing_exporter}" if tracing else "",
        os.getpid(),
    )
    signum = os.read(stop_read, 1)[0]  # blocks until SIGTERM/SIGINT (or a worker's lifeline)
    log.info("signal %d: shutting down", signum)
    health_servicer.enter_graceful_shutdown()  # NOT_SERVING, permanently
    if config.shutdown_drain_seconds:
        log.info("draining %.1fs: NOT_SERVING, still answering", config.shutdown_drain_seconds)
        time.sleep(config.shutdown_drain_seconds)
    log.info("refusing new calls; in-flight calls have %.1fs", config.shutdown_grace_seconds)
    if http is not None:
        http.stop(config.shutdown_grace_seconds)
    server.stop(grace=config.shutdown_grace_seconds).wait()
    audit.flush()
    sys.stdout.flush()
    if tracing is not None:
        tracing.shutdown()
    metrics.stop_http()
    source.stop()
    log.info("stopped")
    return 0
