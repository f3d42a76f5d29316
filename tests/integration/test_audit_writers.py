"""Several writers on one decision log, with the real processes: ``remit serve --workers 2``
with a file sink, and two replicas sharing one Redis stream. Each process writes its own
chain; ``remit audit verify`` checks every writer's chain in the interleaved log."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from remit.audit.log import AnchorVerifier, read_lines, verify_lines
from remit.distribution.signing import generate_keypair
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.integration.test_ops import CLEAN_ENV, EPO_ALLOW, EPO_DENY, REMIT, Server, metric
from tests.support import ROOT
from tests.support.redis_server import RedisServer


def _load(address: str, calls: int, answered: list[str], fresh_channels: bool) -> None:
    """``calls`` Authorise calls, alternating allow and deny; the decision ids answered.
    ``fresh_channels``: a new connection per call, so the workers behind one
    SO_REUSEPORT port all get some."""
    channel = None
    try:
        for i in range(calls):
            if channel is None or fresh_channels:
                if channel is not None:
                    channel.close()
                channel = grpc.insecure_channel(
                    address, options=[("grpc.use_local_subchannel_pool", 1)]
                )
            stub = pb_grpc.AuthorisationServiceStub(channel)
            resp = stub.Authorise(EPO_ALLOW if i % 2 else EPO_DENY, timeout=10)
            answered.append(resp.decision_id)
    finally:
        if channel is not None:
            channel.close()


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REMIT, "audit", "verify", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=CLEAN_ENV,
        timeout=60,
    )


def test_two_workers_on_one_file_each_keep_a_chain_that_verifies(tmp_path: Path) -> None:
    path, key, pub = tmp_path / "decisions.jsonl", tmp_path / "audit.key", tmp_path / "audit.pub"
    private, public = generate_keypair()
    key.write_bytes(private)
    pub.write_bytes(public)
    s = Server(
        {
            "REMIT_WORKERS": "2",
            "REMIT_AUDIT_SINK": f"file:{path}",
            "REMIT_AUDIT_WRITER": "rep-a",
            "REMIT_AUDIT_SIGNING_KEY": str(key),
            "REMIT_AUDIT_ANCHOR_SECONDS": "1",
        },
        metrics_ports=2,
    )
    answered: list[str] = []
    try:
        s.wait_serving(workers=2)
        threads = [
            threading.Thread(target=_load, args=(s.address, 60, answered, True)) for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        # each worker's last anchor: in its own metrics (port + index) and in health detail
        def scrape(index: int) -> str:
            url = f"http://127.0.0.1:{s.metrics_port + index}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                return str(r.read().decode())

        for index in (0, 1):
            deadline = time.monotonic() + 10
            while (
                metric(scrape(index), "remit_audit_anchor_seq") < 2 and time.monotonic() < deadline
            ):
                time.sleep(0.2)  # the start anchor is seq 1; an interval anchor follows
            assert metric(scrape(index), "remit_audit_anchor_seq") >= 2
            assert metric(scrape(index), "remit_audit_anchor_timestamp_seconds") > time.time() - 60
        with grpc.insecure_channel(s.address) as ch:
            _, call = health_pb2_grpc.HealthStub(ch).Check.with_call(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        detail = dict(call.trailing_metadata())
        assert re.fullmatch(r"\d+@\d+\.\d{3}", detail["remit-audit-anchor"])
        rc, _, err = s.stop()
    finally:
        s.kill()
    assert rc == 0, err[-3000:]
    entries = [e for _, e, _ in read_lines(path) if e is not None]
    writers = {e["writer"] for e in entries}
    # both workers wrote, each named by the replica, its worker index and its own pid
    assert len(writers) == 2, writers
    assert {w.split("/")[1] for w in writers} == {"w0", "w1"}
    assert all(w.startswith("rep-a/") for w in writers)
    assert len(answered) == 240
    assert set(answered) <= {e.get("decision_id") for e in entries}  # no answered one missing
    result = verify_lines(read_lines(path), AnchorVerifier(public))
    assert result.ok, result
    # start, at least one interval anchor, closing
    assert all(w.closed and w.anchors >= 3 for w in result.writers), result.writers
    assert sorted(w.entries for w in result.writers) == sorted(
        sum(1 for e in entries if e["writer"] == w) for w in writers
    )
    out = _verify(str(path), "--public-key", str(pub))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(entries)} entries, chain intact (2 writer(s))" in out.stdout
    for w in writers:
        assert f"writer {w}:" in out.stdout

    # one worker's last decision edited in place: that writer is named, with the line
    lines = path.read_text().splitlines(keepends=True)
    n = max(i for i, line in enumerate(lines) if '"EFFECT_' in line)
    victim = json.loads(lines[n])
    lines[n] = lines[n].replace('"EFFECT_', '"EFFECT_X', 1)
    path.write_text("".join(lines))
    out = _verify(str(path))
    assert out.returncode == 1
    assert f"line {n + 1}: entry was edited" in out.stdout
    assert f"(writer {victim['writer']})" in out.stdout


def test_two_replicas_on_one_redis_stream_each_keep_a_chain_that_verifies(
    tmp_path: Path,
) -> None:
    redis_server = RedisServer(tmp_path).start()
    servers: list[Server] = []
    answered: list[str] = []
    try:
        for name in ("rep-a", "rep-b"):
            servers.append(
                Server({"REMIT_AUDIT_SINK": redis_server.url, "REMIT_AUDIT_WRITER": name})
            )
        for s in servers:
            s.wait_serving()
        threads = [
            threading.Thread(target=_load, args=(s.address, 80, answered, False))
            for s in servers
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in servers:
            rc, _, err = s.stop()
            assert rc == 0, err[-3000:]
        out = _verify("--redis-url", redis_server.url)
        r = redis.Redis.from_url(redis_server.url)
        rows = r.xrange("remit:audit")
        r.close()
    finally:
        for s in servers:
            s.kill()
        redis_server.stop()
    entries = [json.loads(fields[b"entry"]) for _, fields in rows]
    writers = [e["writer"] for e in entries]
    # the two replicas' entries really are interleaved in the one stream
    switches = sum(1 for a, b in itertools.pairwise(writers) if a != b)
    assert switches > 2, "the replicas' entries did not interleave"
    assert {w.split("/")[0] for w in writers} == {"rep-a", "rep-b"}
    assert len(answered) == 320
    assert set(answered) <= {e.get("decision_id") for e in entries}
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(entries)} entries, chain intact (2 writer(s))" in out.stdout


SUPERVISING_LOG = re.compile(r"supervising 2 workers on \S+: pids (\d+) (\d+)$", re.MULTILINE)


def test_kill_9_of_both_workers_loses_no_answered_decision_and_names_the_open_chains(
    tmp_path: Path,
) -> None:
    path, key, pub = tmp_path / "decisions.jsonl", tmp_path / "audit.key", tmp_path / "audit.pub"
    private, public = generate_keypair()
    key.write_bytes(private)
    pub.write_bytes(public)
    s = Server(
        {
            "REMIT_WORKERS": "2",
            "REMIT_AUDIT_SINK": f"file:{path}",
            "REMIT_AUDIT_SIGNING_KEY": str(key),
        },
        metrics_ports=2,
    )
    answered: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            with grpc.insecure_channel(
                s.address, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as ch:
                try:
                    resp = pb_grpc.AuthorisationServiceStub(ch).Authorise(EPO_ALLOW, timeout=5)
                except grpc.RpcError:
                    continue  # refused or cut by the kill: not answered
                answered.append(resp.decision_id)

    try:
        pids = [int(p) for p in s.wait_stderr(SUPERVISING_LOG.search).groups()]
        s.wait_serving(workers=2)
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(answered) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:  # mid-load, both workers, no warning
            os.kill(pid, signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(30)
        s.stop()
    finally:
        stop.set()
        s.kill()
    assert len(answered) >= 200
    entries = [e for _, e, _ in read_lines(path) if e is not None]
    assert set(answered) <= {e.get("decision_id") for e in entries}  # 0 answered missing
    first = next(e["writer"] for e in entries if e["writer"].split("/")[2] == str(pids[0]))
    # the killed writers wrote no closing anchor: verify says so, naming them
    out = _verify(str(path), "--public-key", str(pub))
    assert out.returncode == 1
    assert f"writer {first}:" in out.stdout and "no closing anchor" in out.stdout
    # accepted as open (killed), every chain intact, the unanchored entries counted
    out = _verify(str(path), "--public-key", str(pub), "--allow-open")
    assert out.returncode == 0, out.stdout
    assert "entries unanchored" in out.stdout


@pytest.mark.slow
def test_kill_9_of_two_replicas_on_one_redis_stream_loses_no_answered_decision(
    tmp_path: Path,
) -> None:
    """Two replicas, strict mode, one Redis stream, under load, both killed -9: every
    answered decision is in the stream and each replica's chain verifies (open: a killed
    writer writes no closing anchor)."""
    key, pub = tmp_path / "audit.key", tmp_path / "audit.pub"
    private, public = generate_keypair()
    key.write_bytes(private)
    pub.write_bytes(public)
    redis_server = RedisServer(tmp_path).start()
    servers: list[Server] = []
    answered: list[str] = []
    stop = threading.Event()

    def load(address: str) -> None:
        with grpc.insecure_channel(address) as ch:
            stub = pb_grpc.AuthorisationServiceStub(ch)
            while not stop.is_set():
                try:
                    answered.append(stub.Authorise(EPO_ALLOW, timeout=5).decision_id)
                except grpc.RpcError:
                    if stop.is_set():
                        return  # refused or cut by the kill: not answered

    try:
        for name in ("rep-a", "rep-b"):
            servers.append(
                Server(
                    {
                        "REMIT_AUDIT_SINK": redis_server.url,
                        "REMIT_AUDIT_WRITER": name,
                        "REMIT_AUDIT_SIGNING_KEY": str(key),
                        "REMIT_AUDIT_ANCHOR_SECONDS": "1",
                    }
                )
            )
        for s in servers:
            s.wait_serving()
        threads = [
            threading.Thread(target=load, args=(s.address,)) for s in servers for _ in range(3)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(answered) < 400 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for s in servers:  # mid-load, no warning
            os.kill(s.proc.pid, signal.SIGKILL)
        for t in threads:
            t.join(30)
        out = _verify("--redis-url", redis_server.url, "--public-key", str(pub), "--allow-open")
        r = redis.Redis.from_url(redis_server.url)
        rows = r.xrange("remit:audit")
        r.close()
    finally:
        stop.set()
        for s in servers:
            s.kill()
        redis_server.stop()
    assert len(answered) >= 400
    logged = {json.loads(fields[b"entry"]).get("decision_id") for _, fields in rows}
    assert not set(answered) - logged  # 0 answered decisions missing
    assert out.returncode == 0, out.stdout + out.stderr
    assert "chain intact (2 writer(s))" in out.stdout
    assert out.stdout.count("entries unanchored") == 2
