"""An append-only, fsync'd JSON-lines file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from remit.audit.entry import GENESIS, parse_lines
from remit.audit.sinks.base import latest_anchors


class FileSink:
    """An append-only file; every entry is flushed and fsync'd before ``append`` returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def last(self) -> tuple[int, str]:
        """(seq, hash) of the last entry, read from the file's tail: start-up costs the same
        for a million-line log as for an empty one."""
        entry = last_entry(self.path)
        if entry is None:
            return 0, GENESIS
        return int(entry.get("seq", 0)), str(entry.get("hash", ""))

    def append(self, line: str) -> None:
        self.append_many([line])

    def append_many(self, lines: list[str]) -> None:
        """Several lines in one write and one fsync (a group commit)."""
        data = "".join(line + "\n" for line in lines).encode()
        view = memoryview(data)
        while view:  # a regular file takes it all at once; a short write is continued
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def recent_anchors(self, limit: int = 1 << 20) -> dict[str, tuple[int, str]]:
        """Each writer's latest anchor (seq, hash) in the file's last ``limit`` bytes."""
        with self.path.open("rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, end - limit))
            tail = fh.read()
        return latest_anchors(tail.decode("utf-8", errors="replace").splitlines()[::-1])

    def close(self) -> None:
        os.close(self._fd)


def last_entry(path: Path, block: int = 1 << 16) -> dict[str, Any] | None:
    """The last line of a log file that parses as an entry, reading backwards from the end
    in blocks (a torn last line, from a crash mid-write, is passed over as the full scan
    would); None for an empty file or one with no entry."""
    with path.open("rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        tail = b""
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            tail = fh.read(end - start) + tail
            end = start
            lines = tail.split(b"\n")
            # the first piece may be a partial line unless the whole file has been read
            whole = lines if start == 0 else lines[1:]
            for raw in reversed(whole):
                for _, entry, _ in parse_lines([raw.decode("utf-8", errors="replace")]):
                    if entry is not None:
                        return entry
            tail = lines[0] if start > 0 else b""
    return None


def read_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """``parse_lines`` over a log file."""
    return parse_lines(read_texts(path))


def read_texts(path: Path) -> Iterator[str]:
    """A log file's lines, as text, one at a time."""
    with path.open("rb") as fh:
        for raw in fh:
            yield raw.decode("utf-8", errors="replace").rstrip("\n")
