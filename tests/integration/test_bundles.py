"""Bundles in a real Redis: publish, rollback, bounded history, verification, and a
replica source that swaps versions off the request path and refuses bad bundles."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from remit.distribution.bundle import (
    Bundle,
    BundleStore,
    files_version,
    from_copy,
    from_directory,
)
from remit.distribution.replica import RedisSource
from remit.engine.evaluate import decide
from remit.model.errors import PolicyError
from remit.model.policy import load_dir
from remit.model.request import Actor, Request

from tests.support import GENERATED
from tests.support.compiled import compile_variant
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def s17(amount: int) -> Request:
    return Request(
        "torbay",
        "s17_payment",
        Actor("tm-1", ("team_manager",)),
        {"amount_pence": amount, "cumulative_amount_pence": amount},
    )


def test_publish_activate_rollback_and_bounded_history(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store = BundleStore.from_url(redis_server.url)
    v1 = from_directory(GENERATED)
    store.publish(v1, keep=2)
    assert store.active() == v1.version
    v2 = from_directory(compile_variant(tmp_path / "v2", 250000))
    store.publish(v2, keep=2)
    assert store.active() == v2.version
    assert store.history() == [v2.version, v1.version]
    store.activate(v1.version)  # rollback
    assert store.active() == v1.version
    v3 = from_directory(compile_variant(tmp_path / "v3", 260000))
    store.publish(v3, keep=2)
    # v1 was active before v3 and is now the oldest: pruned; v2 kept
    assert store.history() == [v3.version, v2.version]
    with pytest.raises(PolicyError):
        store.fetch(v1.version)
    bundle, compiled = store.fetch(v2.version)
    # the bundle's version covers its mapping tables too; the compiled manifest keeps the
    # compiler's version of the compiled files
    assert bundle.version == v2.version == bundle.manifest["version"]
    assert compiled["version"] == bundle.manifest["policy_version"] != v2.version
    # the bundle carries the closure inside the rule table
    assert json.loads(bundle.files["torbay/rules.json"])["roles"]["team_manager"][
        "inherited_by"
    ] == [
        "assistant_director",
        "director",
        "head_of_service",
    ]


def test_replica_swaps_to_a_published_version_within_a_second(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store = BundleStore.from_url(redis_server.url)
    v1 = from_directory(GENERATED)
    store.publish(v1)
    source = RedisSource(redis_server.url, GENERATED, poll_seconds=0.2)
    source.start()
    try:
        assert source.status().origin == "redis"
        assert source.holder.current().version == v1.version
        assert not decide(source.holder.current(), s17(240000)).allowed
        v2 = from_directory(compile_variant(tmp_path / "v2", 250000))
        started = time.monotonic()
        store.publish(v2)
        while source.holder.current().version != v2.version:
            assert time.monotonic() - started < 5.0, "replica did not swap within 5 s"
            time.sleep(0.005)
        assert decide(source.holder.current(), s17(240000)).allowed
        # the status is updated just after the swap (the holder first, so no request waits)
        _wait(lambda: source.status().reloads == 1, 1, "the swap was not reported")
    finally:
        source.stop()


def _force_active(
    store: BundleStore, version: str, files: dict[str, bytes], manifest: dict[str, object]
) -> None:
    """What a faulty or hostile writer could do: bypass publish's own verification."""
    store.r.hset(store.key("bundle", version, "files"), mapping=files)  # type: ignore[arg-type]
    store.r.set(store.key("bundle", version, "manifest"), json.dumps(manifest))
    store.r.set(store.key("active"), version)
    store.r.publish(store.channel, version)


def test_corrupt_and_unbuildable_bundles_are_refused_and_last_good_kept(
    redis_server: RedisServer,
) -> None:
    store = BundleStore.from_url(redis_server.url)
    good = from_directory(GENERATED)
    store.publish(good)
    source = RedisSource(redis_server.url, GENERATED, poll_seconds=0.1)
    source.start()
    try:
        # one byte changed in a policy file
        files = dict(good.files)
        csv = bytearray(files["torbay/policy.csv"])
        csv[csv.index(b"200000")] = ord("9")
        files["torbay/policy.csv"] = bytes(csv)
        _force_active(
            store, "corrupt0000000001", files, dict(good.manifest, version="corrupt0000000001")
        )
        deadline = time.monotonic() + 3
        while source.status().refused < 1:
            assert time.monotonic() < deadline, "corrupt bundle was not refused"
            time.sleep(0.01)
        assert source.holder.current().version == good.version
        # hashes consistent, content does not build (a p line naming an unknown role)
        files = dict(good.files)
        files["torbay/policy.csv"] = good.files["torbay/policy.csv"].replace(
            b"p, apply_epo, team_manager,", b"p, apply_epo, archmage,"
        )
        hashes = {rel: hashlib.sha256(b).hexdigest() for rel, b in files.items()}
        inner = {r: h for r, h in hashes.items() if r != "manifest.json"}
        compiled = json.loads(files["manifest.json"])
        compiled["files"] = inner
        compiled["version"] = files_version(inner)
        files["manifest.json"] = json.dumps(compiled, indent=1, sort_keys=True).encode() + b"\n"
        hashes["manifest.json"] = hashlib.sha256(files["manifest.json"]).hexdigest()
        manifest = dict(good.manifest, version=compiled["version"], files=hashes)
        _force_active(store, compiled["version"], files, manifest)
        deadline = time.monotonic() + 3
        while source.status().refused < 2:
            assert time.monotonic() < deadline, "unbuildable bundle was not refused"
            time.sleep(0.01)
        assert source.holder.current().version == good.version
        assert "refused" in source.status().detail
    finally:
        source.stop()


