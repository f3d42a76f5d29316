"""Decision-log sinks, chosen by ``REMIT_AUDIT_SINK``."""

from __future__ import annotations

from pathlib import Path

from remit.audit.sinks.base import Sink
from remit.audit.sinks.file import FileSink
from remit.audit.sinks.postgres import PostgresSink, is_postgres_url
from remit.audit.sinks.redis_stream import RedisStreamSink
from remit.audit.sinks.stdout import StreamSink


def sink_from_spec(spec: str, rotate_bytes: int = 0) -> Sink:
    """``stdout`` | ``file:PATH`` | ``redis:URL`` (stream key remit:audit, or URL#stream) |
    ``postgresql://…`` (the table remit_decision_log)."""
    if spec in ("", "stdout"):
        return StreamSink()
    if spec.startswith("file:"):
        return FileSink(Path(spec.removeprefix("file:")), rotate_bytes)
    if spec.startswith("redis:") or spec.startswith("rediss:"):
        url, _, stream = spec.partition("#")
        url = url.removeprefix("redis:") if url.startswith("redis:redis") else url
        return RedisStreamSink(url, stream or "remit:audit")
    if is_postgres_url(spec):
        return PostgresSink(spec)
    raise ValueError(f"audit sink {spec!r}: stdout, file:PATH, redis:URL or postgresql://URL")


__all__ = ["FileSink", "PostgresSink", "RedisStreamSink", "Sink", "StreamSink", "sink_from_spec"]
