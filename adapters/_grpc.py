"""The server's hook: host records in an ``AuthoriseRequest`` onto the engine request, and
the mapped values into the response. Kept here so the servicer change stays one call."""

from __future__ import annotations

from google.protobuf import json_format
from remit.model.request import Request
from remit.v1 import remit_pb2 as pb

from adapters._core import HostMapping, Record, apply, casenote_codes


def records_from_proto(host: pb.HostInput) -> list[Record]:
    return [(r.table, json_format.MessageToDict(r.fields)) for r in host.records]


def apply_host(request: pb.AuthoriseRequest, req: Request) -> tuple[Request, HostMapping]:
    """Merge ``request.host`` into ``req``; raises InvalidArgument when it cannot."""
    return apply(req, request.host.system, records_from_proto(request.host))


def add_mapped(response: pb.AuthoriseResponse, host: HostMapping) -> None:
    """List the canonical values used, and the host's casenote codes for record obligations."""
    casenotes = [o.casenote for o in response.obligations if o.casenote]
    for m in [*host.mapped, *casenote_codes(host, casenotes)]:
        response.mapped.append(
            pb.MappedValue(field=m.field, raw=m.raw, canonical=m.canonical, source=m.source)
        )
