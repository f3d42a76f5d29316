"""Where the policy in force comes from, and how a new version replaces it.

A :class:`PolicySource` owns a :class:`PolicyHolder`. It builds every new version off the
request path (load, verify hashes, index) and only then swaps one reference, so a request
sees one whole version. A version that fails to load is refused and the last good one kept.

* :class:`LocalSource` — the embedded default: compiled files on disk, optionally watched.
* ``remit._replica.RedisSource`` — the shared bundle in Redis (``REMIT_REDIS_URL``).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from remit._config import Config, ConfigError
from remit._errors import PolicyError
from remit._holder import PolicyHolder
from remit._paths import generated_dir
from remit._policy import load_dir

log = logging.getLogger("remit.policy")


@dataclass
class SourceStatus:
    """What health detail and metrics report about the policy in force."""

    version: str
    origin: str  # "local" or "redis"
    redis: str = "disabled"  # disabled | connected | unreachable
    last_reload: float = field(default_factory=time.time)  # unix time of the last swap
    reloads: int = 0
    refused: int = 0  # versions refused (bad hash, failed to build)
    detail: str = ""


class PolicySource(Protocol):
    holder: PolicyHolder

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> SourceStatus: ...


def _manifest_digest(directory: Path) -> str:
    try:
        return hashlib.sha256((directory / "manifest.json").read_bytes()).hexdigest()
    except OSError:
        return ""


class LocalSource:
    """Compiled policy files on disk; ``watch_seconds`` > 0 polls for a new manifest."""

    def __init__(self, directory: Path, watch_seconds: float = 0.0) -> None:
        self.directory = directory
        self.holder = PolicyHolder(load_dir(directory))  # fails loudly at start
        self._status = SourceStatus(self.holder.current().version, "local")
        self._digest = _manifest_digest(directory)
        self._watch_seconds = watch_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._watch_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="remit-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def status(self) -> SourceStatus:
        with self._lock:
            return SourceStatus(**vars(self._status))

    def reload(self) -> bool:
        """Load the directory again; swap if it verifies. Returns True on a swap."""
        digest = _manifest_digest(self.directory)
        if digest == self._digest:
            return False
        try:
            policies = load_dir(self.directory)
        except PolicyError as exc:
            log.error(
                "refused new local policy: %s (keeping %s)", exc, self.holder.current().version
            )
            with self._lock:
                self._status.refused += 1
                self._status.detail = f"refused: {exc}"
            self._digest = digest
            return False
        self.holder.swap(policies)
        self._digest = digest
        with self._lock:
            self._status.version = policies.version
            self._status.last_reload = time.time()
            self._status.reloads += 1
            self._status.detail = ""
        log.info("policy %s in force (local)", policies.version)
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self._watch_seconds):
            try:
                self.reload()
            except Exception:  # never let the watcher die; the last good version stays
                log.exception("policy watcher")


def open_source(config: Config) -> PolicySource:
    """The policy source the config selects: Redis when REMIT_REDIS_URL is set, else local.

    Loads the first version (raises PolicyError if it cannot); call ``start()`` to begin
    watching. REMIT_REDIS_URL set in a build without ``remit._replica`` is a ConfigError:
    we never fall back to local files when the operator asked for the shared bundle.
    """
    if config.redis_url:
        try:
            replica = importlib.import_module("remit._replica")
        except ImportError:
            raise ConfigError(
                "REMIT_REDIS_URL",
                "is set, but this build of remit has no Redis policy source (remit._replica); "
                "unset it to serve the compiled files on disk",
            ) from None
        source: PolicySource = replica.RedisSource.from_config(config)
        return source
    return LocalSource(config.policy_dir or generated_dir(), config.policy_watch_seconds)
