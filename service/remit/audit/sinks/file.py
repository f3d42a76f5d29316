"""An append-only, fsync'd JSON-lines file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from remit.audit.entry import GENESIS, parse_lines
from remit.audit.sinks.base import latest_anchors


class FileSink:
    """An append-only file; every entry is flushed and fsync'd before ``append`` returns.

    ``rotate_bytes`` (REMIT_AUDIT_ROTATE_BYTES, 0: never): once the file has grown to that
    size, the writer's next group goes to a new segment: the full file is renamed
    ``NAME.000001`` (then ``.000002`` …: the numbers sort in the order written) and a new
    ``NAME`` begun. Several processes may share the file: one renames it (under an flock
    on ``NAME.lock``), the others notice that ``NAME`` is another file and follow. Every
    writer ends its part of the old segment with an anchor and begins the new one with an
    anchor to its head (:meth:`AuditLog._next_segment`), so each segment verifies alone."""

    def __init__(self, path: Path, rotate_bytes: int = 0) -> None:
        self.path = path
        self.rotate_bytes = rotate_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def segment_moved(self) -> bool:
        """Whether the next group belongs in a new segment: this one is full, or another
        process has begun the next (one fstat and one stat per group, when rotating)."""
        if not self.rotate_bytes:
            return False
        mine = os.fstat(self._fd)
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return True
        return current.st_ino != mine.st_ino or mine.st_size >= self.rotate_bytes

    def next_segment(self) -> None:
        """Move to the new segment: rename the full file unless another process already
        has, and open the new one."""
        import fcntl

        lock = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            mine = os.fstat(self._fd)
            try:
                same = os.stat(self.path).st_ino == mine.st_ino
            except FileNotFoundError:
                same = False
            if same:  # no one has rotated it yet
                os.rename(self.path, self._segment_name(len(segments(self.path))))
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)  # the rename is durable before the new segment's lines
                finally:
                    os.close(dir_fd)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        finally:
            os.close(lock)  # releases the flock
        os.close(self._fd)
        self._fd = fd

    def _segment_name(self, rotated: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{rotated + 1:06d}")

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


def segments(path: Path) -> list[Path]:
    """The rotated segments of the log file ``path``, oldest first (without ``path``)."""
    found = [
        p
        for p in path.parent.glob(path.name + ".*")
        if p.suffix[1:].isdigit() and len(p.suffix) == 7
    ]
    return sorted(found)


def read_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """``parse_lines`` over a log file."""
    return parse_lines(read_texts(path))


def read_texts(path: Path) -> Iterator[str]:
    """A log file's lines, as text, one at a time."""
    with path.open("rb") as fh:
        for raw in fh:
            yield raw.decode("utf-8", errors="replace").rstrip("\n")
