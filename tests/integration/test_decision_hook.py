"""One decision hook: every answered decision, unary, batch item or stream item, is one
decision-log entry, one metric increment and one trace record; refused items are none.

Real parts: the server on port 0 (as `remit serve` assembles it), the Prometheus registry,
the OpenTelemetry SDK with an in-memory exporter, and the in-memory audit sink."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from remit import config as _config
from remit.audit.log import AuditLog, CallInfo, Pseudonymiser, build_entry, to_dict
from remit.audit.log import to_entry as parse_entry
from remit.distribution.holder import PolicyHolder
from remit.distribution.source import SourceStatus
from remit.model.policy import PolicySet
from remit.server import tracing as _tracing
from remit.server.convert import masked_fields
from remit.server.metrics import Metrics
from remit.server.serve import Deps, create_server
from remit.server.servicers import answer
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support.sinks import MemorySink

DECISION_SPAN = "remit.decision"
SERVICE = "remit.v1.AuthorisationService"


@dataclass
class Observed:
    stub: pb_grpc.AuthorisationServiceStub
    sink: MemorySink
    metrics: Metrics
    exporter: InMemorySpanExporter
    tracing: _tracing.Tracing

    def decisions(self) -> float:
        total = 0.0
        for family in self.metrics.registry.collect():
            if family.name == "remit_decisions":
                total += sum(s.value for s in family.samples if s.name == "remit_decisions_total")
        return total

    def latencies(self) -> float:
        value = self.metrics.registry.get_sample_value("remit_decision_latency_seconds_count")
        return value or 0.0

    def spans(self) -> list[Any]:
        self.tracing._provider.force_flush()
        return list(self.exporter.get_finished_spans())


@pytest.fixture(scope="module")
def observed(policies: PolicySet) -> Iterator[Observed]:
    exporter = InMemorySpanExporter()
    tracing = _tracing.setup(_config.load(environ={}), exporter=exporter)
    assert tracing is not None
    metrics = Metrics(lambda: SourceStatus(policies.version, "local"))
    sink = MemorySink()
    server, port = create_server(
        "127.0.0.1:0",
        Deps(
            PolicyHolder(policies),
            audit=AuditLog(sink, "strict", Pseudonymiser(b"k" * 32)),
            metrics=metrics,
            tracing=tracing,
        ),
    )
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield Observed(pb_grpc.AuthorisationServiceStub(ch), sink, metrics, exporter, tracing)
    finally:
        server.stop(grace=None)
        tracing.shutdown()


def _s17(amount: int, rid: str) -> pb.AuthoriseRequest:
    return pb.AuthoriseRequest(
        council="torbay",
        decision="s17_payment",
        request_id=rid,
        case_reference="CASE-77",
        actor=pb.Actor(id="tm-hook-1", roles=["team_manager"]),
        context=pb.Context(amount_pence=amount, cumulative_amount_pence=amount),
    )


def _refused(rid: str) -> pb.AuthoriseRequest:
    return pb.AuthoriseRequest(
        council="torbay",
        decision="no_such_decision",
        request_id=rid,
        actor=pb.Actor(id="tm-hook-1", roles=["team_manager"]),
    )


class Delta:
    """What one call added to the log, the counter, the histogram and the spans."""

    def __init__(self, o: Observed) -> None:
        self._o = o
        self._lines = len(o.sink.lines)
        self._decisions = o.decisions()
        self._latencies = o.latencies()
        self._spans = len(o.spans())

    def close(self) -> tuple[list[dict[str, Any]], float, float, list[Any]]:
        o = self._o
        entries = o.sink.entries[self._lines :]
        return (
            entries,
            o.decisions() - self._decisions,
            o.latencies() - self._latencies,
            o.spans()[self._spans :],
        )


def _check(
    delta: Delta, method: str, answers: list[pb.AuthoriseResponse], correlation_ids: list[str]
) -> None:
    entries, counted, timed, spans = delta.close()
    # one entry per answered item, each that item's own decision
    assert [e["decision_id"] for e in entries] == [a.decision_id for a in answers]
    assert [e["correlation_id"] for e in entries] == correlation_ids
    assert [e["effect"] for e in entries] == [pb.Effect.Name(a.effect) for a in answers]
    assert all(e["case_ref_hmac"] and "CASE-77" not in str(e) for e in entries)
    # one increment of remit_decisions_total, and one latency observation, per answered item
    assert counted == len(answers) and timed == len(answers)
    # one decision span per answered item, each a child of the call's span
    calls = [sp for sp in spans if sp.name == f"{SERVICE}/{method}"]
    decided = [sp for sp in spans if sp.name == DECISION_SPAN]
    assert len(calls) == 1 and len(spans) == len(answers) + 1
    assert [sp.attributes["remit.effect"] for sp in decided] == [
        pb.Effect.Name(a.effect) for a in answers
    ]
    for sp in decided:
        assert sp.parent is not None and sp.parent.span_id == calls[0].context.span_id
        assert sp.attributes["remit.policy_version"] == answers[0].policy_version


def test_a_unary_call_is_one_entry_one_increment_one_span(observed: Observed) -> None:
    delta = Delta(observed)
    response = observed.stub.Authorise(_s17(150000, "u-1"), timeout=10)
    assert response.effect == pb.EFFECT_ALLOW
    _check(delta, "Authorise", [response], [""])


def test_a_refused_unary_call_is_not_logged_counted_or_traced_as_a_decision(
    observed: Observed,
) -> None:
    delta = Delta(observed)
    with pytest.raises(grpc.RpcError) as info:
        observed.stub.Authorise(_refused("u-2"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    _check(delta, "Authorise", [], [])


def test_a_3_item_batch_is_three_entries_increments_and_spans(observed: Observed) -> None:
    tag = uuid.uuid4().hex[:6]
    items = [
        pb.BatchItem(correlation_id=f"{tag}-a", request=_s17(150000, "b-1")),
        pb.BatchItem(correlation_id=f"{tag}-x", request=_refused("b-x")),  # its own error
        pb.BatchItem(correlation_id=f"{tag}-b", request=_s17(300000, "b-2")),
        pb.BatchItem(correlation_id=f"{tag}-c", request=_s17(100, "b-3")),
    ]
    delta = Delta(observed)
    results = observed.stub.AuthoriseBatch(pb.AuthoriseBatchRequest(items=items), timeout=10)
    answered = [r for r in results.results if r.HasField("response")]
    assert [r.correlation_id for r in answered] == [f"{tag}-a", f"{tag}-b", f"{tag}-c"]
    effects = [r.response.effect for r in answered]
    assert effects == [pb.EFFECT_ALLOW, pb.EFFECT_DENY, pb.EFFECT_ALLOW]
    _check(
        delta,
        "AuthoriseBatch",
        [r.response for r in answered],
        [r.correlation_id for r in answered],
    )


def test_a_2_message_stream_is_one_entry_increment_and_span_per_item(
    observed: Observed,
) -> None:
    messages = [
        pb.AuthoriseStreamRequest(
            items=[
                pb.BatchItem(correlation_id="s-1", request=_s17(150000, "s-1")),
                pb.BatchItem(correlation_id="s-x", request=_refused("s-x")),
            ]
        ),
        pb.AuthoriseStreamRequest(
            items=[pb.BatchItem(correlation_id="s-2", request=_s17(300000, "s-2"))]
        ),
    ]
    delta = Delta(observed)
    replies = list(observed.stub.AuthoriseStream(iter(messages), timeout=10))
    assert len(replies) == 2
    answered = [r for reply in replies for r in reply.results if r.HasField("response")]
    assert [r.correlation_id for r in answered] == ["s-1", "s-2"]
    _check(
        delta,
        "AuthoriseStream",
        [r.response for r in answered],
        [r.correlation_id for r in answered],
    )


def test_the_entry_is_built_from_the_outcome_and_the_call(policies: PolicySet) -> None:
    """The decision-log entry comes from the use case's outcome and the call info alone,
    with the fields, masking and JSON form it always had: here a deny over the Team
    Manager's ceiling allowed by a deviation the Assistant Director agreed (Torbay 1.1)."""
    request = _s17(300000, "e-1")
    request.deviation.CopyFrom(
        pb.Deviation(agreed_by_id="ad-7", agreed_by_role="assistant_director", reason_code="urgent")
    )
    outcome, response = answer(policies, request)
    assert response.deviation and response.effect == pb.EFFECT_ALLOW
    call = CallInfo("cn:test", 0.000123, "corr-1", request.case_reference, masked_fields(request))
    entry = build_entry(outcome, call, Pseudonymiser(b"k" * 32))
    assert to_dict(parse_entry(entry)) == entry  # exactly the proto3 JSON of the message
    assert {k: entry[k] for k in entry if k not in ("time", "case_ref_hmac", "decision_time")} == {
        "seq": "0",
        "prev_hash": "",
        "hash": "",
        "decision_id": response.decision_id,
        "caller": "cn:test",
        "council": "torbay",
        "decision": "s17_payment",
        "actor_id": "tm-hook-1",
        "actor_roles": ["team_manager"],
        "matched_role": "team_manager",
        "effect": "EFFECT_ALLOW",
        "rule_id": "deviation",
        "section": response.citation.section,
        "obligations": ["OBLIGATION_KIND_RECORD"],
        "policy_version": policies.version,
        "latency_us": 123,
        "masked_fields": [
            "case_reference",
            "context.amount_pence",
            "context.cumulative_amount_pence",
            "deviation.reason_code",
        ],
        "deviation": True,
        "deviation_agreed_by": "ad-7",
        "review": True,
        "request_id": "e-1",
        "correlation_id": "corr-1",
        "time_claimed": False,
        "writer": "",  # set when the entry is chained: the writing process's id
    }
    assert entry["case_ref_hmac"] == Pseudonymiser(b"k" * 32)("torbay", "CASE-77")


