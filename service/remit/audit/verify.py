"""Verification of every writer's chain in an interleaved log."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from remit.audit.anchors import AnchorVerifier
from remit.audit.entry import GENESIS, entry_hash


@dataclass
class WriterReport:
    """One writer's chain as verified: its entries, the lines of its first and last entry,
    its last seq and hash, its anchors (the last one's line and seq, whether the writer
    closed its chain); ``problem`` and ``line`` give its first problem ("" if none)."""

    writer: str
    entries: int = 0
    first_line: int = 0
    last_line: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    gaps: int = 0
    dropped: int = 0  # entries the writer lost (best-effort), as its gap entries count them
    anchors: int = 0
    anchor_line: int = 0
    anchor_seq: int = 0
    closed: bool = False
    # a rotated file log's segment: the writer began it with a segment-start anchor (its
    # chain goes on from an earlier segment, from seq first_seq) / its last entry here is a
    # segment-end anchor (it goes on in the next segment)
    continued: bool = False
    segment_ended: bool = False
    first_seq: int = 0
    line: int = 0
    problem: str = ""

    @property
    def unanchored(self) -> int:
        """Entries after the writer's last anchor."""
        return self.last_seq - self.anchor_seq


@dataclass(frozen=True)
class VerifyResult:
    """The whole log: ``ok`` when every writer's chain is intact (and, given the public key,
    anchored). ``line`` and ``problem`` are the log's first problem (a line that is not an
    entry, or the earliest writer's problem); ``writers`` reports each writer, in order of
    first appearance (a missing writer last); ``anchors_checked`` says whether signatures,
    closing anchors and witnesses were checked."""

    ok: bool
    entries: int
    line: int = 0
    problem: str = ""
    writers: tuple[WriterReport, ...] = ()
    anchors_checked: bool = False


@dataclass(frozen=True)
class _Witness:
    by: str
    line: int
    writer: str
    seq: int
    hash: str


