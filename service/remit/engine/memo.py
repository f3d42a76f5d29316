"""Memos of what is computed from loaded policy objects alone, keyed by identity.

Compiled policy objects (a version's councils, decisions and rules) are immutable, so what
is computed from them alone need be computed once. A memo is keyed by the objects' ids
(hashing a frozen dataclass hashes every field, which costs more than most computations),
and each entry keeps its objects, so an id is never reused while its entry lives. A memo is
bounded: when full it is emptied (the objects of a version swapped out go with it) and is
refilled by the traffic. Reads take no lock; a write takes one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

_T = TypeVar("_T")
_LOCK = threading.Lock()

Memo = dict[Hashable, tuple[tuple[object, ...], Any]]
_TABLES: list[Memo] = []


def new_memo() -> Memo:
    """An empty memo, emptied with every other by :func:`clear`."""
    table: Memo = {}
    _TABLES.append(table)
    return table


def clear() -> None:
    """Empty every memo (the benchmark's first-sight figure; tests)."""
    with _LOCK:
        for table in _TABLES:
            table.clear()


def memo(
    table: Memo, key: Hashable, owners: tuple[object, ...], make: Callable[[], _T], limit: int
) -> _T:
    """``make()`` for ``key``, a key holding ``id()`` of each of ``owners`` (and whatever
    else the value depends on), computed once while its entry lives in ``table``."""
    hit = table.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], owners, strict=True)):
        found: _T = hit[1]
        return found
    value = make()
    with _LOCK:
        if len(table) >= limit:
            table.clear()
        table[key] = (owners, value)
    return value
