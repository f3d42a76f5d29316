"""One typed, frozen configuration for ``remit serve``, read once at start.

Every setting has an environment variable (``REMIT_*``; tracing follows the standard
``OTEL_*`` names); a secret (``REMIT_AUDIT_HMAC_KEY``, ``REMIT_REDIS_URL``,
``REMIT_AUDIT_SINK``: URLs may carry a password) may instead be read from the file named by
its ``*_FILE`` variable (``REMIT_AUDIT_HMAC_KEY_FILE=/run/secrets/hmac``). An optional TOML
file named by ``REMIT_CONFIG`` may set the same settings by field name (``address =
"0.0.0.0:50051"``); the environment wins over the file, and a command-line flag wins over
both. Every value is parsed and checked here, before anything starts: an invalid value
raises :class:`ConfigError` naming the variable, and ``remit serve``
exits 2 with that message.

To add a setting, add one field to :class:`Config` with ``_setting(env=..., parse=...)``;
the loader, the file keys and the error messages follow from it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CONFIG_FILE_ENV = "REMIT_CONFIG"


class ConfigError(ValueError):
    """An invalid setting; the message names the variable (or flag) it came from."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


Parser = Callable[[str], Any]


def _setting(*, env: str, parse: Parser, default: Any, flag: str = "", secret: bool = False) -> Any:
    """One setting. ``secret``: it may also be read from a file named by ``<env>_FILE``
    (a mounted Kubernetes Secret or Docker secret), so the value need not be in the
    environment; setting both is an error."""
    return dataclasses.field(
        default=default, metadata={"env": env, "parse": parse, "flag": flag, "secret": secret}
    )


# ---- parsers: each takes the raw text and returns the typed value or raises ValueError ----


def parse_address(raw: str) -> str:
    host, sep, port = raw.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"want HOST:PORT, got {raw!r}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port must be 0-65535, got {port!r}")
    if any(ch.isspace() for ch in host):
        raise ValueError(f"host has spaces: {host!r}")
    return f"{host}:{int(port)}"


def _https_url(raw: str) -> str:
    url = raw.strip().rstrip("/")
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError("want an https URL with no query or fragment")
    return url


def _optional_address(raw: str) -> str:
    return "" if raw.strip() in ("", "off", "none") else parse_address(raw)


def _int_between(lo: int, hi: int) -> Parser:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"want a whole number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return parse


def _seconds(hi: float) -> Parser:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"want a number of seconds, got {raw!r}") from None
        if not 0 <= value <= hi:  # also rejects nan
            raise ValueError(f"must be between 0 and {hi:g} seconds, got {raw.strip()}")
        return value

    return parse


def _optional_dir(raw: str) -> Path | None:
    if not raw.strip():
        return None
    path = Path(raw.strip())
    if not path.is_dir():
        raise ValueError(f"no such directory: {path}")
    return path


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"want DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return level


def _redis_url(raw: str) -> str:
    url = raw.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("want a redis://, rediss:// or unix:// URL")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("the URL names no host")
    return url


def _choice(*allowed: str) -> Parser:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"want one of {', '.join(a or '(empty)' for a in allowed)}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"want true or false, got {raw!r}")


def _text(raw: str) -> str:
    return raw.strip()


def _optional_file(raw: str) -> Path | None:
    if not raw.strip():
        return None
    path = Path(raw.strip())
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


def _audit_sink(raw: str) -> str:
    spec = raw.strip() or "stdout"
    if spec == "stdout" or spec.startswith(
        ("file:", "redis:", "rediss:", "postgresql://", "postgres://")
    ):
        if spec.startswith("file:") and not spec.removeprefix("file:"):
            raise ValueError("file: needs a path")
        return spec
    raise ValueError("want stdout, file:PATH, redis:URL[#stream] or postgresql://URL")


def _writer_name(raw: str) -> str:
    name = raw.strip()
    if len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError("at most 64 letters, digits, '-', '_' or '.'")
    return name


def _hex_key(raw: str) -> str:
    key = raw.strip()
    if not key:
        return ""
    try:
        data = bytes.fromhex(key)
    except ValueError:
        raise ValueError("want hex") from None
    if len(data) < 16:
        raise ValueError("at least 16 bytes (32 hex characters)")
    return key


