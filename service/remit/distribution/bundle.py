"""Policy bundles: the compiled policy of every council and a manifest, stored in Redis
under their version with an atomically moved pointer.

A bundle holds each council's rule table (``<council>/rules.json``, with its role closure
as the compiler computed it), its Casbin export (``<council>/policy.csv``), the shared
``model.conf``, the compiled ``manifest.json`` and the adapters' LCS/PARIS mapping tables
(``adapters/mappings/<council>/<system>.yaml``, as in the repository). A replica builds its
PolicySet from the tables with the one loader; nothing recomputes the closure (the loader
checks it). The mapping tables are checked whole when the bundle is built and go into the
same PolicySet, so one swap replaces policy and mappings together.

A bundle's version is the hash of all its files' hashes (the compiler's rule, over the
compiled files *and* the mapping files): a council that adds one job title publishes a new
version without a new image. The compiled ``manifest.json`` inside keeps the compiler's
own version of the compiled files.

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
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis

from adapters import _tables
from adapters._errors import MappingFileError
from remit.distribution.signing import Signer, Verifier
from remit.model.errors import PolicyError
from remit.model.policy import PolicySet, load_files

DEFAULT_PREFIX = "remit"
DEFAULT_KEEP = 10
# 3: rule tables and the adapters' mapping tables; 2: rule tables only; 1: index.json and a
# separate closure hash
BUNDLE_FORMAT = 3
# written by bundles of format 1; still deleted with its bundle so pruning leaves nothing
_LEGACY_HIERARCHY = "hierarchy"


# what a version id looks like (the compiler's 16 hex digits; tests use longer names)
_POINTER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# a bundle file's name: relative, plain segments (written under a replica's cache directory)
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*){0,3}")
# the bundle's own manifest, beside the files in a replica's kept copy
BUNDLE_MANIFEST = "bundle.json"


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


def from_directory(
    directory: Path, created: float | None = None, mappings_dir: Path | None = None
) -> Bundle:
    """A bundle of the compiled policy in ``directory`` and the mapping tables under
    ``mappings_dir`` (default: the packaged ``adapters/mappings``), verified on the way in."""
    return _assemble(directory, created, mappings_dir)[0]


def local(directory: Path) -> PolicySet:
    """The compiled files in ``directory`` with the packaged mapping tables, built as
    ``remit publish`` would bundle them: the same version as the published bundle exactly
    when both hold the same files (a replica's local fallback)."""
    return _assemble(directory, 0.0, None)[1]


def _assemble(
    directory: Path, created: float | None, mappings_dir: Path | None
) -> tuple[Bundle, PolicySet]:
    try:
        compiled = json.loads((directory / "manifest.json").read_bytes())
        files = {rel: (directory / rel).read_bytes() for rel in compiled["files"]}
    except (OSError, ValueError, KeyError) as exc:
        raise PolicyError(f"{directory}: not a compiled policy directory ({exc})") from exc
    files["manifest.json"] = (directory / "manifest.json").read_bytes()
    try:
        files.update(_tables.bundle_files(mappings_dir))
    except OSError as exc:
        raise PolicyError(f"mapping tables: cannot read ({exc})") from exc
    hashes = {rel: _sha(data) for rel, data in sorted(files.items())}
    policies = build(files, compiled)
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": policies.version,
        "policy_version": compiled.get("version"),
        "created": created if created is not None else time.time(),
        "files": hashes,
        "sources": compiled.get("sources", {}),
        "councils": compiled["councils"],
    }
    return Bundle(policies.version, manifest, files), policies


def _is_compiled(rel: str) -> bool:
    return rel != "manifest.json" and not _tables.is_bundle_name(rel)


def verify(manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> dict[str, Any]:
    """Check the format and every hash; return the compiled manifest inside the bundle."""
    if manifest.get("format") != BUNDLE_FORMAT:
        raise PolicyError(
            f"bundle format {manifest.get('format')!r}; this remit reads format {BUNDLE_FORMAT}"
            " (rule tables and mapping tables): publish it again with this remit"
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
    inner = {rel: h for rel, h in listed.items() if _is_compiled(rel)}
    if compiled.get("files") != inner:
        raise PolicyError("compiled manifest does not list the bundle's files")
    everything = {rel: h for rel, h in listed.items() if rel != "manifest.json"}
    if files_version(inner) != compiled.get("version") or files_version(everything) != manifest.get(
        "version"
    ):
        raise PolicyError("bundle version is not the hash of its files")
    return compiled


def build(files: Mapping[str, bytes], compiled: Mapping[str, Any]) -> PolicySet:
    """Index a verified bundle into a PolicySet (raises PolicyError): the rule tables and
    the mapping tables, under the bundle's version (the hash of all its files)."""
    inner = {rel: data for rel, data in files.items() if _is_compiled(rel)}
    policies = load_files(inner, compiled)
    try:
        mappings = _tables.from_bundle(
            {rel: data for rel, data in files.items() if _tables.is_bundle_name(rel)}
        )
    except MappingFileError as exc:
        raise PolicyError(f"mapping tables refused:\n{exc}") from exc
    version = files_version({rel: _sha(d) for rel, d in files.items() if rel != "manifest.json"})
    return replace(policies, version=version, mappings=mappings)


def from_copy(directory: Path) -> tuple[Bundle, dict[str, Any]]:
    """A bundle a replica kept on disk (:func:`keep`), verified again as from Redis; the
    file names are those its bundle manifest lists (checked, see :func:`verify`)."""
    try:
        manifest = json.loads((directory / BUNDLE_MANIFEST).read_bytes())
        listed = manifest["files"]
        if not isinstance(listed, dict) or not all(map(_safe_name, listed)):
            raise ValueError("files is not a list of bundle file names")
        files = {rel: (directory / rel).read_bytes() for rel in listed}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PolicyError(f"{directory}: not a kept bundle ({exc})") from exc
    compiled = verify(manifest, files)
    return Bundle(str(manifest.get("version", "")), manifest, files), compiled


def _safe_name(rel: object) -> bool:
    """A bundle file name that stays inside a directory written from it."""
    return isinstance(rel, str) and _FILE_NAME.fullmatch(rel) is not None and ".." not in rel


def keep(bundle: Bundle, directory: Path) -> None:
    """Write a verified bundle to ``directory`` (a new directory, then one rename, so a
    crash never leaves a half-written copy); :func:`from_copy` reads it back."""
    if not all(map(_safe_name, bundle.files)):
        raise PolicyError("bundle file names are not plain relative names")
    staging = directory.with_name(directory.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    for rel, data in bundle.files.items():
        path = staging / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (staging / BUNDLE_MANIFEST).write_bytes(json.dumps(bundle.manifest, sort_keys=True).encode())
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    staging.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


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
