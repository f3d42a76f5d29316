"""Host records on the wire: ``HostInput`` into ``(table, fields)`` records for the
authorise use case, and the mapped values into the response."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import struct_pb2
from remit.model.errors import InvalidArgument
from remit.v1 import remit_pb2 as pb

from adapters._core import HostMapping, Record, casenote_codes


def _plain(value: struct_pb2.Value, field: str) -> Any:
    """A ``Value`` as plain data; NaN and infinities (which JSON cannot carry, and no host
    field holds) are refused naming the field, never an internal error."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        if not math.isfinite(value.number_value):
            raise InvalidArgument(field, "must be a finite number")
        return value.number_value
    if kind == "struct_value":
        return {k: _plain(v, f"{field}.{k}") for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_plain(v, f"{field}[{i}]") for i, v in enumerate(value.list_value.values)]
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None  # null_value, or no kind set


def records_from_proto(host: pb.HostInput) -> list[Record]:
    """The records of a ``HostInput`` as ``(table, fields)`` pairs (InvalidArgument naming
    the field for a value no record can hold)."""
    return [
        (
            r.table,
            {k: _plain(v, f"host.records[{i}].fields[{k}]") for k, v in r.fields.fields.items()},
        )
        for i, r in enumerate(host.records)
    ]


def add_mapped(response: pb.AuthoriseResponse, host: HostMapping) -> None:
    """List the canonical values used, and the host's casenote codes for record obligations."""
    casenotes = [o.casenote for o in response.obligations if o.casenote]
    for m in [*host.mapped, *casenote_codes(host, casenotes)]:
        response.mapped.append(
            pb.MappedValue(field=m.field, raw=m.raw, canonical=m.canonical, source=m.source)
        )
