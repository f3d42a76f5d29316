"""Host records on the wire: ``HostInput`` into ``(table, fields)`` records for the
authorise use case, and the mapped values into the response."""

from __future__ import annotations

from google.protobuf import json_format
from remit.v1 import remit_pb2 as pb

from adapters._core import HostMapping, Record, casenote_codes


def records_from_proto(host: pb.HostInput) -> list[Record]:
    """The records of a ``HostInput`` as ``(table, fields)`` pairs."""
    return [(r.table, json_format.MessageToDict(r.fields)) for r in host.records]


def add_mapped(response: pb.AuthoriseResponse, host: HostMapping) -> None:
    """List the canonical values used, and the host's casenote codes for record obligations."""
    casenotes = [o.casenote for o in response.obligations if o.casenote]
    for m in [*host.mapped, *casenote_codes(host, casenotes)]:
        response.mapped.append(
            pb.MappedValue(field=m.field, raw=m.raw, canonical=m.canonical, source=m.source)
        )
