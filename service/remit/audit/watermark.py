"""Best-effort mode's high-water mark: how many entries a writer has queued and how many it
has accounted for (written, or recorded as lost in a gap entry), kept in a small
memory-mapped file per writer name (``REMIT_AUDIT_STATE_DIR/NAME[_wN].hwm``).

A store into a shared mapping is a memory write (no system call per decision) and lives in
the kernel's page cache, so it survives kill -9 of the process (not a crash of the machine).
The next process of the same writer name reads the difference, the entries its predecessor
answered but never wrote, and records them in its own chain as a gap entry naming that
predecessor. It may count up to one group too many (a group written just before the kill,
not yet counted): a gap entry says "at most", never fewer than were lost.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from datetime import UTC, datetime
from pathlib import Path

_LAYOUT = struct.Struct("<QQH")  # queued, accounted, length of the writer id that follows
_SIZE = 512
_MAX_ID = _SIZE - _LAYOUT.size


class Watermark:
    """The counters of one writer name, from this process on."""

    def __init__(self, directory: Path, writer: str) -> None:
        base = writer.rsplit("/", 2)[0]  # NAME[/wN]: the same for the next process
        self.path = directory / (base.replace("/", "_") + ".hwm")
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)
            when = datetime.fromtimestamp(os.fstat(fd).st_mtime, UTC)
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)
        queued, accounted, length = _LAYOUT.unpack_from(self._map)
        previous = bytes(self._map[_LAYOUT.size : _LAYOUT.size + min(length, _MAX_ID)])
        # what the previous process of this name answered but never wrote, and when
        self.lost = max(queued - accounted, 0)
        self.lost_by = previous.decode("utf-8", errors="replace")
        self.lost_at = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        me = writer.encode()[:_MAX_ID]
        # the predecessor's loss is carried as queued until this writer's gap entry for it
        # is written (then accounted): killed before that, the next process still sees it
        self._queued, self._accounted = self.lost, 0
        self._lock = threading.Lock()
        self._map[_LAYOUT.size : _LAYOUT.size + len(me)] = me
        _LAYOUT.pack_into(self._map, 0, self._queued, 0, len(me))

    def queued(self, n: int) -> None:
        with self._lock:
            self._queued += n
            struct.pack_into("<Q", self._map, 0, self._queued)

    def accounted(self, n: int) -> None:
        with self._lock:
            self._accounted += n
            struct.pack_into("<Q", self._map, 8, self._accounted)

    def close(self) -> None:
        with self._lock:
            self._map.flush()
            self._map.close()
