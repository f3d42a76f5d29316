"""Bounded streams: a total and a per-caller limit on open ``AuthoriseStream`` calls.

The sync server gives every open call a worker thread, and a stream holds its thread for as
long as the client keeps it open, sending or not. Without a bound, as many idle streams as
there are threads (``REMIT_THREADS``) stop every RPC of every council, health included. So a
stream takes a slot when it starts and gives it back when it ends; with none free (in all,
or for this caller) it is refused at once with RESOURCE_EXHAUSTED, and the threads beyond
the stream slots stay free for unary calls and health. A stream that keeps its slot while
sending nothing is cancelled after ``idle_seconds`` of waiting for its next message (one
monitor thread; the wait is measured only while the server waits on the client, not while
it answers), so idle streams cannot hold the slots for good.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc

log = logging.getLogger("remit.server")


class StreamSlots:
    """At most ``total`` open streams, at most ``per_caller`` for one caller identity."""

    def __init__(self, total: int, per_caller: int, idle_seconds: float = 30.0) -> None:
        if total < 1 or per_caller < 1 or idle_seconds <= 0:
            raise ValueError("stream limits must be positive")
        self.total = total
        self.per_caller = min(per_caller, total)
        self.idle_seconds = idle_seconds
        self._open: Counter[str] = Counter()
        self._count = 0
        self._lock = threading.Lock()
        # stream -> (its call, since when the server has waited for its next message; None
        # while it is answering)
        self._waiting: dict[int, tuple[grpc.ServicerContext, float | None]] = {}
        self._monitor: threading.Thread | None = None

    @classmethod
    def for_threads(cls, threads: int, idle_seconds: float = 30.0) -> StreamSlots:
        """Half the worker threads for streams (at least one), a quarter per caller: the
        rest always serve unary calls and health."""
        total = max(1, threads // 2)
        return cls(total, max(1, threads // 4), idle_seconds)

    def watch(self, context: grpc.ServicerContext, requests: Iterator[Any]) -> Iterator[Any]:
        """``requests``, cancelling the call when the client sends nothing for
        ``idle_seconds`` while the server waits for it; the stream then just ends."""
        key = id(context)
        self._start_monitor()
        try:
            while True:
                with self._lock:
                    self._waiting[key] = (context, time.monotonic())
                try:
                    request = next(requests)
                except StopIteration:
                    return
                except grpc.RpcError:
                    if not context.is_active():  # cancelled: by the monitor, or the client
                        return
                    raise
                with self._lock:
                    self._waiting[key] = (context, None)
                yield request
        finally:
            with self._lock:
                self._waiting.pop(key, None)

    def _start_monitor(self) -> None:
        with self._lock:
            if self._monitor is not None:
                return
            self._monitor = threading.Thread(
                target=self._cancel_idle, name="remit-stream-idle", daemon=True
            )
        self._monitor.start()

    def _cancel_idle(self) -> None:
        tick = min(1.0, self.idle_seconds / 4)
        while True:
            time.sleep(tick)
            now = time.monotonic()
            with self._lock:
                idle = [
                    (key, ctx)
                    for key, (ctx, since) in self._waiting.items()
                    if since is not None and now - since > self.idle_seconds
                ]
                for key, _ in idle:
                    self._waiting.pop(key, None)
            for _, ctx in idle:
                log.info("stream idle for over %.0f s: cancelled", self.idle_seconds)
                ctx.cancel()

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