@dataclass(frozen=True)
class Config:
    address: str = _setting(
        env="REMIT_ADDRESS", parse=parse_address, default="127.0.0.1:50051", flag="--address"
    )
    policy_dir: Path | None = _setting(  # noqa: RUF009 (a dataclasses.field)
        env="REMIT_POLICY_DIR", parse=_optional_dir, default=None, flag="--policy-dir"
    )
    # Prometheus /metrics on a side HTTP port; "" = off. Worker i of --workers N binds port+i.
    metrics_address: str = _setting(
        env="REMIT_METRICS_ADDRESS", parse=_optional_address, default="", flag="--metrics-address"
    )
    # The AuthZEN HTTP/JSON API (remit.server.http) on its own port; "" = off. Same TLS
    # files and access file as gRPC; a single process only (not with --workers N).
    http_address: str = _setting(env="REMIT_HTTP_ADDRESS", parse=_optional_address, default="")
    # The AuthZEN PDP identifier (https URL, no query or fragment) the metadata names;
    # "" = the URL the request was sent to. Signed metadata needs it.
    http_base_url: str = _setting(env="REMIT_HTTP_BASE_URL", parse=_https_url, default="")
    # Ed25519 private key (PEM) signing the PDP metadata (its signed_metadata JWT)
    authzen_metadata_key: Path | None = _setting(  # noqa: RUF009 (a dataclasses.field)
        env="REMIT_AUTHZEN_METADATA_KEY", parse=_optional_file, default=None
    )
    # AuthZEN tenants whose PEPs name entities by identifier (remit.server.http.directory):
    # their subject and resource types, known subjects and resources; "" = none.
    authzen_directory: Path | None = _setting(  # noqa: RUF009 (a dataclasses.field)
        env="REMIT_AUTHZEN_DIRECTORY", parse=_optional_file, default=None
    )
    workers: int = _setting(
        env="REMIT_WORKERS", parse=_int_between(1, 64), default=1, flag="--workers"
    )
    threads: int = _setting(env="REMIT_THREADS", parse=_int_between(1, 256), default=16)
    # An open AuthoriseStream that sends nothing for this long is cancelled (its slot freed).
    stream_idle_seconds: float = _setting(
        env="REMIT_STREAM_IDLE_SECONDS", parse=_seconds(3600), default=30.0
    )
    # How far back a request may claim its decision_time (retrospective decisions); a claim
    # further back, or more than five minutes ahead, is INVALID_ARGUMENT.
    decision_time_window_days: int = _setting(
        env="REMIT_DECISION_TIME_WINDOW_DAYS", parse=_int_between(0, 3660), default=31
    )
    # On SIGTERM: NOT_SERVING at once, keep answering for drain seconds (so load balancers
    # see it), then refuse new calls and let in-flight ones finish within grace seconds.
    shutdown_drain_seconds: float = _setting(
        env="REMIT_SHUTDOWN_DRAIN_SECONDS", parse=_seconds(300), default=0.0
    )
    shutdown_grace_seconds: float = _setting(
        env="REMIT_SHUTDOWN_GRACE_SECONDS", parse=_seconds(300), default=10.0
    )
    policy_watch_seconds: float = _setting(
        env="REMIT_POLICY_WATCH_SECONDS", parse=_seconds(3600), default=0.0
    )
    log_level: str = _setting(env="REMIT_LOG_LEVEL", parse=_log_level, default="INFO")
    # The shared bundle in Redis; "" = the compiled files on disk (LocalSource).
    redis_url: str = _setting(env="REMIT_REDIS_URL", parse=_redis_url, default="", secret=True)
    # OpenTelemetry (standard variable names). Tracing is on when an exporter is named or an
    # OTLP endpoint is set, and OTEL_SDK_DISABLED is not true; the exporter reads its own
    # OTEL_EXPORTER_OTLP_* settings.
    otel_traces_exporter: str = _setting(
        env="OTEL_TRACES_EXPORTER", parse=_choice("", "none", "otlp", "console"), default=""
    )
    otel_endpoint: str = _setting(env="OTEL_EXPORTER_OTLP_ENDPOINT", parse=_text, default="")
    otel_traces_endpoint: str = _setting(
        env="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", parse=_text, default=""
    )
    otel_sdk_disabled: bool = _setting(env="OTEL_SDK_DISABLED", parse=_bool, default=False)
    otel_service_name: str = _setting(env="OTEL_SERVICE_NAME", parse=_text, default="remit")
    # Transport security: TLS with cert+key; a client CA turns on mTLS (client cert required).
    tls_cert: Path | None = _setting(env="REMIT_TLS_CERT", parse=_optional_file, default=None)  # noqa: RUF009
    tls_key: Path | None = _setting(env="REMIT_TLS_KEY", parse=_optional_file, default=None)  # noqa: RUF009
    tls_client_ca: Path | None = _setting(  # noqa: RUF009
        env="REMIT_TLS_CLIENT_CA", parse=_optional_file, default=None
    )
    # Which caller identity may query which councils (see remit.server.access); unset = any.
    access_file: Path | None = _setting(  # noqa: RUF009
        env="REMIT_ACCESS_FILE", parse=_optional_file, default=None
    )
    # Plaintext gRPC off loopback must be asked for (e.g. inside a mesh that does mTLS).
    allow_plaintext: bool = _setting(env="REMIT_ALLOW_PLAINTEXT", parse=_bool, default=False)
    # The decision log: stdout | file:PATH | redis:URL[#stream]; strict or best-effort.
    audit_sink: str = _setting(
        env="REMIT_AUDIT_SINK", parse=_audit_sink, default="stdout", secret=True
    )
    audit_mode: str = _setting(
        env="REMIT_AUDIT_MODE", parse=_choice("strict", "best-effort"), default="strict"
    )
    # This replica's name in the decision log's writer ids (unset: the host name); each
    # process (worker) still writes its own chain, named NAME[/wN]/PID/START.
    audit_writer: str = _setting(env="REMIT_AUDIT_WRITER", parse=_writer_name, default="")
    # Ed25519 private key (PEM) signing the log's anchors (checkpoints of each writer's
    # chain, at start, every REMIT_AUDIT_ANCHOR_SECONDS and at shutdown); unset = no anchors.
    audit_signing_key: Path | None = _setting(  # noqa: RUF009
        env="REMIT_AUDIT_SIGNING_KEY", parse=_optional_file, default=None
    )
    audit_anchor_seconds: int = _setting(
        env="REMIT_AUDIT_ANCHOR_SECONDS", parse=_int_between(1, 86400), default=60
    )
    # Strict mode: how long (ms) a unary call's entry waits for concurrent calls to share
    # its write and fsync (0: only the calls that arrive while a write is in progress).
    audit_group_window_ms: int = _setting(
        env="REMIT_AUDIT_GROUP_WINDOW_MS", parse=_int_between(0, 100), default=0
    )
    # A file sink's segment size: once the file reaches this many bytes the next group goes
    # to a new segment (the full one renamed NAME.000001, …); 0 = one file, never rotated.
    audit_rotate_bytes: int = _setting(
        env="REMIT_AUDIT_ROTATE_BYTES", parse=_int_between(0, 2**50), default=0
    )
    # Best-effort mode: a directory for each writer name's high-water mark (a small mapped
    # file), so the next process of the name records what a killed one left queued as a gap.
    audit_state_dir: Path | None = _setting(  # noqa: RUF009
        env="REMIT_AUDIT_STATE_DIR",
        parse=lambda raw: Path(raw.strip()) if raw.strip() else None,
        default=None,
    )
    # Key for the HMAC of case references in the log (hex); unset = a per-process key.
    audit_hmac_key: str = _setting(
        env="REMIT_AUDIT_HMAC_KEY", parse=_hex_key, default="", secret=True
    )
    # Replicas refuse bundles not signed by this Ed25519 public key (PEM), when set.
    bundle_public_key: Path | None = _setting(  # noqa: RUF009
        env="REMIT_BUNDLE_PUBLIC_KEY", parse=_optional_file, default=None
    )
    # Where a replica keeps its last verified bundle, to serve it at start when the active
    # one cannot be verified (unset: no cache; such a replica then refuses to start).
    bundle_cache_dir: Path | None = _setting(  # noqa: RUF009
        env="REMIT_BUNDLE_CACHE_DIR", parse=lambda raw: Path(raw) if raw else None, default=None
    )
    # Items per AuthoriseBatch / AuthoriseStream message.
    batch_limit: int = _setting(env="REMIT_BATCH_LIMIT", parse=_int_between(1, 1000), default=100)
    # Set by the --workers supervisor for its children (not for operators).
    worker_index: int = _setting(
        env="REMIT_WORKER_INDEX", parse=_int_between(-1, 63), default=-1, flag="--worker-index"
    )

    @property
    def tracing_exporter(self) -> str:
        """ "otlp", "console" or "" (tracing off)."""
        if self.otel_sdk_disabled or self.otel_traces_exporter == "none":
            return ""
        if self.otel_traces_exporter:
            return self.otel_traces_exporter
        return "otlp" if (self.otel_endpoint or self.otel_traces_endpoint) else ""

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def for_worker(self, index: int) -> Config:
        """This config as worker ``index`` of a --workers group sees it."""
        metrics = self.metrics_address
        if metrics:
            host, port = metrics.rsplit(":", 1)
            metrics = f"{host}:{int(port) + index}" if int(port) else metrics
        return dataclasses.replace(self, workers=1, worker_index=index, metrics_address=metrics)


