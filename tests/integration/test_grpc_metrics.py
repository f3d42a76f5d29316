"""The conventional gRPC server metrics and process_* beside remit's own, from a real server
on a free port: started, handled by code and handling time for unary and streaming calls."""

from __future__ import annotations

import re
from collections.abc import Iterator

import grpc
import pytest
from prometheus_client import generate_latest
from remit.distribution.holder import PolicyHolder
from remit.distribution.source import SourceStatus
from remit.model.policy import PolicySet
from remit.server.metrics import Metrics
from remit.server.serve import Deps, create_server
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

ALLOW = pb.AuthoriseRequest(
    council="torbay",
    decision="apply_epo",
    actor=pb.Actor(id="tm-1", roles=["team_manager"]),
    context=pb.Context(exceptional_circumstances=True),
)


@pytest.fixture
def served(policies: PolicySet) -> Iterator[tuple[grpc.Channel, Metrics]]:
    metrics = Metrics(lambda: SourceStatus(policies.version, "local"))
    server, port = create_server("127.0.0.1:0", Deps(PolicyHolder(policies), metrics=metrics))
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, metrics
    finally:
        server.stop(grace=None)


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        found = m and dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if m and m.group(1) == name and found == labels:
            return float(m.group(3))
    return 0.0


def test_conventional_grpc_and_process_metrics(served: tuple[grpc.Channel, Metrics]) -> None:
    channel, metrics = served
    stub = pb_grpc.AuthorisationServiceStub(channel)
    for _ in range(3):
        stub.Authorise(ALLOW, timeout=5)
    with pytest.raises(grpc.RpcError):
        stub.Authorise(pb.AuthoriseRequest(council="atlantis", decision="x"), timeout=5)
    items = [pb.BatchItem(correlation_id="a", request=ALLOW)]
    answers = list(stub.AuthoriseStream(iter([pb.AuthoriseBatchRequest(items=items)]), timeout=5))
    assert len(answers) == 1
    text = generate_latest(metrics.registry).decode()
    unary = {
        "grpc_type": "unary",
        "grpc_service": "remit.v1.AuthorisationService",
        "grpc_method": "Authorise",
    }
    assert _sample(text, "grpc_server_started_total", **unary) == 4
    assert _sample(text, "grpc_server_handled_total", **unary, grpc_code="OK") == 3
    assert _sample(text, "grpc_server_handled_total", **unary, grpc_code="NOT_FOUND") == 1
    assert _sample(text, "grpc_server_handling_seconds_count", **unary) == 4
    assert 0 < _sample(text, "grpc_server_handling_seconds_sum", **unary) < 5
    stream = dict(unary, grpc_type="bidi_stream", grpc_method="AuthoriseStream")
    assert _sample(text, "grpc_server_started_total", **stream) == 1
    assert _sample(text, "grpc_server_handled_total", **stream, grpc_code="OK") == 1
    # remit's own names are still there
    method = "/remit.v1.AuthorisationService/Authorise"
    assert _sample(text, "remit_rpcs_total", method=method, code="OK") == 3
    # process_* from prometheus_client's ProcessCollector (Linux /proc)
    assert _sample(text, "process_resident_memory_bytes") > 10_000_000
    assert _sample(text, "process_start_time_seconds") > 1.6e9
    assert "process_cpu_seconds_total" in text and "process_open_fds" in text


def test_an_unknown_method_creates_no_label_values(served: tuple[grpc.Channel, Metrics]) -> None:
    channel, metrics = served
    call = channel.unary_unary("/remit.v1.AuthorisationService/NoSuchMethod")
    with pytest.raises(grpc.RpcError) as info:
        call(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    text = generate_latest(metrics.registry).decode()
    assert "NoSuchMethod" not in text
