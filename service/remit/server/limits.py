"""Bounded streams: a total and a per-caller limit on open ``AuthoriseStream`` calls.

The sync server gives every open call a worker thread, and a stream holds its thread for as
long as the client keeps it open, sending or not. Without a bound, as many idle streams as
there are threads (``REMIT_THREADS``) stop every RPC of every council, health included. So a
stream takes a slot when it starts and gives it back when it ends; with none free (in all,
or for this caller) it is refused at once with RESOURCE_EXHAUSTED, and the threads beyond
the stream slots stay free for unary calls and health.
"""

from __future__ import annotations

import threading
from collections import Counter


class StreamSlots:
    """At most ``total`` open streams, at most ``per_caller`` for one caller identity."""

    def __init__(self, total: int, per_caller: int) -> None:
        if total < 1 or per_caller < 1:
            raise ValueError("stream limits must be at least 1")
        self.total = total
        self.per_caller = min(per_caller, total)
        self._open: Counter[str] = Counter()
        self._count = 0
        self._lock = threading.Lock()

    @classmethod
    def for_threads(cls, threads: int) -> StreamSlots:
        """Half the worker threads for streams (at least one), a quarter per caller: the
        rest always serve unary calls and health."""
        total = max(1, threads // 2)
        return cls(total, max(1, threads // 4))

    def acquire(self, caller: str) -> bool:
        """Take a slot for ``caller``; False when none is free (the stream is refused)."""
        with self._lock:
            if self._count >= self.total or self._open[caller] >= self.per_caller:
                return False
            self._count += 1
            self._open[caller] += 1
            return True

    def release(self, caller: str) -> None:
        with self._lock:
            self._count -= 1
            self._open[caller] -= 1
            if self._open[caller] <= 0:
                del self._open[caller]

    def in_use(self) -> int:
        with self._lock:
            return self._count