def test_a_claimed_decision_time_is_bounded_logged_beside_the_server_time_and_flagged(
    policies: PolicySet,
) -> None:
    """Retrospective decisions are real (Torbay 6.10, 11.4): a claimed decision_time within
    the window is decided at, kept beside the server's time and flagged for review; one
    further back, or ahead of the clock, is refused naming the field."""
    from datetime import UTC, datetime, timedelta

    from google.protobuf.timestamp_pb2 import Timestamp
    from remit.model.errors import InvalidArgument
    from remit.server.convert import TimeWindow

    def at(when: datetime) -> pb.AuthoriseRequest:
        request = _s17(100000, "t-1")
        stamp = Timestamp()
        stamp.FromDatetime(when)
        request.decision_time.CopyFrom(stamp)
        return request

    clock = datetime.now(UTC)
    window = TimeWindow(past=timedelta(days=31))
    outcome, _ = answer(policies, at(clock - timedelta(days=2)), window)
    entry = build_entry(outcome, CallInfo("cn:test"), Pseudonymiser(b"k" * 32))
    assert entry["time_claimed"] is True and entry["review"] is True
    assert entry["decision_time"].startswith((clock - timedelta(days=2)).date().isoformat())
    assert entry["time"].startswith(clock.date().isoformat())
    now_outcome, _ = answer(policies, _s17(100000, "t-2"), window)
    plain = build_entry(now_outcome, CallInfo("cn:test"), Pseudonymiser(b"k" * 32))
    assert plain["time_claimed"] is False and plain["review"] is False
    for when in (clock - timedelta(days=32), clock + timedelta(minutes=10)):
        with pytest.raises(InvalidArgument) as info:
            answer(policies, at(when), window)
        assert info.value.field == "decision_time"