def env_names() -> dict[str, str]:
    """Field name -> environment variable, for docs and tests."""
    return {f.name: f.metadata["env"] for f in dataclasses.fields(Config)}


def load(
    environ: Mapping[str, str] | None = None, flags: Mapping[str, str | None] | None = None
) -> Config:
    """Build and validate the config: defaults < file (REMIT_CONFIG) < environment < flags.

    ``flags`` maps field name to the raw text of a command-line flag (None = not given).
    """
    env = os.environ if environ is None else environ
    raw: dict[str, tuple[str, str]] = {}  # field -> (where it came from, raw text)
    file_name = env.get(CONFIG_FILE_ENV, "").strip()
    fields = {f.name: f for f in dataclasses.fields(Config)}
    if file_name:
        for key, value in _read_file(file_name).items():
            if key not in fields:
                raise ConfigError(CONFIG_FILE_ENV, f"{file_name}: unknown setting {key!r}")
            env_name = fields[key].metadata["env"]
            raw[key] = (f"{env_name} (from {file_name}: {key})", _as_text(value))
    for name, f in fields.items():
        env_name = f.metadata["env"]
        if env_name in env:
            raw[name] = (env_name, env[env_name])
        file_env = f"{env_name}_FILE"
        if f.metadata["secret"] and env.get(file_env, "").strip():
            if env_name in env:
                raise ConfigError(file_env, f"set {env_name} or {file_env}, not both")
            raw[name] = (file_env, _read_secret(file_env, env[file_env].strip()))
    for name, value in (flags or {}).items():
        if value is not None:
            raw[name] = (fields[name].metadata["flag"] or name, value)
    values: dict[str, Any] = {}
    for name, (where, text) in raw.items():
        try:
            values[name] = fields[name].metadata["parse"](text)
        except ValueError as exc:
            raise ConfigError(where, str(exc)) from None
    config = Config(**values)
    _check_whole(config, raw)
    return config


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"want a string, number or boolean, got {type(value).__name__}")


