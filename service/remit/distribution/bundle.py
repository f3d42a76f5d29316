"""Policy bundles: the compiled policy of every council and a manifest, stored in Redis
under their version with an atomically moved pointer.

A bundle holds each council's rule table (``<council>/rules.json``, with its role closure
as the compiler computed it), its Casbin export (``<council>/policy.csv``), the shared
``model.conf`` and the compiled ``manifest.json``. A replica builds its PolicySet from the
tables with the one loader; nothing recomputes the closure (the loader checks it).

Redis layout (``prefix`` defaults to ``remit``)::

    {prefix}:bundle:{version}:manifest   JSON manifest (bytes)
    {prefix}:bundle:{version}:files      HASH  relative path -> file bytes
    {prefix}:bundle:{version}:signature  Ed25519 signature of the manifest bytes (optional)
    {prefix}:bundle:{version}:written    a random token, new each time the bundle is written
    {prefix}:active                      the version in force (moved with one SET)
    {prefix}:rollback                    the version ``remit rollback`` last moved back to
    {prefix}:history                     LIST of published versions, newest first (bounded)
    {prefix}:changes                     pub/sub channel: the new active version

A bundle is verified before it is built: every file's sha256 must match the manifest and
the manifest's version must be the hash of those hashes (the compiler's own rule). A
bundle that fails either, or fails to build, is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from remit.distribution.signing import Signer, Verifier
from remit.model.errors import PolicyError
from remit.model.policy import PolicySet, load_files

DEFAULT_PREFIX = "remit"
DEFAULT_KEEP = 10
BUNDLE_FORMAT = 2  # 2: rule tables; 1 (before): index.json and a separate closure hash
# written by bundles of format 1; still deleted with its bundle so pruning leaves nothing
_LEGACY_HIERARCHY = "hierarchy"


# what a version id looks like (the compiler's 16 hex digits; tests use longer names)
_POINTER = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def shown(version: str) -> str:
    """A version for a log line or status: itself, or its length when it is not a version
    id (a junk pointer is never logged in full)."""
    return version if _POINTER.fullmatch(version) else f"(not a version id: {len(version)} chars)"


@dataclass(frozen=True)
class Bundle:
    version: str
    manifest: dict[str, Any]
    files: dict[str, bytes]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_version(file_hashes: Mapping[str, str]) -> str:
    """The version of a set of compiled files: the compiler's hash of hashes."""
    return _sha(json.dumps(dict(file_hashes), sort_keys=True).encode())[:16]


def from_directory(directory: Path, created: float | None = None) -> Bundle:
    """A bundle of the compiled policy in ``directory`` (verified on the way in)."""
    try:
        compiled = json.loads((directory / "manifest.json").read_bytes())
        files = {rel: (directory / rel).read_bytes() for rel in compiled["files"]}
    except (OSError, ValueError, KeyError) as exc:
        raise PolicyError(f"{directory}: not a compiled policy directory ({exc})") from exc
    files["manifest.json"] = (directory / "manifest.json").read_bytes()
    hashes = {rel: _sha(data) for rel, data in sorted(files.items())}
    policies = build(files, compiled)
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": policies.version,
        "created": created if created is not None else time.time(),
        "files": hashes,
        "sources": compiled.get("sources", {}),
        "councils": compiled["councils"],
    }
    return Bundle(policies.version, manifest, files)