def test_publish_refuses_to_activate_a_corrupt_bundle(redis_server: RedisServer) -> None:
    store = BundleStore.from_url(redis_server.url)
    good = from_directory(GENERATED)
    store.publish(good)
    store.r.hset(store.key("bundle", good.version, "files"), "torbay/rules.json", b"{}")
    with pytest.raises(PolicyError, match="does not match its manifest hash"):
        store.activate(good.version)


def test_redis_unreachable_at_start_serves_local_and_says_so() -> None:
    source = RedisSource(f"redis://127.0.0.1:{free_port()}/0", GENERATED, poll_seconds=0.1)
    status = source.status()
    assert (status.origin, status.redis) == ("local", "unreachable")
    # the local files and the packaged mapping tables, under the version `remit publish`
    # would give them
    assert source.holder.current().version == from_directory(GENERATED).version


def test_redis_unreachable_and_no_local_policy_fails_to_start() -> None:
    with pytest.raises(PolicyError):
        RedisSource(f"redis://127.0.0.1:{free_port()}/0", None)


def test_the_closure_is_the_compilers_and_the_loader_keeps_it() -> None:
    table = json.loads((GENERATED / "torbay" / "rules.json").read_text())
    closure = {rid: role["inherited_by"] for rid, role in table["roles"].items()}
    assert "director" in closure["social_worker"]
    # independent: only the roles that explicitly include it, never the line managers
    assert closure["independent_reviewing_officer"] == ["irs_service_manager", "senior_iro"]
    torbay = load_dir(GENERATED).councils["torbay"]
    assert {rid: sorted(role.seniors) for rid, role in torbay.roles.items()} == closure


def _rebuilt(files: dict[str, bytes], manifest: dict[str, object]) -> tuple[str, dict, dict]:
    """Hashes and version made consistent again after editing ``files`` (what a faulty
    publisher could produce): returns (version, files, bundle manifest)."""
    files = dict(files)
    hashes = {rel: hashlib.sha256(b).hexdigest() for rel, b in files.items()}
    everything = {r: h for r, h in hashes.items() if r != "manifest.json"}
    inner = {r: h for r, h in everything.items() if not r.startswith("adapters/")}
    compiled = json.loads(files["manifest.json"])
    compiled["files"] = inner
    compiled["version"] = files_version(inner)
    files["manifest.json"] = json.dumps(compiled, indent=1, sort_keys=True).encode() + b"\n"
    hashes["manifest.json"] = hashlib.sha256(files["manifest.json"]).hexdigest()
    version = files_version(everything)
    return version, files, dict(manifest, version=version, files=hashes)


def test_a_bundle_whose_closure_is_wrong_is_refused(redis_server: RedisServer) -> None:
    """Nothing recomputes the closure at load, so the loader must refuse one that is not the
    closure of the table's edges: here the Team Manager's seniors lose the Director (a
    narrower grant) and, separately, gain the Social Worker (a wider one)."""
    store = BundleStore.from_url(redis_server.url)
    good = from_directory(GENERATED)
    for change in ("drop", "add"):
        table = json.loads(good.files["torbay/rules.json"])
        seniors = table["roles"]["team_manager"]["inherited_by"]
        if change == "drop":
            seniors.remove("director")
        else:
            seniors[:] = sorted([*seniors, "social_worker"])
        files = dict(good.files)
        files["torbay/rules.json"] = json.dumps(table).encode()
        version, files, manifest = _rebuilt(files, good.manifest)
        store.r.hset(store.key("bundle", version, "files"), mapping=files)  # type: ignore[arg-type]
        store.r.set(store.key("bundle", version, "manifest"), json.dumps(manifest))
        with pytest.raises(
            PolicyError, match=r"torbay/rules.json: roles\.\w+\.inherited_by: not the closure"
        ):
            store.activate(version)
        assert store.active() is None


