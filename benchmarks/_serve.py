"""A server process for the benchmark: remit as deployed, or a bare grpcio echo server.

    python -m benchmarks._serve remit --policy-dir D [--audit-file F] [--swap-count N ...]
    python -m benchmarks._serve echo --echo-map F

Prints ``PORT <n>`` once serving on 127.0.0.1, then serves until stdin closes, SIGTERM, or
``--max-seconds``. ``remit`` is built exactly as ``remit serve`` builds it (create_server,
LocalSource, the interceptors of ``remit.server.interceptors.ORDER`` and the decision hook,
INFO logging to stderr), with the decision log written
to ``--audit-file`` or to a sink that drops entries (``--audit-file ''``). ``echo`` answers
the same Authorise method with the pre-serialised response remit gives for each request
(same message sizes), with the same thread pool and options and no interceptors. It is also
the *floor* for AuthoriseBatch and AuthoriseStream: it decodes each batch (or stream message),
looks every item's request up in a dict index of remit's answers (keyed by the request's
deterministic serialisation) and returns the results with their correlation ids, encoded by
protobuf: what any server must do for a batch, with no deciding and no logging.

With ``--swap-count``, a thread installs new policy versions while the load runs (the
manifest's version is bumped, then ``LocalSource.reload`` loads, verifies, indexes and
swaps) and writes each reload's duration to ``--swap-report``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from benchmarks._synthetic import bump_version

MAX_WORKERS = 16  # as remit.server.serve.Deps
OPTIONS = [("grpc.max_receive_message_length", 64 * 1024), ("grpc.so_reuseport", 0)]


def _null_log() -> Any:
    """The decision log switched off: no entry is built or written."""
    from remit.audit.log import AuditLog, Pseudonymiser

    from tests.support.sinks import MemorySink

    class NullLog(AuditLog):
        def write_decision(self, *args: Any, **kwargs: Any) -> None:
            return None

    return NullLog(MemorySink(), "strict", Pseudonymiser(b"0" * 32))


def _echo_server(echo_map: Path) -> tuple[grpc.Server, int]:
    from remit.v1 import remit_pb2 as pb

    pairs = json.loads(echo_map.read_text(encoding="utf-8"))
    answers = {bytes.fromhex(q): bytes.fromhex(a) for q, a in pairs}
    default = next(iter(answers.values()))
    # the floor's index: deterministic request bytes -> the decoded answer
    index = {
        pb.AuthoriseRequest.FromString(q).SerializeToString(deterministic=True): (
            pb.AuthoriseResponse.FromString(a)
        )
        for q, a in answers.items()
    }
    fallback = pb.AuthoriseResponse.FromString(default)

    def authorise(request: bytes, context: grpc.ServicerContext) -> bytes:
        return answers.get(request, default)

    def results(items: Any) -> list[Any]:
        return [
            pb.BatchResult(
                correlation_id=item.correlation_id,
                response=index.get(item.request.SerializeToString(deterministic=True), fallback),
            )
            for item in items
        ]

    def batch(request: Any, context: grpc.ServicerContext) -> Any:
        return pb.AuthoriseBatchResponse(results=results(request.items))

    def stream(requests: Any, context: grpc.ServicerContext) -> Any:
        for message in requests:
            yield pb.AuthoriseStreamResponse(results=results(message.items))

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="echo"),
        options=OPTIONS,
    )
    handler = grpc.method_handlers_generic_handler(
        "remit.v1.AuthorisationService",
        {
            "Authorise": grpc.unary_unary_rpc_method_handler(authorise),
            "AuthoriseBatch": grpc.unary_unary_rpc_method_handler(
                batch,
                request_deserializer=pb.AuthoriseBatchRequest.FromString,
                response_serializer=pb.AuthoriseBatchResponse.SerializeToString,
            ),
            "AuthoriseStream": grpc.stream_stream_rpc_method_handler(
                stream,
                request_deserializer=pb.AuthoriseStreamRequest.FromString,
                response_serializer=pb.AuthoriseStreamResponse.SerializeToString,
            ),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    return server, port


def _swapper(
    source: Any, directory: Path, count: int, start: float, interval: float, report: Path
) -> None:
    time.sleep(start)
    out: list[dict[str, Any]] = []
    for i in range(count):
        bump_version(directory, f"bench-swap-{i:03d}")
        began = time.perf_counter()
        swapped = source.reload()
        out.append(
            {
                "seconds": time.perf_counter() - began,
                "swapped": bool(swapped),
                "version": source.holder.current().version,
            }
        )
        time.sleep(interval)
    report.write_text(json.dumps(out), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["remit", "echo"])
    ap.add_argument("--policy-dir", default="")
    ap.add_argument("--audit-file", default="")
    ap.add_argument("--log-file", default="")
    ap.add_argument("--echo-map", default="")
    ap.add_argument("--swap-count", type=int, default=0)
    ap.add_argument("--swap-start", type=float, default=0.5)
    ap.add_argument("--swap-interval", type=float, default=0.3)
    ap.add_argument("--swap-report", default="")
    ap.add_argument("--max-seconds", type=float, default=240.0)
    args = ap.parse_args(argv)

    stop = threading.Event()
    audit_stream = None
    if args.mode == "echo":
        server, port = _echo_server(Path(args.echo_map))
    else:
        from remit.audit.log import AuditLog, Pseudonymiser, StreamSink
        from remit.distribution.source import LocalSource
        from remit.server.serve import Deps, create_server

        logging.basicConfig(  # as remit.server.serve.serve_forever
            level=logging.INFO,
            filename=args.log_file or None,
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
        )
        directory = Path(args.policy_dir)
        source = LocalSource(directory)
        sink: AuditLog
        if args.audit_file:
            # the default: JSON lines (to a file here, stdout in production), strict mode
            audit_stream = open(args.audit_file, "w", encoding="utf-8")  # noqa: SIM115
            sink = AuditLog(StreamSink(audit_stream), "strict", Pseudonymiser(b"k" * 32))
        else:
            sink = _null_log()
        server, port = create_server("127.0.0.1:0", Deps(source.holder, audit=sink))
        if args.swap_count:
            threading.Thread(
                target=_swapper,
                args=(
                    source,
                    directory,
                    args.swap_count,
                    args.swap_start,
                    args.swap_interval,
                    Path(args.swap_report),
                ),
                daemon=True,
            ).start()
    server.start()
    print(f"PORT {port}", flush=True)

    def _stdin_closed() -> None:
        sys.stdin.read()  # returns when the parent closes our stdin
        stop.set()

    threading.Thread(target=_stdin_closed, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait(args.max_seconds)
    server.stop(grace=1).wait()
    if audit_stream is not None:
        audit_stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
