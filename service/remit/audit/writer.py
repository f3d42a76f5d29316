"""Chains entries per writer and writes them to a sink in the declared durability mode
(strict group commit, or best-effort with gap entries)."""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from remit.audit.anchors import AnchorSigner
from remit.audit.entry import (
    GENESIS,
    CallInfo,
    Pseudonymiser,
    _rfc3339,
    build_entry,
    canonical,
    canonical_text,
    entry_hash,
    writer_id,
)
from remit.audit.sinks.base import Sink
from remit.audit.watermark import Watermark
from remit.engine.authorise import Outcome

log = logging.getLogger("remit.audit")


class AuditUnavailable(Exception):
    """Strict mode: the sink did not accept an entry, so no decision may be returned."""


@dataclass
class AuditStats:
    written: int = 0
    dropped: int = 0
    failed: int = 0
    groups: int = 0  # sink writes (each one fsync for a file): entries / groups = group size


@dataclass
class _Ticket:
    """One caller's entries waiting for a strict group commit."""

    entries: list[dict[str, Any]]
    done: bool = False
    error: BaseException | None = None


class AuditLog:
    """Chains entries and writes them to one sink in the declared durability mode."""

    def __init__(
        self,
        sink: Sink,
        mode: str = "strict",
        pseudonymiser: Pseudonymiser | None = None,
        buffer: int = 10_000,
        writer: str | None = None,
        signer: AnchorSigner | None = None,
        anchor_seconds: float = 60.0,
        group_window: float = 0.0,
        watermark: Watermark | None = None,
    ) -> None:
        if mode not in ("strict", "best-effort"):
            raise ValueError(f"audit mode {mode!r}: strict or best-effort")
        self.sink = sink
        self.mode = mode
        self.pseudonymise = pseudonymiser or Pseudonymiser(None)
        self.stats = AuditStats()
        self._lock = threading.Lock()
        # each process is its own writer with its own chain, from seq 1: a writer never
        # continues another's chain (which is what made interleaved writers unverifiable)
        self.writer = writer if writer is not None else writer_id()
        self._seq, self._prev = 0, GENESIS
        self.signer = signer
        self.anchor_seconds = anchor_seconds
        # (seq, unix time) of this writer's last anchor: health detail and metrics
        self.last_anchor: tuple[int, float] = (0, 0.0)
        self._closed = False
        self._stop_anchors = threading.Event()
        self._anchors: threading.Thread | None = None
        if signer is not None:
            try:
                self.write_anchor()  # the chain starts signed, naming the writers before it
            except Exception as exc:
                raise OSError(
                    f"decision log: cannot write the start anchor ({type(exc).__name__})"
                ) from exc
            self._anchors = threading.Thread(
                target=self._anchor_loop, name="remit-audit-anchor", daemon=True
            )
            self._anchors.start()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(buffer)
        # strict group commit: callers queue tickets; one of them (the leader) writes every
        # ticket waiting, after ``group_window`` seconds, in one sink write, and wakes the rest
        self.group_window = group_window
        self._group = threading.Condition()
        self._pending: list[_Ticket] = []
        self._leading = False
        # best-effort: entries lost (buffer full, sink failing) not yet recorded as a gap
        self._gap: dict[str, Any] | None = None
        self._gap_writer = ""
        self._thread: threading.Thread | None = None
        # best-effort: queued and accounted counts that outlive a kill -9 (watermark.py)
        self.watermark = watermark if mode == "best-effort" else None
        if self.watermark is not None and self.watermark.lost:
            wm = self.watermark
            log.warning(
                "audit: the previous process of this writer name lost %d queued entries; "
                "recorded as a gap entry",
                wm.lost,
            )
            self._gap = {"dropped": wm.lost, "first": wm.lost_at, "last": wm.lost_at}
            self._gap_writer = wm.lost_by
            self._write_best_effort([])
        if mode == "best-effort":
            self._thread = threading.Thread(target=self._drain, name="remit-audit", daemon=True)
            self._thread.start()

    def _chain_and_write(self, entries: list[dict[str, Any]]) -> None:
        """Chain ``entries`` onto this writer's head and write them in one sink write; the
        head moves only once the sink has accepted them all."""
        with self._lock:
            self._next_segment()
            seq, prev, lines = self._seq, self._prev, []
            for entry in entries:
                seq += 1
                entry["seq"], entry["prev_hash"], entry["hash"] = str(seq), prev, ""
                entry["writer"] = self.writer
                body = canonical_text(entry)  # with "hash":"" — what the hash covers
                prev = hashlib.sha256(body.encode()).hexdigest()
                # keys are sorted and quotes inside values are escaped, so this is the hash key
                lines.append(body.replace('"hash":""', f'"hash":"{prev}"', 1))
                entry["hash"] = prev
            append_many = getattr(self.sink, "append_many", None)
            if append_many is not None:
                append_many(lines)
            else:
                for line in lines:
                    self.sink.append(line)
            self._seq, self._prev = seq, prev
            self.stats.written += len(lines)
            self.stats.groups += 1

    def write_anchor(self, final: bool = False) -> None:
        """Write a signed anchor of this writer's head now (``final``: the closing one)."""
        if self.signer is None:
            return
        peers = self.sink.recent_anchors() if hasattr(self.sink, "recent_anchors") else {}
        with self._lock:
            self._append_anchor({"final": final}, peers)

    def _append_anchor(
        self, flags: dict[str, bool], peers: dict[str, tuple[int, str]] | None = None
    ) -> None:
        """Chain, sign (when a key is given) and append one anchor; the caller holds the
        lock. ``flags``: final, segment_start or segment_end (only those set are written,
        so an anchor's bytes stay what they were before segments)."""
        seq = self._seq + 1
        witnessed = [
            {"writer": name, "seq": str(s), "hash": h}
            for name, (s, h) in sorted((peers or {}).items())
            if name != self.writer
        ]
        entry: dict[str, Any] = {
            "seq": str(seq),
            "prev_hash": self._prev,
            "hash": "",
            "writer": self.writer,
            "time": _rfc3339(datetime.now(UTC)),
            "anchor": {
                "final": flags.get("final", False),
                "witnessed": witnessed,
                "key_id": self.signer.key_id if self.signer is not None else "",
                "signature": "",
                **{k: True for k in ("segment_start", "segment_end") if flags.get(k)},
            },
        }
        if self.signer is not None:
            entry["anchor"]["signature"] = self.signer.sign(entry)
        entry["hash"] = entry_hash(entry)
        self.sink.append(canonical(entry).decode())
        self._seq, self._prev = seq, entry["hash"]
        self.last_anchor = (seq, time.time())

    def _next_segment(self) -> None:
        """A rotated file log (the caller holds the lock): when the sink's segment is full,
        or another process has begun a new one, close this writer's part of the old segment
        with an anchor, move to the new segment and begin it with an anchor to the head."""
        moved = getattr(self.sink, "segment_moved", None)
        if moved is None or not moved():
            return
        self._append_anchor({"segment_end": True})
        self.sink.next_segment()  # type: ignore[attr-defined]
        self._append_anchor({"segment_start": True})

    def _anchor_loop(self) -> None:
        """Every ``anchor_seconds``: an anchor, when the chain has grown since the last."""
        while not self._stop_anchors.wait(self.anchor_seconds):
            if self._seq == self.last_anchor[0]:
                continue
            try:
                self.write_anchor()
            except Exception as exc:
                log.error(
                    "audit anchor not written (%s); next try in %.0fs",
                    type(exc).__name__,
                    self.anchor_seconds,
                )

    def write_decision(self, outcome: Outcome, call: CallInfo) -> None:
        """Log one answered decision: :meth:`write_decisions` of one."""
        self.write_decisions([(outcome, call)])

    def write_decisions(self, decided: Sequence[tuple[Outcome, CallInfo]]) -> None:
        """Log answered decisions (a batch, a stream message, or one call). Strict: written
        (and for a file, fsync'd) before this returns, in one group with whatever other
        callers are waiting, else :class:`AuditUnavailable` for all of them (none of the
        answers may be returned); best-effort: queued, and a full queue counts drops that
        the log itself then records in a gap entry."""
        entries = [build_entry(outcome, call, self.pseudonymise) for outcome, call in decided]
        if not entries:
            return
        if self.mode == "strict":
            self._commit(entries)
            return
        if self.watermark is not None:
            self.watermark.queued(len(entries))
        for entry in entries:
            try:
                self._queue.put_nowait(entry)
            except queue.Full:
                self._lost(1)

    def _commit(self, entries: list[dict[str, Any]]) -> None:
        """Strict group commit: wait until ``entries`` are durable, leading the group when
        no one else is writing."""
        ticket = _Ticket(entries)
        with self._group:
            self._pending.append(ticket)
            while self._leading and not ticket.done:
                self._group.wait()
            lead = not ticket.done
            if lead:
                self._leading = True
        if lead:
            if self.group_window > 0:
                time.sleep(self.group_window)  # let concurrent calls join this group
            with self._group:
                group, self._pending = self._pending, []
            error: BaseException | None = None
            try:
                self._chain_and_write([e for t in group for e in t.entries])
            except Exception as exc:
                error = exc
            with self._group:
                for t in group:
                    t.done, t.error = True, error
                self._leading = False
                self._group.notify_all()
        if ticket.error is not None:
            with self._lock:
                self.stats.failed += len(entries)
            log.error(
                "audit sink refused an entry (%s): no decision returned",
                type(ticket.error).__name__,
            )
            raise AuditUnavailable(
                "decision log unavailable; no decision was returned"
            ) from ticket.error

    def _lost(self, count: int) -> None:
        """Best-effort: ``count`` entries will never be written; count them for the stats
        and for the next gap entry."""
        now = _rfc3339(datetime.now(UTC))
        with self._lock:
            self.stats.dropped += count
            dropped = self.stats.dropped
            if self._gap is None:
                self._gap = {"dropped": 0, "first": now}
            self._gap["dropped"] += count
            self._gap["last"] = now
        if dropped == count or dropped // 1000 != (dropped - count) // 1000:
            log.warning("audit entries dropped: %d so far, recorded as gap entries", dropped)

    def _take_gap(self) -> dict[str, Any] | None:
        """The gap entry for the entries lost since the last one (None if none were)."""
        with self._lock:
            gap, self._gap = self._gap, None
        if gap is None:
            return None
        fields = {"dropped": str(gap["dropped"]), "first": gap["first"], "last": gap["last"]}
        if self._gap_writer:  # the predecessor's loss: its own gap entry, naming it
            fields["writer"], self._gap_writer = self._gap_writer, ""
        return {
            "seq": "0",
            "prev_hash": "",
            "hash": "",
            "writer": "",
            "time": _rfc3339(datetime.now(UTC)),
            "gap": fields,
        }

    def _write_best_effort(self, entries: list[dict[str, Any]]) -> None:
        """One group: a gap entry first when entries were lost since the last group."""
        gap = self._take_gap()
        group = [gap, *entries] if gap is not None else entries
        try:
            self._chain_and_write(group)
            if self.watermark is not None:
                self.watermark.accounted(len(entries) + (int(gap["gap"]["dropped"]) if gap else 0))
        except Exception as exc:
            log.error("audit sink failed (%s): entries dropped and counted", type(exc).__name__)
            with self._lock:  # the gap not written is still owed, with these entries
                if gap is not None and "writer" in gap["gap"]:
                    self._gap_writer = str(gap["gap"]["writer"])
                if gap is not None:
                    owed = self._gap or {"dropped": 0, "last": gap["gap"]["last"]}
                    owed["dropped"] += int(gap["gap"]["dropped"])
                    owed["first"] = gap["gap"]["first"]
                    self._gap = owed
            if entries:
                self._lost(len(entries))

    def _drain(self) -> None:
        """Best-effort writer: everything queued so far (up to 1,000 entries) per group."""
        while True:
            item = self._queue.get()
            stop, entries = item is None, [] if item is None else [item]
            while not stop and len(entries) < 1000:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    entries.append(item)
            if entries:
                self._write_best_effort(entries)
            if stop:
                return

    def flush(self, timeout: float = 10.0) -> None:
        """Write everything queued (best-effort), the closing anchor (when anchors are
        signed), and close the sink. Once only."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
            if self._gap is not None:
                self._write_best_effort([])  # the last drops, recorded before closing
        if self._anchors is not None:
            self._stop_anchors.set()
            self._anchors.join(timeout)
            try:
                self.write_anchor(final=True)
            except Exception as exc:
                log.error("audit closing anchor not written (%s)", type(exc).__name__)
        self.sink.close()
        if self.watermark is not None:
            self.watermark.close()