def test_a_bundle_of_the_old_format_is_refused(redis_server: RedisServer) -> None:
    store = BundleStore.from_url(redis_server.url)
    good = from_directory(GENERATED)
    for old in (1, 2):  # 2: the rule tables without the mapping tables
        store.write(Bundle(good.version, dict(good.manifest, format=old), good.files))
        with pytest.raises(PolicyError, match=f"bundle format {old}; .*publish it again"):
            store.activate(good.version)


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_refused_version_is_retried_once_repaired_and_republished(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A replica that refused a corrupt bundle takes the same version once it is written
    again, repaired (before: it stayed on the old version for good, while a replica started
    afterwards served the new one)."""
    store = BundleStore.from_url(redis_server.url)
    good = from_directory(GENERATED)
    store.publish(good)
    v2 = from_directory(compile_variant(tmp_path / "v2", 250000))
    broken = dict(v2.files)
    broken["torbay/rules.json"] = b"{}"
    source = RedisSource(redis_server.url, GENERATED, poll_seconds=0.1)
    source.start()
    try:
        store.write(Bundle(v2.version, v2.manifest, broken))
        # the corrupt copy is forced active, as a faulty writer could
        store.r.set(store.key("active"), v2.version)
        store.r.publish(store.channel, v2.version)
        _wait(lambda: source.status().refused >= 1, 3, "corrupt bundle was not refused")
        assert source.holder.current().version == good.version
        time.sleep(0.3)  # the notice may cause one more try
        refused = source.status().refused
        time.sleep(0.5)  # five more polls
        assert source.status().refused == refused  # not retried on every poll
        started = time.monotonic()
        store.publish(v2)  # repaired, the same version
        _wait(lambda: source.holder.current().version == v2.version, 2, "not retried")
        print(f"repaired bundle in force after {time.monotonic() - started:.2f} s")
        assert decide(source.holder.current(), s17(240000)).allowed
    finally:
        source.stop()


def test_an_older_bundle_is_refused_unless_rolled_back_to(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store = BundleStore.from_url(redis_server.url)
    v1 = from_directory(GENERATED, created=1000.0)
    v2 = from_directory(compile_variant(tmp_path / "v2", 250000), created=2000.0)
    store.publish(v1)
    store.publish(v2)
    source = RedisSource(redis_server.url, GENERATED, poll_seconds=0.1)
    source.start()
    try:
        assert source.holder.current().version == v2.version
        store.activate(v1.version)  # moved back without remit rollback
        _wait(lambda: source.status().refused >= 1, 3, "an older bundle was not refused")
        assert source.holder.current().version == v2.version
        assert "older than the one in force" in source.status().detail
        store.rollback(v1.version)
        _wait(lambda: source.holder.current().version == v1.version, 2, "rollback not taken")
    finally:
        source.stop()


def test_a_junk_pointer_is_refused_and_never_shown_in_full(redis_server: RedisServer) -> None:
    store = BundleStore.from_url(redis_server.url)
    good = from_directory(GENERATED)
    store.publish(good)
    source = RedisSource(redis_server.url, GENERATED, poll_seconds=0.1)
    source.start()
    try:
        store.r.set(store.key("active"), "x" * 1_000_000)
        _wait(lambda: source.status().refused >= 1, 3, "junk pointer was not refused")
        assert source.holder.current().version == good.version
        assert len(source.status().detail) < 300
        assert "1000000 chars" in source.status().detail
    finally:
        source.stop()


def test_a_replica_started_on_a_corrupt_active_bundle_says_what_it_serves(
    redis_server: RedisServer,
) -> None:
    """Its local files hold the same version as the refused Redis copy: it must not report
    that version as coming from Redis (before: origin redis, detail empty)."""
    store = BundleStore.from_url(redis_server.url)
    good = from_directory(GENERATED)
    store.publish(good)
    store.r.hset(store.key("bundle", good.version, "files"), "torbay/rules.json", b"{}")
    source = RedisSource(redis_server.url, GENERATED, poll_seconds=0.1)
    source.start()
    try:
        time.sleep(0.4)  # several polls
        status = source.status()
        assert status.origin == "local"
        assert "refused" in status.detail and "serving the local files" in status.detail
        store.publish(good)  # repaired
        _wait(lambda: source.status().origin == "redis", 2, "repaired bundle not taken")
    finally:
        source.stop()


def test_a_replica_never_starts_on_an_older_version_than_redis_names(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The active bundle cannot be verified and the baked-in files hold another (older)
    version: the replica serves its last verified bundle from its cache, or, with none,
    refuses to start; never the older baked-in version (before: it served it)."""
    store = BundleStore.from_url(redis_server.url)
    v2 = from_directory(compile_variant(tmp_path / "v2", 250000))
    store.publish(v2)
    cache = tmp_path / "cache"
    first = RedisSource(redis_server.url, GENERATED, cache_dir=cache)  # keeps v2 on load
    assert first.holder.current().version == v2.version
    assert from_copy(cache)[0].version == v2.version
    store.r.hset(store.key("bundle", v2.version, "files"), "torbay/rules.json", b"{}")
    cached = RedisSource(redis_server.url, GENERATED, cache_dir=cache)
    assert cached.holder.current().version == v2.version
    assert cached.status().origin == "cache"
    assert "serving the last verified bundle" in cached.status().detail
    with pytest.raises(PolicyError, match="not serving another version"):
        RedisSource(redis_server.url, GENERATED, cache_dir=tmp_path / "empty")
