"""JSON lines to a text stream (stdout by default)."""

from __future__ import annotations

import sys
from typing import TextIO

from remit.audit.entry import GENESIS


class StreamSink:
    """JSON lines to a text stream (stdout by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def last(self) -> tuple[int, str]:
        return 0, GENESIS

    def append(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def append_many(self, lines: list[str]) -> None:
        """Several lines in one write and one flush."""
        self._stream.write("".join(line + "\n" for line in lines))
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()
