"""Where the policy in force comes from, and how a new version replaces it.

A :class:`PolicySource` owns a :class:`PolicyHolder`. It builds every new version off the
request path (load, verify hashes, index) and only then swaps one reference, so a request
sees one whole version. A version that fails to load is refused and the last good one kept.

* :class:`LocalSource` — the embedded default: compiled files on disk, optionally watched.
* ``remit.distribution.replica.RedisSource`` — the shared bundle in Redis (``REMIT_REDIS_URL``).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from remit.config import Config, ConfigError
from remit.distribution.holder import PolicyHolder
from remit.model.errors import PolicyError
from remit.model.paths import generated_dir
from remit.model.policy import load_dir

log = logging.getLogger("remit.policy")


@dataclass
class SourceStatus:
    """What health detail and metrics report about the policy in force."""

    version: str
    origin: str  # "local", "redis", or "cache" (a replica's last verified bundle)
    redis: str = "disabled"  # disabled | connected | unreachable
    last_reload: float = field(default_factory=time.time)  # unix time of the last swap
    reloads: int = 0
    refused: int = 0  # versions refused (bad hash, failed to build)
    detail: str = ""


class StatusBoard:
    """A source's status behind a lock: read as a snapshot, changed in one step."""

    def __init__(self, status: SourceStatus) -> None:
        self._status = status
        self._lock = threading.Lock()

    def snapshot(self) -> SourceStatus:
        with self._lock:
            return SourceStatus(**vars(self._status))

    def update(self, **changes: object) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._status, key, value)

    def swapped(self, version: str, origin: str) -> None:
        """A new version is in force."""
        with self._lock:
            s = self._status
            s.version, s.origin, s.last_reload, s.detail = version, origin, time.time(), ""
            s.reloads += 1

    def refused(self, detail: str) -> None:
        """A version was refused; the last good one stays."""
        with self._lock:
            self._status.refused += 1
            self._status.detail = detail


class Background:
    """One daemon thread running ``target`` until ``stop()``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, target: Callable[[], None]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=target, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


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
        self._board = StatusBoard(SourceStatus(self.holder.current().version, "local"))
        self._digest = _manifest_digest(directory)
        self._watch_seconds = watch_seconds
        self._loop = Background("remit-watch")

    def start(self) -> None:
        if self._watch_seconds > 0:
            self._loop.start(self._watch)

    def stop(self) -> None:
        self._loop.stop()

    def status(self) -> SourceStatus:
        return self._board.snapshot()

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
            self._board.refused(f"refused: {exc}")
            self._digest = digest
            return False
        self.holder.swap(policies)
        self._digest = digest
        self._board.swapped(policies.version, "local")
        log.info("policy %s in force (local)", policies.version)
        return True

    def _watch(self) -> None:
        while not self._loop.stopping.wait(self._watch_seconds):
            try:
                self.reload()
            except Exception:  # never let the watcher die; the last good version stays
                log.exception("policy watcher")


def open_source(config: Config) -> PolicySource:
    """The policy source the config selects: Redis when REMIT_REDIS_URL is set, else local.

    Loads the first version (raises PolicyError if it cannot); call ``start()`` to begin
    watching. REMIT_REDIS_URL set in a build without ``remit.distribution.replica`` is a
    ConfigError: we never fall back to local files when the operator asked for the shared bundle.
    """
    if config.redis_url:
        try:
            replica = importlib.import_module("remit.distribution.replica")
        except ImportError:
            raise ConfigError(
                "REMIT_REDIS_URL",
                "is set, but this build of remit has no Redis policy source "
                "(remit.distribution.replica); "
                "unset it to serve the compiled files on disk",
            ) from None
        source: PolicySource = replica.RedisSource.from_config(config)
        return source
    return LocalSource(config.policy_dir or generated_dir(), config.policy_watch_seconds)
