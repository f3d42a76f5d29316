"""A Redis Stream (XADD per entry)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from remit.audit.entry import GENESIS
from remit.audit.sinks.base import latest_anchors


class RedisStreamSink:
    """XADD to a Redis Stream; the reply is the acceptance."""

    def __init__(self, url: str, stream: str = "remit:audit") -> None:
        import redis

        self._r = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.stream = stream

    def last(self) -> tuple[int, str]:
        rows = self._r.xrevrange(self.stream, count=1)
        if not rows:
            return 0, GENESIS
        entry = json.loads(rows[0][1][b"entry"])  # type: ignore[index]
        return int(entry["seq"]), str(entry["hash"])

    def append(self, line: str) -> None:
        self._r.xadd(self.stream, {"entry": line})

    def append_many(self, lines: list[str]) -> None:
        """Several XADDs in one pipelined round trip (MULTI/EXEC: all or none)."""
        pipe = self._r.pipeline(transaction=True)
        for line in lines:
            pipe.xadd(self.stream, {"entry": line})
        pipe.execute()

    def recent_anchors(self, limit: int = 5000) -> dict[str, tuple[int, str]]:
        """Each writer's latest anchor (seq, hash) in the stream's last ``limit`` entries."""
        rows: list[tuple[bytes, dict[bytes, bytes]]] = self._r.xrevrange(  # type: ignore[assignment]
            self.stream, count=limit
        )
        return latest_anchors(fields[b"entry"].decode() for _, fields in rows)

    def entries(self) -> Iterator[str]:
        rows: list[tuple[bytes, dict[bytes, bytes]]] = self._r.xrange(self.stream)  # type: ignore[assignment]
        for _, fields in rows:
            yield fields[b"entry"].decode()

    def close(self) -> None:
        self._r.close()
