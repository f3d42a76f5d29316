"""Reading the rich error details remit attaches to a refused call."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def bad_request(err: grpc.RpcError) -> error_details_pb2.BadRequest:
    """The google.rpc.BadRequest of a refused call (fails the test when there is none)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            out = error_details_pb2.BadRequest()
            detail.Unpack(out)
            return out
    raise AssertionError("no BadRequest detail")
