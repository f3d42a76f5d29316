"""An in-memory decision-log sink: what the tests and benchmarks give ``AuditLog``."""

from __future__ import annotations

import json
from typing import Any

from remit.audit.log import GENESIS


class MemorySink:
    """Keeps the chained lines in memory (the sink protocol: last, append, close)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def last(self) -> tuple[int, str]:
        """The sequence number and hash of the last line (0 and the genesis hash if none)."""
        if not self.lines:
            return 0, GENESIS
        e = json.loads(self.lines[-1])
        return int(e["seq"]), str(e["hash"])

    def append(self, line: str) -> None:
        """Keep one chained line."""
        self.lines.append(line)

    def close(self) -> None:
        """Nothing to flush."""

    @property
    def entries(self) -> list[dict[str, Any]]:
        """Every line, parsed."""
        return [json.loads(line) for line in self.lines]