def verify_lines(
    lines: Iterator[tuple[int, dict[str, Any] | None, str]],
    anchors: AnchorVerifier | None = None,
    allow_open: bool = False,
) -> VerifyResult:
    """Check every writer's chain in an interleaved log: every line parses, every entry
    hashes to itself, links to its writer's entry before it, and no writer's sequence
    number is missing. A line that is not an entry stops the check (its writer cannot be
    known); a problem stops that writer's check, the others go on.

    Given ``anchors`` (the public key) it also checks that every anchor's signature
    verifies (an edit re-chained through an anchor cannot re-sign it), that every writer
    ends with its closing anchor (a cut tail takes it away; ``allow_open`` accepts writers
    still running or killed, reporting their unanchored entries), and that every writer
    another writer's anchor witnessed is present up to the witnessed anchor (a writer
    removed whole, or cut below what a peer saw)."""
    writers: dict[str, WriterReport] = {}
    anchor_hashes: dict[tuple[str, int], str] = {}
    witnesses: list[_Witness] = []
    count = 0
    for n, entry, _ in lines:
        if entry is None:
            return _result(writers, count, n, "not a JSON log entry (truncated or edited)")
        name = str(entry.get("writer", ""))
        w = writers.get(name)
        if w is None:
            w = writers[name] = WriterReport(name, first_line=n)
        if w.problem:
            continue
        anchor = entry.get("anchor")
        if not w.entries and isinstance(anchor, dict) and anchor.get("segment_start") is True:
            # a segment verified on its own: the chain goes on from the previous segment's
            # head, which this (signed) anchor names as its seq - 1 and prev_hash
            w.last_seq, w.last_hash = (
                max(_int(entry.get("seq")) - 1, 0),
                str(entry.get("prev_hash")),
            )
            w.continued = True
        problem = _link_problem(entry, w)
        if not problem and w.closed:
            problem = "entry after the writer's closing anchor"
        if not problem and anchor is not None and anchors is not None:
            problem = anchors.problem(entry)
        if problem:
            w.line, w.problem = n, problem
            continue
        w.entries, w.last_line, w.last_seq = w.entries + 1, n, int(entry.get("seq", 0))
        w.last_hash = str(entry["hash"])
        if w.entries == 1:
            w.first_seq = w.last_seq
        w.segment_ended = isinstance(anchor, dict) and anchor.get("segment_end") is True
        gap = entry.get("gap")
        if isinstance(gap, dict):
            w.gaps, w.dropped = w.gaps + 1, w.dropped + max(_int(gap.get("dropped")), 0)
        if isinstance(anchor, dict):
            w.anchors, w.anchor_line, w.anchor_seq = w.anchors + 1, n, w.last_seq
            w.closed = anchor.get("final") is True
            anchor_hashes[(name, w.last_seq)] = w.last_hash
            for seen in anchor.get("witnessed") or ():
                if isinstance(seen, dict):
                    witnesses.append(
                        _Witness(
                            name,
                            n,
                            str(seen.get("writer", "")),
                            _int(seen.get("seq")),
                            str(seen.get("hash", "")),
                        )
                    )
        count += 1
    if anchors is not None:
        _check_anchoring(writers, anchor_hashes, witnesses, allow_open)
    return _result(writers, count, anchors_checked=anchors is not None)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _check_anchoring(
    writers: dict[str, WriterReport],
    anchor_hashes: dict[tuple[str, int], str],
    witnesses: list[_Witness],
    allow_open: bool,
) -> None:
    """The checks that need the whole log: closing anchors and witnessed writers."""
    for seen in witnesses:
        w = writers.get(seen.writer)
        where = f"at seq {seen.seq} by writer {seen.by}'s anchor on line {seen.line}"
        if w is None:
            writers[seen.writer] = WriterReport(
                seen.writer,
                line=seen.line,
                problem=f"writer missing: witnessed {where}, but none of its lines are in the log",
            )
        elif w.problem or anchor_hashes.get((seen.writer, seen.seq)) == seen.hash:
            continue  # already reported, or the witnessed anchor is there as seen
        elif (w.segment_ended and seen.seq > w.last_seq) or (
            w.continued and seen.seq < w.first_seq
        ):
            continue  # witnessed in another segment of a rotated log
        elif w.last_seq < seen.seq:
            w.line, w.problem = (
                w.last_line,
                (
                    f"cut: its chain ends at seq {w.last_seq} (line {w.last_line}) but it was "
                    f"witnessed {where}"
                ),
            )
        else:
            w.line, w.problem = (
                w.last_line,
                (
                    f"its anchor at seq {seen.seq} is not the one witnessed {where}: edited "
                    "and re-chained"
                ),
            )
    for w in writers.values():
        if w.problem or w.closed or w.segment_ended or allow_open:
            continue
        if not w.anchors:
            w.line, w.problem = w.last_line, "no anchor: the chain was never signed"
        else:
            w.line, w.problem = (
                w.last_line,
                (
                    f"no closing anchor: {w.unanchored} entries after its last anchor (line "
                    f"{w.anchor_line}, seq {w.anchor_seq}), to seq {w.last_seq} on line "
                    f"{w.last_line}; the log was cut there, or the writer is still running or "
                    "was killed"
                ),
            )


def _link_problem(entry: dict[str, Any], w: WriterReport) -> str:
    """What is wrong with ``entry`` as the next link of writer ``w``'s chain ("" if none)."""
    if entry.get("hash") != entry_hash(entry):
        return "entry was edited: its hash does not match"
    try:
        seq = int(entry.get("seq", 0))
    except (TypeError, ValueError):
        return "entry was edited: seq is not a number"
    if seq != w.last_seq + 1:
        return f"missing link: seq {seq} follows {w.last_seq}"
    if entry.get("prev_hash") != w.last_hash:
        return "broken link: prev_hash is not the previous entry's hash"
    return ""


def _result(
    writers: dict[str, WriterReport],
    count: int,
    line: int = 0,
    problem: str = "",
    anchors_checked: bool = False,
) -> VerifyResult:
    reports = tuple(writers.values())
    if not problem:
        broken = [w for w in reports if w.problem]
        if broken:
            first = min(broken, key=lambda w: w.line)
            who = f" (writer {first.writer})" if first.writer else ""
            line, problem = first.line, f"{first.problem}{who}"
    return VerifyResult(not problem, count, line, problem, reports, anchors_checked)
