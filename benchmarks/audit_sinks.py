"""Decision-log sink cost on batch throughput: strict file sink (group commit: one write and
one fsync per batch) against the stdout sink, in the same run, on the real server.

    .venv/bin/python -m benchmarks.audit_sinks [--seconds 5] [--rounds 3] [--batch 100]

Each round starts ``remit serve`` once per sink (stdout to /dev/null; ``file:`` in a temporary
directory, ``REMIT_AUDIT_MODE=strict``), sends AuthoriseBatch calls of ``--batch`` items from
``--callers`` threads (one channel each) for ``--seconds`` after a one-second warm-up, and
counts decisions per second. Prints one JSON object: per sink, the decisions/s of each round
and their median, and the ratio file/stdout of the medians; and checks the file verifies.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from remit.audit.log import read_lines, verify_lines
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
SERVING = re.compile(r"remit serving policy")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _batch(size: int) -> pb.AuthoriseBatchRequest:
    req = pb.AuthoriseRequest(
        council="torbay",
        decision="s17_payment",
        actor=pb.Actor(id="tm-1", roles=["team_manager"]),
        context=pb.Context(amount_pence=150000, cumulative_amount_pence=150000),
    )
    return pb.AuthoriseBatchRequest(
        items=[pb.BatchItem(correlation_id=f"c{i}", request=req) for i in range(size)]
    )


def _run(sink: str, seconds: float, callers: int, batch: int) -> float:
    """Decisions per second answered by one server with ``sink``."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMIT_")}
    env.update(
        REMIT_ADDRESS=f"127.0.0.1:{port}",
        REMIT_AUDIT_SINK=sink,
        REMIT_AUDIT_MODE="strict",
        REMIT_BATCH_LIMIT=str(max(batch, 100)),
    )
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "remit.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                err.seek(0)
                if SERVING.search(err.read().decode(errors="replace")):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    err.seek(0)
                    raise RuntimeError(f"server did not start: {err.read()[-2000:]!r}")
                time.sleep(0.1)
            request = _batch(batch)
            counts = [0] * callers
            measuring = threading.Event()
            stop = threading.Event()

            def load(i: int) -> None:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                    stub = pb_grpc.AuthorisationServiceStub(ch)
                    while not stop.is_set():
                        resp = stub.AuthoriseBatch(request, timeout=30)
                        ok = sum(1 for r in resp.results if r.WhichOneof("result") == "response")
                        if ok != batch:
                            raise RuntimeError(f"{batch - ok} items failed")
                        if measuring.is_set():
                            counts[i] += ok

            threads = [threading.Thread(target=load, args=(i,)) for i in range(callers)]
            for t in threads:
                t.start()
            time.sleep(1.0)  # warm-up
            measuring.set()
            started = time.monotonic()
            time.sleep(seconds)
            total, elapsed = sum(counts), time.monotonic() - started
            stop.set()
            for t in threads:
                t.join(60)
            return total / elapsed
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "decisions.jsonl"
        rates: dict[str, list[float]] = {"stdout": [], "file": []}
        for _ in range(args.rounds):  # alternated, so drift on a shared machine hits both
            rates["stdout"].append(_run("stdout", args.seconds, args.callers, args.batch))
            rates["file"].append(_run(f"file:{path}", args.seconds, args.callers, args.batch))
        verified = verify_lines(read_lines(path))
    medians = {k: statistics.median(v) for k, v in rates.items()}
    print(
        json.dumps(
            {
                "batch": args.batch,
                "callers": args.callers,
                "seconds": args.seconds,
                "decisions_per_s": {k: [round(x) for x in v] for k, v in rates.items()},
                "median": {k: round(v) for k, v in medians.items()},
                "file_over_stdout": round(medians["file"] / medians["stdout"], 3),
                "file_entries": verified.entries,
                "file_verifies": verified.ok,
                "file_writers": len(getattr(verified, "writers", ())),  # older code: no writers
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
