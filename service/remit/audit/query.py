"""Asking the decision log: which decisions match a filter (``remit audit query`` and
``remit audit report``).

A filter is on the decision entries only (anchors and gaps are the chain's, not decisions):
by case (the caller gives the case reference and the log's HMAC key; the pseudonym is
computed by the service's own :class:`~remit.audit.entry.Pseudonymiser`, per council), actor
id, council, decision, effect, rule, period (the entry's ``time``, the server's clock) and
the review flag. The log is read line by line, so memory stays flat however long it is; a
line that cannot hold a wanted value (its JSON text lacks it) is passed over unparsed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from remit.audit.entry import Pseudonymiser

EFFECTS = {"allow": "EFFECT_ALLOW", "deny": "EFFECT_DENY"}


def parse_when(text: str, field_name: str) -> str:
    """An ISO date or date-time (UTC when it names no zone) as the log's own time format
    (RFC 3339, milliseconds, ``Z``), so entries compare as strings."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{field_name}: {text!r} is not an ISO date or date-time (2026-12-01 or "
            "2026-12-01T09:30Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Filter:
    """Which decisions to keep; an empty field keeps every value."""

    case_reference: str = ""
    hmac_key: bytes | None = None
    actor_id: str = ""
    council: str = ""
    decision: str = ""
    effect: str = ""  # EFFECT_ALLOW / EFFECT_DENY
    rule_id: str = ""
    since: str = ""  # RFC 3339 (parse_when): time >= since
    until: str = ""  # time < until
    review: bool = False  # flagged for review: deviations and claimed decision times
    deviation: bool = False
    _pseudonyms: dict[str, str] = field(default_factory=dict, repr=False)
    _pseudonymise: Pseudonymiser | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.case_reference:
            if self.hmac_key is None:
                raise ValueError("--case needs the log's key (REMIT_AUDIT_HMAC_KEY)")
            self._pseudonymise = Pseudonymiser(self.hmac_key)
        if self.effect and self.effect not in EFFECTS.values():
            raise ValueError(f"--effect: {self.effect!r} is not allow or deny")

    def _needles(self) -> list[str]:
        """JSON text every matching line must contain (a cheap test before parsing)."""
        wanted = [self.actor_id, self.council, self.decision, self.effect, self.rule_id]
        return [json.dumps(v, ensure_ascii=False) for v in wanted if v]

    def case_pseudonym(self, council: str) -> str:
        """The case's pseudonym in ``council``, as the service computes it."""
        assert self._pseudonymise is not None
        token = self._pseudonyms.get(council)
        if token is None:
            token = self._pseudonyms[council] = self._pseudonymise(council, self.case_reference)
        return token

    def matches(self, e: dict[str, Any]) -> bool:
        if "effect" not in e or "anchor" in e or "gap" in e:
            return False
        checks = (
            ("actor_id", self.actor_id),
            ("council", self.council),
            ("decision", self.decision),
            ("effect", self.effect),
            ("rule_id", self.rule_id),
        )
        if any(want and e.get(key) != want for key, want in checks):
            return False
        t = str(e.get("time", ""))
        if (self.since and t < self.since) or (self.until and t >= self.until):
            return False
        if (self.review and e.get("review") is not True) or (
            self.deviation and e.get("deviation") is not True
        ):
            return False
        return not self.case_reference or e.get("case_ref_hmac") == self.case_pseudonym(
            str(e.get("council", ""))
        )


@dataclass
class Scan:
    """What a query read: lines, decisions matched, lines that were not entries."""

    lines: int = 0
    matched: int = 0
    unreadable: int = 0


class Progress:
    """``scanned N lines, M matched`` on stderr twice a second, when stderr is a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self.on = self._stream.isatty()
        self._next = 0.0

    def tick(self, scan: Scan) -> None:
        now = time.monotonic()
        if self.on and now >= self._next:
            self._next = now + 0.5
            self._stream.write(f"\r  scanned {scan.lines:,} lines, {scan.matched:,} matched")
            self._stream.flush()

    def done(self, scan: Scan) -> None:
        if self.on:
            self._stream.write(f"\r  scanned {scan.lines:,} lines, {scan.matched:,} matched\n")
            self._stream.flush()


def select(
    lines: Iterable[tuple[int, dict[str, Any] | None, str]],
    where: Filter,
    scan: Scan,
    progress: Progress | None = None,
) -> Iterator[tuple[dict[str, Any], str]]:
    """The matching decision entries (parsed, and the line as logged), in log order."""
    needles = where._needles()
    for _, entry, text in lines:
        scan.lines += 1
        if progress is not None and not scan.lines % 4096:
            progress.tick(scan)
        if needles and not all(n in text for n in needles):
            continue
        if entry is None:
            entry = parse(text)
            if entry is None:
                scan.unreadable += 1
                continue
        if where.matches(entry):
            scan.matched += 1
            yield entry, text


def raw_lines(texts: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """Like :func:`~remit.audit.entry.parse_lines`, but nothing parsed yet: :func:`select`
    parses only the lines whose text may match, and passes most over on their text alone."""
    for n, text in enumerate(texts, 1):
        yield n, None, text


def parse(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


COLUMNS = (
    "time",
    "council",
    "decision",
    "effect",
    "rule_id",
    "section",
    "actor_id",
    "case_ref_hmac",
    "policy_version",
    "deviation",
    "deviation_agreed_by",
    "review",
    "decision_id",
    "writer",
    "seq",
)


def row(e: dict[str, Any]) -> list[str]:
    """The entry's :data:`COLUMNS` as text (booleans as yes/no)."""
    out = []
    for c in COLUMNS:
        v = e.get(c, "")
        out.append(("yes" if v else "no") if isinstance(v, bool) else str(v))
    return out


# the table's columns and widths: time, council, decision, effect, rule, actor, case, flags
TABLE = (
    ("TIME", "time", 24),
    ("COUNCIL", "council", 15),
    ("DECISION", "decision", 28),
    ("EFFECT", "effect", 6),
    ("RULE", "rule_id", 28),
    ("ACTOR", "actor_id", 14),
    ("CASE", "case_ref_hmac", 12),
    ("FLAGS", "", 10),
)


def table_header() -> str:
    return "  ".join(f"{title:<{width}}" for title, _, width in TABLE).rstrip()


def table_row(e: dict[str, Any]) -> str:
    cells = []
    for _, key, width in TABLE:
        if key == "effect":
            v = str(e.get("effect", "")).removeprefix("EFFECT_").lower()
        elif key:
            v = str(e.get(key, ""))
        else:
            v = ",".join(f for f in ("deviation", "review") if e.get(f) is True)
        cells.append(v if len(v) <= width else v[: width - 1] + "…")
    return "  ".join(
        f"{c:<{width}}" for c, (_, _, width) in zip(cells, TABLE, strict=True)
    ).rstrip()
