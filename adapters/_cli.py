"""``remit check --host-system lcs --records worker.json,case.json``: records from files.

A records file holds a JSON list of ``{"table": ..., "fields": {...}}`` objects (the same
shape as ``HostRecord`` in the gRPC API); several files are read in order and joined.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from remit.model.errors import InvalidArgument
from remit.model.policy import Obligation
from remit.model.request import Request

from adapters._core import HostMapping, Mapped, Record, apply, casenote_codes
from adapters._tables import TableSet


def read_records(paths: str) -> list[Record]:
    """Records from comma-separated JSON files; a bad file is refused naming it."""
    out: list[Record] = []
    names = [p for p in paths.split(",") if p.strip()]
    if not names:
        raise InvalidArgument("records", "--host-system needs --records a.json[,b.json...]")
    for name in names:
        path = Path(name.strip())
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidArgument("records", f"{path}: cannot read JSON ({exc})") from None
        if not isinstance(data, list):
            raise InvalidArgument("records", f"{path}: must hold a JSON list of records")
        for i, item in enumerate(data):
            if not isinstance(item, dict) or not isinstance(item.get("fields", {}), dict):
                raise InvalidArgument("records", f"{path}[{i}]: want {{table, fields}}")
            out.append((str(item.get("table", "")), item.get("fields") or {}))
    return out


def apply_files(
    req: Request, system: str, paths: str, mappings: TableSet | None = None
) -> tuple[Request, HostMapping]:
    return apply(req, system, read_records(paths), mappings)


def mapped_json(host: HostMapping, obligations: Sequence[Obligation]) -> list[dict[str, Any]]:
    """The mapped values, and the host's casenote code for each record obligation."""
    casenotes = [o.casenote for o in obligations if o.casenote]
    values: list[Mapped] = [*host.mapped, *casenote_codes(host, casenotes)]
    return [asdict(m) for m in values]
