"""The sink protocol and what every sink shares."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from remit.audit.entry import parse_lines


class Sink(Protocol):
    """Appends chained entries. ``last()`` gives (seq, hash) to continue a chain."""

    def last(self) -> tuple[int, str]: ...

    def append(self, line: str) -> None: ...

    def close(self) -> None: ...


def latest_anchors(newest_first: Iterable[str]) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for text in newest_first:
        if '"anchor":' not in text:
            continue
        for _, entry, _ in parse_lines([text]):
            if entry is not None and isinstance(entry.get("anchor"), dict):
                writer = str(entry.get("writer", ""))
                if writer not in found:
                    found[writer] = (int(entry.get("seq", 0)), str(entry.get("hash", "")))
    return found
