"""Three replica processes behind grpc round_robin and one real Redis.

Publish a new version under steady load: no failed request, every replica on the new
version within a second, and no response whose answer belongs to another version than the
one it names. Kill Redis under load: no failed request, answers unchanged. Restart Redis and
publish again: the replicas converge.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from remit.distribution.bundle import BundleStore, from_directory, local
from remit.server.convert import request_from_proto
from remit.tools.reference import ReferenceEvaluator
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support import GENERATED, ROOT
from tests.support.compiled import compile_variant
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

REQUEST = pb.AuthoriseRequest(
    council="torbay",
    decision="s17_payment",
    actor=pb.Actor(id="tm-1", roles=["team_manager"]),
    context=pb.Context(amount_pence=240000, cumulative_amount_pence=240000),
)


@dataclass
class Load:
    """Steady load from client threads; records every outcome."""

    target: str
    threads: int = 4
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    seen: dict[str, set[int]] = field(default_factory=dict)  # version -> effects
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def _run(self) -> None:
        options = [("grpc.lb_policy_name", "round_robin")]
        with grpc.insecure_channel(self.target, options=options) as ch:
            stub = pb_grpc.AuthorisationServiceStub(ch)
            deadline = time.monotonic() + 120  # bounded even if stop() is never called
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    resp = stub.Authorise(REQUEST, timeout=5)
                except grpc.RpcError as exc:
                    with self._lock:
                        self.failures.append(f"{exc.code()}: {exc.details()}")
                    continue
                with self._lock:
                    self.ok += 1
                    self.seen.setdefault(resp.policy_version, set()).add(resp.effect)

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=10)


def _replica(port: int, redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        REMIT_REDIS_URL=redis_url,
        REMIT_ADDRESS=f"127.0.0.1:{port}",
        REMIT_POLICY_DIR=str(GENERATED),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "remit.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def _version(port: int) -> str:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        return (
            pb_grpc.CatalogueServiceStub(ch)
            .ListCouncils(pb.ListCouncilsRequest(), timeout=2)
            .policy_version
        )


def _wait_all(ports: list[int], version: str, limit: float) -> float:
    started = time.monotonic()
    pending = set(ports)
    while pending:
        pending = {p for p in pending if _version(p) != version}
        if pending:
            assert time.monotonic() - started < limit, f"replicas {pending} not on {version}"
            time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisServer, BundleStore, list[int]]]:
    server = RedisServer(tmp_path).start()
    store = BundleStore.from_url(server.url)
    store.publish(from_directory(GENERATED))
    ports = [free_port() for _ in range(3)]
    procs = [_replica(p, server.url, tmp_path / f"replica{i}.log") for i, p in enumerate(ports)]
    try:
        for p in ports:
            with grpc.insecure_channel(f"127.0.0.1:{p}") as ch:
                grpc.channel_ready_future(ch).result(timeout=30)
        yield server, store, ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
        server.stop()


@pytest.mark.slow
def test_publish_under_load_converges_without_failures(
    cluster: tuple[RedisServer, BundleStore, list[int]], tmp_path: Path
) -> None:
    server, store, ports = cluster
    v1 = store.active()
    assert v1 is not None
    v2_bundle = from_directory(compile_variant(tmp_path / "v2", 250000))
    v3_bundle = from_directory(compile_variant(tmp_path / "v3", 230000))
    target = "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports)
    load = Load(target).start()
    try:
        time.sleep(0.5)
        store.publish(v2_bundle)
        convergence = _wait_all(ports, v2_bundle.version, 1.0)
        time.sleep(0.5)

        # Redis dies mid-load: replicas keep answering from the version they hold
        server.stop()
        before = load.ok
        time.sleep(1.5)
        assert load.ok > before, "no answers while Redis was down"
        assert all(_version(p) == v2_bundle.version for p in ports)

        # Redis comes back (empty: it keeps nothing on disk); publish again
        server.start()
        store.publish(v3_bundle)
        reconverge = _wait_all(ports, v3_bundle.version, 5.0)
        time.sleep(0.3)
    finally:
        load.stop()
    print(
        f"\nconvergence after publish: {convergence * 1000:.0f} ms; after Redis restart: {reconverge * 1000:.0f} ms"
    )
    assert load.failures == []
    assert load.ok > 100
    # each response's answer is the one its version gives: never a mix
    assert set(load.seen) <= {v1, v2_bundle.version, v3_bundle.version}
    assert load.seen[v1] == {pb.EFFECT_DENY}  # £2,400 is above the £2,000.00 ceiling
    assert load.seen[v2_bundle.version] == {pb.EFFECT_ALLOW}  # within £2,500.00
    assert load.seen.get(v3_bundle.version, {pb.EFFECT_DENY}) == {pb.EFFECT_DENY}  # above £2,300.00
    # and those are the Casbin reference evaluator's answers for each version
    for version, directory in ((v1, GENERATED), (v2_bundle.version, tmp_path / "v2" / "generated")):
        policies = local(directory)  # the compiled files with the packaged mapping tables
        assert policies.version == version
        req = request_from_proto(REQUEST)
        allowed, _, _ = ReferenceEvaluator(policies.councils["torbay"], "s17_payment").decide(req)
        assert load.seen[version] == {pb.EFFECT_ALLOW if allowed else pb.EFFECT_DENY}
