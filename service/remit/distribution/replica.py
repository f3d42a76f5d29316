"""A replica's policy source when ``REMIT_REDIS_URL`` is set.

At start it loads the active bundle from Redis; if Redis is unreachable (or holds no
bundle) it serves the local compiled files and says so in its status. A background thread
subscribes to change notices and also polls the active pointer (a notice can be missed),
builds any new version off the request path, and swaps one reference. Redis is never
queried per request. When Redis is lost the last good version keeps serving and the thread
reconnects with backoff. A bundle that does not verify or build is refused and counted.

At start, when the active bundle cannot be verified, a replica never serves a different
version than the one Redis names from its baked-in files: it serves its local files only
when they hold that very version (the version is the hash of the files), else the last
verified bundle it kept in its cache (``REMIT_BUNDLE_CACHE_DIR``), else it refuses to start
(not ready) rather than serve an older version than the rest of the fleet; health detail
says which. A refused version is tried again when it is written again (``remit publish`` of
a repaired bundle under the same version) or a change notice names it, never on every poll.
A bundle older (by its ``created`` time) than the one in force is refused unless ``remit
rollback`` moved the pointer to it. A pointer that is not a version id is never logged in
full.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import redis

from remit.config import Config
from remit.distribution.bundle import (
    BUNDLE_MANIFEST,
    Bundle,
    BundleStore,
    build,
    from_copy,
    keep,
    local,
    shown,
)
from remit.distribution.holder import PolicyHolder
from remit.distribution.signing import Verifier
from remit.distribution.source import Background, SourceStatus, StatusBoard
from remit.model.errors import PolicyError
from remit.model.paths import generated_dir
from remit.model.policy import PolicySet

log = logging.getLogger("remit.replica")

BACKOFF_START = 0.1
BACKOFF_MAX = 2.0


class RedisSource:
    def __init__(
        self,
        url: str,
        local_dir: Path | None,
        poll_seconds: float = 0.5,
        prefix: str = "remit",
        verifier: Verifier | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self._store = BundleStore.from_url(url, prefix)
        self._cache = cache_dir
        self._verifier = verifier
        self._poll = poll_seconds
        self._loop = Background("remit-replica")
        self._refused: tuple[str, str] | None = None  # (version, written token) refused
        self._created = 0.0  # the in-force bundle's created time (0: local files)
        policies, origin, redis_state, detail = self._initial(local_dir)
        self.holder = PolicyHolder(policies)
        self._board = StatusBoard(
            SourceStatus(policies.version, origin, redis_state, detail=detail)
        )

    @classmethod
    def from_config(cls, config: Config) -> RedisSource:
        """The replica source ``remit serve`` opens when REMIT_REDIS_URL is set."""
        local = config.policy_dir or generated_dir()
        verifier = (
            Verifier.from_file(config.bundle_public_key) if config.bundle_public_key else None
        )
        return cls(
            config.redis_url,
            local if local.is_dir() else None,
            verifier=verifier,
            cache_dir=config.bundle_cache_dir,
        )

    # -- start -----------------------------------------------------------------------
    def _initial(self, local_dir: Path | None) -> tuple[PolicySet, str, str, str]:
        try:
            active = self._store.active()
        except redis.RedisError as exc:
            if local_dir is None:
                raise PolicyError(f"Redis unreachable and no local policy: {exc}") from exc
            log.warning("Redis unreachable at start (%s); serving local policy", type(exc).__name__)
            return local(local_dir), "local", "unreachable", "Redis unreachable at start"
        if active is not None:
            try:
                return self._load(active), "redis", "connected", ""
            except PolicyError as exc:
                log.error("active bundle %s refused at start: %s", shown(active), exc)
                self._refused = (active, self._written(active))
                return self._fallback(active, exc, local_dir)
        if local_dir is None:
            raise PolicyError("no active bundle in Redis and no local policy")
        return local(local_dir), "local", "connected", "no active bundle in Redis"

    def _fallback(
        self, active: str, exc: PolicyError, local_dir: Path | None
    ) -> tuple[PolicySet, str, str, str]:
        """What to serve at start when the active bundle is refused: the local files if they
        hold that same version, else the cached last verified bundle, else nothing."""
        why = f"active bundle {shown(active)} refused: {exc}"
        if local_dir is not None:
            own = local(local_dir)
            if own.version == active:
                return own, "local", "connected", f"{why}; serving the local files (same version)"
        cached = self._cached()
        if cached is not None:
            return cached, "cache", "connected", f"{why}; serving the last verified bundle"
        raise PolicyError(
            f"{why}; no copy of it and no last verified bundle (REMIT_BUNDLE_CACHE_DIR): not "
            "serving another version than the one Redis names"
        )

    def _cached(self) -> PolicySet | None:
        if self._cache is None or not (self._cache / BUNDLE_MANIFEST).is_file():
            return None
        try:
            bundle, compiled = from_copy(self._cache)  # verified again, as from Redis
            return build(bundle.files, compiled)
        except PolicyError as exc:
            log.error("bundle cache %s refused: %s", self._cache, exc)
            return None

    def _keep(self, bundle: Bundle) -> None:
        """Keep a verified bundle (policy and mapping tables) in the cache directory."""
        if self._cache is None:
            return
        try:
            keep(bundle, self._cache)
        except (OSError, PolicyError) as exc:  # a convenience: never stop serving for it
            log.warning("could not write the bundle cache %s: %s", self._cache, exc)

    def _load(self, version: str) -> PolicySet:
        """Fetch, verify and build one version (off the request path). The role closure
        comes with each council's rule table; the loader checks it, nothing recomputes it.
        An older bundle than the one in force is refused unless rolled back to."""
        bundle, compiled = self._store.fetch(version, self._verifier)
        created = float(bundle.manifest.get("created", 0) or 0)
        if created < self._created and self._store.rollback_target() != version:
            raise PolicyError(
                f"bundle {version} is older than the one in force; only `remit rollback` "
                "moves replicas back to an earlier version"
            )
        policies = build(bundle.files, compiled)
        self._created = created
        self._keep(bundle)
        return policies

    def _written(self, version: str) -> str:
        try:
            return self._store.written(version)
        except redis.RedisError:
            return ""

    # -- PolicySource ----------------------------------------------------------------
    def start(self) -> None:
        self._loop.start(self._run)

    def stop(self) -> None:
        self._loop.stop()

    def status(self) -> SourceStatus:
        return self._board.snapshot()

    # -- the watcher -----------------------------------------------------------------
    def check_now(self, notice: bool = False) -> bool:
        """Read the pointer and swap if it moved. Returns True on a swap. ``notice``: a
        change notice arrived, so a version refused before is tried again."""
        active = self._store.active()
        current = self.holder.current().version
        if active is None:
            return False
        refused = self._refused is not None and self._refused[0] == active
        if active == current and not refused:
            # the local files already hold the active version (same content hash)
            if self._board.snapshot().origin != "redis":
                self._board.update(origin="redis", detail="")
            return False
        token = self._written(active)
        if refused and not notice and self._refused == (active, token):
            return False  # refused already, and not written again since: not on every poll
        started = time.perf_counter()
        try:
            policies = self._load(active)
        except PolicyError as exc:
            log.error("refused bundle %s: %s (keeping %s)", shown(active), exc, current)
            self._refused = (active, token)
            self._board.refused(f"refused {shown(active)}: {exc}")
            return False
        self._refused = None
        self.holder.swap(policies)
        self._board.swapped(policies.version, "redis")
        log.info(
            "policy %s in force (redis), built in %.1f ms",
            policies.version,
            (time.perf_counter() - started) * 1000,
        )
        return True

    def _run(self) -> None:
        backoff = BACKOFF_START
        while not self._loop.stopping.is_set():
            pubsub = None
            try:
                pubsub = self._store.r.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(self._store.channel)
                self._board.update(redis="connected")
                self.check_now()  # catch up on anything missed while away
                backoff = BACKOFF_START
                while not self._loop.stopping.is_set():
                    # a notice, or the poll interval
                    message = pubsub.get_message(timeout=self._poll)
                    self.check_now(notice=message is not None)
            except redis.RedisError as exc:
                self._board.update(redis="unreachable")
                log.warning(
                    "Redis lost (%s); serving %s", type(exc).__name__, self.holder.current().version
                )
                self._loop.stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except Exception:  # never let the watcher die; the last good version stays
                log.exception("replica watcher")
                self._loop.stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(redis.RedisError):
                        pubsub.close()