def verify(manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> dict[str, Any]:
    """Check the format and every hash; return the compiled manifest inside the bundle."""
    if manifest.get("format") != BUNDLE_FORMAT:
        raise PolicyError(
            f"bundle format {manifest.get('format')!r}; this remit reads format {BUNDLE_FORMAT}"
            " (rule tables): publish it again with this remit"
        )
    listed = manifest.get("files")
    if not isinstance(listed, dict) or set(listed) != set(files):
        raise PolicyError("bundle files do not match its manifest")
    for rel, want in listed.items():
        if _sha(files[rel]) != want:
            raise PolicyError(f"bundle file {rel} does not match its manifest hash")
    try:
        compiled: dict[str, Any] = json.loads(files["manifest.json"])
    except (KeyError, ValueError) as exc:
        raise PolicyError("bundle has no readable compiled manifest") from exc
    inner = {rel: h for rel, h in listed.items() if rel != "manifest.json"}
    if compiled.get("files") != inner:
        raise PolicyError("compiled manifest does not list the bundle's files")
    if files_version(inner) != compiled.get("version") or compiled.get("version") != manifest.get(
        "version"
    ):
        raise PolicyError("bundle version is not the hash of its files")
    return compiled


def build(files: Mapping[str, bytes], compiled: Mapping[str, Any]) -> PolicySet:
    """Index a verified bundle into a PolicySet (raises PolicyError)."""
    inner = {rel: data for rel, data in files.items() if rel != "manifest.json"}
    return load_files(inner, compiled)


class BundleStore:
    """Bundles in Redis. Publishing writes the bundle first, then moves the pointer."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self.r = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX, timeout: float = 2.0) -> BundleStore:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=False
        )
        return cls(client, prefix)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def channel(self) -> str:
        return self.key("changes")

    def write(self, bundle: Bundle, signer: Signer | None = None) -> None:
        """Store a bundle under its version (does not activate it), signed if asked."""
        v = bundle.version
        manifest_bytes = json.dumps(bundle.manifest, sort_keys=True).encode()
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(
            self.key("bundle", v, "files"),
            self.key("bundle", v, _LEGACY_HIERARCHY),
            self.key("bundle", v, "signature"),
        )
        if signer is not None:
            pipe.set(self.key("bundle", v, "signature"), signer.sign(manifest_bytes))
        # replicas that refused this version retry it once it is written again (repaired)
        pipe.set(self.key("bundle", v, "written"), secrets.token_hex(8))
        pipe.hset(self.key("bundle", v, "files"), mapping=dict(bundle.files))  # type: ignore[arg-type]
        pipe.set(self.key("bundle", v, "manifest"), manifest_bytes)
        pipe.execute()

    def activate(self, version: str, verifier: Verifier | None = None) -> None:
        """Move the pointer (one SET) and announce it. The bundle must verify and load first,
        so a missing, corrupt or unloadable bundle (e.g. a rollback to one an older remit
        wrote) never goes live."""
        bundle, compiled = self.fetch(version, verifier)
        build(bundle.files, compiled)
        self.r.set(self.key("active"), version)
        self.r.publish(self.channel, version)

    def rollback(self, version: str, verifier: Verifier | None = None) -> None:
        """Move the pointer back to an earlier version: the one move to an older bundle that
        replicas accept (they refuse an older bundle otherwise, see ``RedisSource``)."""
        self.fetch(version, verifier)  # it must exist and verify before it is named
        self.r.set(self.key("rollback"), version)
        self.activate(version, verifier)

    def rollback_target(self) -> str:
        raw = self.r.get(self.key("rollback"))
        return raw.decode(errors="replace") if isinstance(raw, bytes) else ""

    def written(self, version: str) -> str:
        """The token of the last write of ``version`` ("" when none)."""
        raw = self.r.get(self.key("bundle", version, "written"))
        return raw.decode(errors="replace") if isinstance(raw, bytes) else ""

    def publish(
        self, bundle: Bundle, keep: int = DEFAULT_KEEP, signer: Signer | None = None
    ) -> None:
        self.write(bundle, signer)
        self.r.delete(self.key("rollback"))  # a new version moves forward again
        self.activate(bundle.version)
        pipe = self.r.pipeline(transaction=True)
        pipe.lrem(self.key("history"), 0, bundle.version)
        pipe.lpush(self.key("history"), bundle.version)
        pipe.execute()
        self.prune(keep)

    def prune(self, keep: int) -> list[str]:
        """Keep the newest ``keep`` versions (and always the active one)."""
        versions = self.history()
        active = self.active()
        dropped = [v for v in versions[keep:] if v != active]
        for v in dropped:
            self.r.delete(
                self.key("bundle", v, "files"),
                self.key("bundle", v, _LEGACY_HIERARCHY),
                self.key("bundle", v, "manifest"),
                self.key("bundle", v, "signature"),
                self.key("bundle", v, "written"),
            )
            self.r.lrem(self.key("history"), 0, v)
        return dropped

    def active(self) -> str | None:
        raw = self.r.get(self.key("active"))
        return raw.decode(errors="replace") if isinstance(raw, bytes) else None

    def history(self) -> list[str]:
        return [v.decode() for v in self.r.lrange(self.key("history"), 0, -1)]  # type: ignore[union-attr]

    def fetch(
        self, version: str, verifier: Verifier | None = None
    ) -> tuple[Bundle, dict[str, Any]]:
        """Read and verify a bundle (and its signature, given a verifier)."""
        if not _POINTER.fullmatch(version):
            raise PolicyError(f"no bundle {shown(version)}: the pointer is not a version id")
        raw_manifest = self.r.get(self.key("bundle", version, "manifest"))
        if not isinstance(raw_manifest, bytes):
            raise PolicyError(f"no bundle {version} in Redis")
        if verifier is not None:
            signature = self.r.get(self.key("bundle", version, "signature"))
            verifier.verify(raw_manifest, signature if isinstance(signature, bytes) else None)
        try:
            manifest = json.loads(raw_manifest)
        except ValueError as exc:
            raise PolicyError(f"bundle {version}: unreadable manifest") from exc
        raw_files: dict[bytes, bytes] = self.r.hgetall(self.key("bundle", version, "files"))  # type: ignore[assignment]
        files = {k.decode(): v for k, v in raw_files.items()}
        compiled = verify(manifest, files)
        return Bundle(version, manifest, files), compiled
