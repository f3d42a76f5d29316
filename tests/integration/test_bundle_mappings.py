"""The adapters' mapping tables travel in the signed bundle and swap with the policy.

A real Redis on a free port, a real replica (``remit serve`` with ``REMIT_REDIS_URL``) and
``remit publish`` as a process: publish v1, call through the LCS adapter, publish v2 that
adds a job title (and re-cites an existing one, so that every answer shows which version's
tables mapped it); the replica takes v2 without a restart, and no answer during the swap
pairs one version's policy with another's mapping tables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from remit.distribution.bundle import BundleStore
from remit.model.policy import load_dir
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support import GENERATED, ROOT
from tests.support.hosts import HOSTS, host_pb
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

MAPPINGS = ROOT / "adapters" / "mappings"
SCENARIO = HOSTS / "torbay" / "tm_epo_exceptional" / "lcs"
NEW_TITLE = "Practice Lead Team Manager"
V2_MARK = "re-cited in v2"


def _records(job_title: str = "Team Manager") -> list[dict[str, object]]:
    worker = json.loads((SCENARIO / "worker.json").read_text(encoding="utf-8"))
    worker[0]["fields"]["JOB_TITLE"] = job_title
    return [*worker, *json.loads((SCENARIO / "case.json").read_text(encoding="utf-8"))]


def _request(job_title: str = "Team Manager") -> pb.AuthoriseRequest:
    return pb.AuthoriseRequest(
        council="torbay",
        decision="apply_epo",
        context=pb.Context(exceptional_circumstances=True),
        host=host_pb("lcs", _records(job_title)),
    )


def _role_source(resp: pb.AuthoriseResponse) -> str:
    (source,) = [m.source for m in resp.mapped if m.field == "actor.roles"]
    return source


def _v2_tables(root: Path) -> Path:
    """A copy of the packaged tables with one job title added and the Team Manager's entry
    re-cited (its line unchanged)."""
    shutil.copytree(MAPPINGS, root)
    path = root / "torbay" / "lcs.yaml"
    text = path.read_text(encoding="utf-8")
    old = '{title: "Team Manager", role: team_manager, source: "scheme role title"}'
    assert old in text
    text = text.replace(
        old,
        f'{{title: "Team Manager", role: team_manager, source: "scheme role title; {V2_MARK}"}}',
    )
    text = text.replace(
        "teams:\n",
        f'  - {{title: "{NEW_TITLE}", role: team_manager, source: "added in v2"}}\nteams:\n',
        1,
    )
    path.write_text(text, encoding="utf-8")
    return root


def _publish(url: str, mappings: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "remit.cli",
            "publish",
            "--redis-url",
            url,
            "--policy-dir",
            str(GENERATED),
            "--mappings-dir",
            str(mappings),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[tuple[RedisServer, str]]:
    server = RedisServer(tmp_path).start()
    published = _publish(server.url, MAPPINGS)
    assert published.returncode == 0, published.stderr
    port = free_port()
    env = dict(
        os.environ,
        REMIT_REDIS_URL=server.url,
        REMIT_ADDRESS=f"127.0.0.1:{port}",
        REMIT_POLICY_DIR=str(GENERATED),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "remit.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "replica.log").open("wb"),
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            grpc.channel_ready_future(ch).result(timeout=60)
        yield server, f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        server.stop()


def test_publish_carries_the_mapping_tables_and_a_replica_swaps_them_with_the_policy(
    replica: tuple[RedisServer, str], tmp_path: Path
) -> None:
    server, address = replica
    store = BundleStore.from_url(server.url)
    v1 = store.active()
    assert v1 is not None
    bundle, compiled = store.fetch(v1)
    assert "adapters/mappings/torbay/lcs.yaml" in bundle.files
    assert (
        bundle.files["adapters/mappings/torbay/lcs.yaml"]
        == (MAPPINGS / "torbay" / "lcs.yaml").read_bytes()
    )
    # the compiled manifest keeps the compiler's version; the bundle's covers the tables too
    assert compiled["version"] == load_dir(GENERATED).version != v1

    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.AuthorisationServiceStub(channel)
        first = stub.Authorise(_request(), timeout=10)
        assert (first.effect, first.policy_version) == (pb.EFFECT_ALLOW, v1)
        assert _role_source(first).startswith("adapters/mappings/torbay/lcs.yaml:")
        assert V2_MARK not in _role_source(first)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Authorise(_request(NEW_TITLE), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert NEW_TITLE in (refused.value.details() or "")

        # requests in flight through the swap: each answer's mapping is its own version's
        seen: list[tuple[str, bool]] = []
        failures: list[str] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    resp = stub.Authorise(_request(), timeout=10)
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code()}: {exc.details()}")
                    continue
                seen.append((resp.policy_version, V2_MARK in _role_source(resp)))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            published = _publish(server.url, _v2_tables(tmp_path / "v2-mappings"))
            assert published.returncode == 0, published.stderr
            assert "mapping tables" in published.stdout
            v2 = store.active()
            assert v2 is not None and v2 != v1
            deadline = time.monotonic() + 10
            while not any(version == v2 for version, _ in seen):
                assert time.monotonic() < deadline, "the replica did not take v2"
                time.sleep(0.05)
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=20)
        assert failures == []
        assert {version for version, _ in seen} == {v1, v2}
        mixed = [s for s in seen if s not in ((v1, False), (v2, True))]
        assert mixed == [], f"{len(mixed)} answers mixed a policy version with other tables"

        # no restart: the new title now maps, under v2
        added = stub.Authorise(_request(NEW_TITLE), timeout=10)
        assert (added.effect, added.policy_version) == (pb.EFFECT_ALLOW, v2)
        assert "added in v2" in _role_source(added)

        # a bundle whose tables do not load is refused by publish; the replica keeps v2
        broken = tmp_path / "broken"
        shutil.copytree(MAPPINGS, broken)
        lcs = broken / "torbay" / "lcs.yaml"
        lcs.write_text(
            lcs.read_text(encoding="utf-8").replace(
                "teams:\n", '  - {title: "Team Manager", role: director}\nteams:\n', 1
            ),
            encoding="utf-8",
        )
        refused_publish = _publish(server.url, broken)
        assert refused_publish.returncode == 4
        assert "adapters/mappings/torbay/lcs.yaml" in refused_publish.stderr
        assert store.active() == v2
        assert stub.Authorise(_request(), timeout=10).policy_version == v2
