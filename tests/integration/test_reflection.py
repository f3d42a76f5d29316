"""Server reflection: grpc.reflection.v1 (what grpcurl and current clients ask first) and
v1alpha, served from one servicer; a client cancelling a reflection stream is an INFO line,
never an ERROR with a traceback."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2 as r

V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def _ask(
    channel: grpc.Channel, method: str, *requests: r.ServerReflectionRequest
) -> list[r.ServerReflectionResponse]:
    call = channel.stream_stream(
        method,
        request_serializer=r.ServerReflectionRequest.SerializeToString,
        response_deserializer=r.ServerReflectionResponse.FromString,
    )
    return list(call(iter(requests), timeout=5))


@pytest.mark.parametrize("method", [V1, V1ALPHA])
def test_both_versions_list_the_services_and_describe_them(
    channel: grpc.Channel, method: str
) -> None:
    listed, described, own = _ask(
        channel,
        method,
        r.ServerReflectionRequest(list_services=""),
        r.ServerReflectionRequest(file_containing_symbol="remit.v1.AuthorisationService"),
        r.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
    )
    names = {s.name for s in listed.list_services_response.service}
    assert {
        "remit.v1.AuthorisationService",
        "remit.v1.CatalogueService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in described.file_descriptor_response.file_descriptor_proto
    ]
    assert any(f.package == "remit.v1" and f.service for f in files)
    (v1,) = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in own.file_descriptor_response.file_descriptor_proto
    ]
    assert v1.name == "grpc/reflection/v1/reflection.proto" and v1.package == "grpc.reflection.v1"
    (method_proto,) = v1.service[0].method
    assert method_proto.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert all("v1alpha" not in f.type_name for m in v1.message_type for f in m.field)


def test_an_unknown_symbol_is_an_error_response_not_a_failed_call(channel: grpc.Channel) -> None:
    (answer,) = _ask(
        channel, V1, r.ServerReflectionRequest(file_containing_symbol="no.such.Symbol")
    )
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


@pytest.mark.parametrize("method", [V1, V1ALPHA])
def test_a_client_cancelling_a_reflection_stream_is_not_an_error(
    channel: grpc.Channel, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="remit.server")
    caplog.set_level(logging.DEBUG, logger="grpc")
    # the capture works: a whole reflection call is logged (DEBUG, OK) by the interceptor
    _ask(channel, method, r.ServerReflectionRequest(list_services=""))
    assert any(f"rpc {method} OK" in rec.getMessage() for rec in caplog.records)
    hold = threading.Event()

    def requests() -> Iterator[r.ServerReflectionRequest]:
        for _ in range(3):
            yield r.ServerReflectionRequest(file_containing_symbol="remit.v1.AuthorisationService")
        hold.wait(5)  # the stream stays open until the client cancels it

    call = channel.stream_stream(
        method,
        request_serializer=r.ServerReflectionRequest.SerializeToString,
        response_deserializer=r.ServerReflectionResponse.FromString,
    )(requests(), timeout=10)
    next(call)
    call.cancel()
    hold.set()
    for _ in range(20):  # let the server see the cancellation and release the generator
        gc.collect()
        time.sleep(0.05)
    # nothing, from grpc or remit, logged an error or a traceback for it
    bad = [rec for rec in caplog.records if rec.levelno >= logging.ERROR or rec.exc_info]
    assert not bad, [rec.getMessage() for rec in bad]
    # if the interceptor has logged the end of the call yet, it was CANCELLED at INFO
    ends = [rec for rec in caplog.records if f"rpc {method} CANCELLED" in rec.getMessage()]
    assert all(rec.levelno == logging.INFO for rec in ends)
