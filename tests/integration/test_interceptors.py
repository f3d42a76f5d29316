"""The interceptor chain: one module each, the order declared once, and the logging
interceptor naming the status code a call really ends with."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest
from remit.server.access import AccessPolicy
from remit.server.interceptors import ORDER, chain
from remit.server.interceptors.metrics import MetricsInterceptor
from remit.server.interceptors.recovery import RecoveryInterceptor
from remit.server.interceptors.rpclog import LoggingInterceptor
from remit.server.interceptors.tracing import TracingInterceptor
from remit.server.interceptors.validation import ValidationInterceptor
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.conftest import ROOT

AUTHORISE = "/remit.v1.AuthorisationService/Authorise"


def test_the_readme_quotes_the_declared_order() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8").replace("\n", " ")
    assert f"Interceptors run in this order: {' → '.join(ORDER)} " in readme


def test_chain_follows_the_declared_order(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from remit import config as _config
    from remit.distribution.source import SourceStatus
    from remit.server import tracing as _tracing
    from remit.server.metrics import Metrics

    tracing = _tracing.setup(_config.load(environ={}), exporter=InMemorySpanExporter())
    assert tracing is not None
    metrics = Metrics(lambda: SourceStatus("v", "local"))
    kinds = {
        "tracing": TracingInterceptor,
        "metrics": MetricsInterceptor,
        "recovery": RecoveryInterceptor,
        "validation": ValidationInterceptor,
        "logging": LoggingInterceptor,
    }
    access = AccessPolicy.open_access()
    full = chain(access, metrics, tracing)
    assert [type(i) for i in full] == [kinds[name] for name in ORDER]
    bare = chain(access)  # tracing and metrics only when configured
    assert [type(i) for i in bare] == [kinds[n] for n in ORDER if n not in ("tracing", "metrics")]
    tracing.shutdown()


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (
            pb.AuthoriseRequest(
                council="torbay", decision="apply_epo", actor=pb.Actor(id="a-1", roles=["Bad Role"])
            ),
            "INVALID_ARGUMENT",
        ),
        (
            pb.AuthoriseRequest(
                council="atlantis", decision="apply_epo", actor=pb.Actor(id="a-1", roles=["x"])
            ),
            "NOT_FOUND",
        ),
    ],
    ids=["invalid_argument", "not_found"],
)
def test_a_client_error_is_logged_with_its_status_code(
    channel: grpc.Channel,
    caplog: pytest.LogCaptureFixture,
    request_: pb.AuthoriseRequest,
    code: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="remit.server")
    with pytest.raises(grpc.RpcError) as info:
        pb_grpc.AuthorisationServiceStub(channel).Authorise(request_, timeout=5)
    assert info.value.code().name == code
    lines = [r for r in caplog.records if r.getMessage().startswith(f"rpc {AUTHORISE} ")]
    assert [r.getMessage().split()[2] for r in lines] == [code]
    assert lines[0].levelno == logging.INFO
    assert "UNKNOWN" not in caplog.text


def test_an_answered_call_and_a_stream_are_logged_ok_at_debug(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="remit.server")
    stub = pb_grpc.AuthorisationServiceStub(channel)
    request = pb.AuthoriseRequest(
        council="torbay", decision="apply_epo", actor=pb.Actor(id="a-1", roles=["team_manager"])
    )
    stub.Authorise(request, timeout=5)
    replies = stub.AuthoriseStream(
        iter([pb.AuthoriseStreamRequest(items=[pb.BatchItem(request=request)])]), timeout=5
    )
    assert len(list(replies)) == 1
    logged = {
        r.getMessage().split()[1]: (r.getMessage().split()[2], r.levelno)
        for r in caplog.records
        if r.getMessage().startswith("rpc ")
    }
    assert logged[AUTHORISE] == ("OK", logging.DEBUG)
    assert logged["/remit.v1.AuthorisationService/AuthoriseStream"] == ("OK", logging.DEBUG)
