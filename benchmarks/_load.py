"""The load generator, run in its own process by the benchmark.

    python -m benchmarks._load --target 127.0.0.1:P --requests F --kind unary --inflight 8

Sends pre-serialised requests (no client-side protobuf work on the unary path) from
``--inflight`` concurrent callers on one grpc.aio channel for ``--seconds`` (after a short
warm-up), stopping early at ``--max-calls``. Every loop is bounded in count and time.
Prints one JSON object: calls, failures by status code, decisions, item errors, RPC/s,
decisions/s, and latency percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
from remit.v1 import remit_pb2 as pb

SERVICE = "/remit.v1.AuthorisationService/"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


class Tally:
    def __init__(self) -> None:
        self.calls = 0
        self.decisions = 0
        self.item_errors = 0
        self.failures: Counter[str] = Counter()
        self.latencies: list[float] = []


def _batch_bytes(requests: list[bytes], size: int, offset: int, stream: bool) -> bytes:
    items = [
        pb.BatchItem(
            correlation_id=str(i),
            request=pb.AuthoriseRequest.FromString(requests[(offset + i) % len(requests)]),
        )
        for i in range(size)
    ]
    if stream:
        return pb.AuthoriseStreamRequest(items=items).SerializeToString()
    return pb.AuthoriseBatchRequest(items=items).SerializeToString()


async def _run(args: argparse.Namespace, requests: list[bytes]) -> dict[str, Any]:
    tally = Tally()
    loop = asyncio.get_running_loop()
    async with grpc.aio.insecure_channel(args.target) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        unary: Any = channel.unary_unary(SERVICE + "Authorise")
        batch: Any = channel.unary_unary(SERVICE + "AuthoriseBatch")
        stream: Any = channel.stream_stream(SERVICE + "AuthoriseStream")
        batches = [
            _batch_bytes(requests, args.batch_size, k * 7, args.kind == "stream") for k in range(8)
        ]
        recording = False
        deadline = loop.time() + args.warmup + args.seconds

        def count_items(raw: bytes, stream_reply: bool) -> None:
            msg: Any = (
                pb.AuthoriseStreamResponse.FromString(raw)
                if stream_reply
                else pb.AuthoriseBatchResponse.FromString(raw)
            )
            tally.decisions += sum(1 for r in msg.results if r.HasField("response"))
            tally.item_errors += sum(1 for r in msg.results if r.HasField("error"))

        async def worker(k: int) -> None:
            i = k
            call: Any = stream() if args.kind == "stream" else None
            try:
                while loop.time() < deadline and tally.calls < args.max_calls:
                    began = time.perf_counter()
                    try:
                        if args.kind == "unary":
                            await unary(requests[i % len(requests)], timeout=10)
                            if recording:
                                tally.decisions += 1
                        elif args.kind == "batch":
                            raw = await batch(batches[i % len(batches)], timeout=10)
                            if recording:
                                count_items(raw, False)
                        else:
                            await call.write(batches[i % len(batches)])
                            raw = await call.read()
                            if raw is grpc.aio.EOF:
                                raise RuntimeError("stream ended early")
                            if recording:
                                count_items(raw, True)
                    except grpc.aio.AioRpcError as exc:
                        if recording:
                            tally.failures[exc.code().name] += 1
                    if recording:
                        tally.calls += 1
                        tally.latencies.append(time.perf_counter() - began)
                    i += args.inflight
            finally:
                if call is not None:
                    await call.done_writing()

        async def start_recording() -> float:
            nonlocal recording
            await asyncio.sleep(args.warmup)
            recording = True
            return time.perf_counter()

        began_task = asyncio.ensure_future(start_recording())
        await asyncio.gather(*(worker(k) for k in range(args.inflight)))
        began = await began_task
        elapsed = time.perf_counter() - began
    lat = sorted(tally.latencies)
    return {
        "kind": args.kind,
        "inflight": args.inflight,
        "seconds": elapsed,
        "calls": tally.calls,
        "failed": sum(tally.failures.values()),
        "failures": dict(tally.failures),
        "decisions": tally.decisions,
        "item_errors": tally.item_errors,
        "rps": tally.calls / elapsed if elapsed else 0.0,
        "decisions_per_s": tally.decisions / elapsed if elapsed else 0.0,
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "max_ms": (lat[-1] * 1000) if lat else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--requests", required=True, help="JSON list of hex AuthoriseRequest bytes")
    ap.add_argument("--kind", choices=["unary", "batch", "stream"], default="unary")
    ap.add_argument("--inflight", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--max-calls", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=100)
    args = ap.parse_args(argv)
    raw = json.loads(Path(args.requests).read_text(encoding="utf-8"))
    requests = [bytes.fromhex(h) for h in raw][:100_000]
    result = asyncio.run(_run(args, requests))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
