"""AuthZEN over HTTP against gRPC unary, single evaluations, in one run.

    .venv/bin/python -m benchmarks.authzen_http [--seconds S] [--rounds R]

Starts ``remit serve`` as deployed (one process, the decision log to a file, gRPC and the
AuthZEN HTTP port both open), waits for it to serve, then from this process sends the same
decision (Torbay apply_epo by a Team Manager in exceptional circumstances, an allow) one at
a time over one keep-alive connection of each kind, alternating gRPC and HTTP for ``R``
rounds of ``S`` seconds each, and prints the decisions/s of each round and the medians.
The client is Python (grpcio, http.client) on the same machine: the figures compare the two
paths through remit, not remit against other servers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
BODY = json.dumps(
    {
        "subject": {"type": "worker", "id": "tm-0001", "properties": {"roles": ["team_manager"]}},
        "action": {"name": "apply_epo"},
        "resource": {"type": "case", "id": "CASE-1", "properties": {"council": "torbay"}},
        "context": {"exceptional_circumstances": True},
    }
).encode()
REQUEST = pb.AuthoriseRequest(
    council="torbay",
    decision="apply_epo",
    actor=pb.Actor(id="tm-0001", roles=["team_manager"]),
    context=pb.Context(exceptional_circumstances=True),
    case_reference="CASE-1",
)


def _grpc_round(address: str, seconds: float) -> float:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.AuthorisationServiceStub(channel)
        stub.Authorise(REQUEST, timeout=5)
        done, end = 0, time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < end:
            assert stub.Authorise(REQUEST, timeout=5).effect == pb.EFFECT_ALLOW
            done += 1
        return done / (time.perf_counter() - started)


def _http_round(port: int, seconds: float) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Content-Type": "application/json"}
    conn.request("POST", "/access/v1/evaluation", body=BODY, headers=headers)
    conn.getresponse().read()
    done, end = 0, time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < end:
        conn.request("POST", "/access/v1/evaluation", body=BODY, headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        assert b'"decision":true' in response.read()
        done += 1
    conn.close()
    return done / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    grpc_port, http_port = free_port(), free_port()
    log = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False)  # noqa: SIM115
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REMIT_", "OTEL_"))}
    env.update(
        REMIT_ADDRESS=f"127.0.0.1:{grpc_port}",
        REMIT_HTTP_ADDRESS=f"127.0.0.1:{http_port}",
        REMIT_AUDIT_SINK=f"file:{log.name}",
        REMIT_LOG_LEVEL="WARNING",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "remit.cli", "serve"], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
    try:
        address = f"127.0.0.1:{grpc_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with grpc.insecure_channel(address) as ch:
                    status = health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                if status.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("remit serve did not start")
            time.sleep(0.2)
        rates: dict[str, list[float]] = {"gRPC unary": [], "AuthZEN HTTP": []}
        for i in range(args.rounds):
            rates["gRPC unary"].append(_grpc_round(address, args.seconds))
            rates["AuthZEN HTTP"].append(_http_round(http_port, args.seconds))
            print(
                f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()),
                flush=True,
            )
        g, h = (statistics.median(v) for v in rates.values())
        print(f"median: gRPC unary {g:.0f}/s, AuthZEN HTTP {h:.0f}/s (HTTP/gRPC {h / g:.2f})")
        entries = sum(1 for line in Path(log.name).read_text().splitlines() if line.strip())
        print(f"decision-log entries written: {entries}")
    finally:
        server.terminate()
        server.wait(30)
        os.unlink(log.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