def _read_secret(file_env: str, name: str) -> str:
    """A secret's value from its file (surrounding whitespace, e.g. a final newline, dropped;
    the value is never part of an error)."""
    try:
        return Path(name).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(file_env, f"cannot read {name}: {reason}") from None


def secret_file_names() -> dict[str, str]:
    """Field name -> the ``*_FILE`` variable of each secret setting, for docs and tests."""
    return {
        f.name: f"{f.metadata['env']}_FILE"
        for f in dataclasses.fields(Config)
        if f.metadata["secret"]
    }


def _read_file(name: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(Path(name).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(CONFIG_FILE_ENV, f"cannot read {name}: {exc}") from None
    return data


def _check_whole(config: Config, raw: Mapping[str, tuple[str, str]]) -> None:
    def where(name: str) -> str:
        return raw[name][0] if name in raw else env_names()[name]

    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError(
            where("tls_cert" if not config.tls_cert else "tls_key"),
            "TLS needs both REMIT_TLS_CERT and REMIT_TLS_KEY",
        )
    if config.tls_client_ca and not config.tls_cert:
        raise ConfigError(where("tls_client_ca"), "mTLS needs REMIT_TLS_CERT and REMIT_TLS_KEY")
    if config.tls_client_ca and not config.access_file:
        raise ConfigError(
            where("tls_client_ca"),
            "mTLS needs REMIT_ACCESS_FILE: which caller may query which councils",
        )
    if config.workers > 1 and config.port == 0:
        raise ConfigError(where("address"), "--workers > 1 needs a fixed port, not 0")
    if config.metrics_address and config.metrics_address == config.address:
        raise ConfigError(where("metrics_address"), "must differ from the gRPC address")
    if config.http_address and config.http_address in (config.address, config.metrics_address):
        raise ConfigError(where("http_address"), "must differ from the gRPC and metrics addresses")
    if config.authzen_metadata_key and not config.http_base_url:
        raise ConfigError(
            where("authzen_metadata_key"),
            "signed metadata needs REMIT_HTTP_BASE_URL: the PDP identifier it attests",
        )
    if config.http_address and config.workers > 1:
        raise ConfigError(where("http_address"), "the AuthZEN HTTP port needs --workers 1")
    if config.tracing_exporter and importlib.util.find_spec("opentelemetry.sdk") is None:
        name = (
            "otel_traces_exporter"
            if config.otel_traces_exporter
            else ("otel_traces_endpoint" if config.otel_traces_endpoint else "otel_endpoint")
        )
        raise ConfigError(
            where(name),
            "tracing is requested but OpenTelemetry is not installed "
            "(pip install 'remit[otel]'), or unset the variable",
        )
    if config.tracing_exporter == "otlp" and (
        importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is None
    ):
        raise ConfigError(
            where("otel_traces_exporter")
            if config.otel_traces_exporter
            else where("otel_endpoint"),
            "the OTLP exporter is not installed (pip install 'remit[otel]')",
        )
