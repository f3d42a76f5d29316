"""AuthoriseBatch, AuthoriseStream, ListPermittedDecisions and ListAuthorisers over a real
gRPC server on a loopback port: mixed valid, invalid and unknown items, limits, ordering,
per-item audit."""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import code_pb2
from remit.audit.log import AuditLog, Pseudonymiser
from remit.distribution.holder import PolicyHolder
from remit.model.policy import PolicySet
from remit.server.serve import Deps, create_server
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support.sinks import MemorySink

TM = pb.Actor(id="tm-0001", roles=["team_manager"])


def _stub(channel: grpc.Channel) -> pb_grpc.AuthorisationServiceStub:
    return pb_grpc.AuthorisationServiceStub(channel)


def _s17(amount: int, *, rid: str = "", actor: pb.Actor = TM) -> pb.AuthoriseRequest:
    return pb.AuthoriseRequest(
        council="torbay",
        decision="s17_payment",
        actor=actor,
        context=pb.Context(amount_pence=amount, cumulative_amount_pence=amount),
        request_id=rid,
    )


def _mixed(tag: str) -> list[pb.BatchItem]:
    """Valid allow, valid deny, unknown decision, unknown council, missing fact, unknown
    role, oversized field, valid allow again — each with its own correlation id."""
    return [
        pb.BatchItem(correlation_id="ok-allow", request=_s17(150000, rid=f"{tag}-1")),
        pb.BatchItem(correlation_id="ok-deny", request=_s17(240000, rid=f"{tag}-2")),
        pb.BatchItem(
            correlation_id="unknown-decision",
            request=pb.AuthoriseRequest(council="torbay", decision="no_such_thing", actor=TM),
        ),
        pb.BatchItem(
            correlation_id="unknown-council",
            request=pb.AuthoriseRequest(council="atlantis", decision="s17_payment", actor=TM),
        ),
        pb.BatchItem(
            correlation_id="missing-fact",
            request=pb.AuthoriseRequest(council="torbay", decision="s17_payment", actor=TM),
        ),
        pb.BatchItem(
            correlation_id="unknown-role",
            request=pb.AuthoriseRequest(
                council="torbay",
                decision="apply_epo",
                actor=pb.Actor(id="x-1", roles=["archbishop"]),
            ),
        ),
        pb.BatchItem(
            correlation_id="oversized",
            request=pb.AuthoriseRequest(council="torbay", decision="x" * 300, actor=TM),
        ),
        pb.BatchItem(correlation_id="ok-allow-2", request=_s17(100, rid=f"{tag}-8")),
    ]


def _check_mixed(results: list[pb.BatchResult]) -> None:
    got = {r.correlation_id: r for r in results}
    assert [r.correlation_id for r in results] == [
        "ok-allow",
        "ok-deny",
        "unknown-decision",
        "unknown-council",
        "missing-fact",
        "unknown-role",
        "oversized",
        "ok-allow-2",
    ]
    assert got["ok-allow"].response.effect == pb.EFFECT_ALLOW
    assert got["ok-allow"].response.rule_id == "2.4-tm"
    assert got["ok-deny"].response.effect == pb.EFFECT_DENY
    assert "above the Team Manager ceiling of £2,000.00 (Torbay 2.4)" in "".join(
        got["ok-deny"].response.failed_conditions
    )
    assert got["ok-allow-2"].response.effect == pb.EFFECT_ALLOW
    expected_errors = {
        "unknown-decision": (code_pb2.NOT_FOUND, "decision"),
        "unknown-council": (code_pb2.NOT_FOUND, "council"),
        "missing-fact": (code_pb2.INVALID_ARGUMENT, "context.amount_pence"),
        "unknown-role": (code_pb2.NOT_FOUND, "actor.roles[0]"),
        "oversized": (code_pb2.INVALID_ARGUMENT, "decision"),
    }
    for cid, (code, field) in expected_errors.items():
        result = got[cid]
        assert result.WhichOneof("result") == "error", cid
        assert (result.error.code, result.error.field) == (code, field), cid
        assert result.error.message


def test_batch_mixing_valid_invalid_and_unknown_items(channel: grpc.Channel) -> None:
    resp = _stub(channel).AuthoriseBatch(
        pb.AuthoriseBatchRequest(items=_mixed(uuid.uuid4().hex[:8])), timeout=10
    )
    _check_mixed(list(resp.results))


def test_batch_items_are_audited_one_entry_each(
    channel: grpc.Channel, audit_sink: MemorySink
) -> None:
    tag = uuid.uuid4().hex[:8]
    resp = _stub(channel).AuthoriseBatch(pb.AuthoriseBatchRequest(items=_mixed(tag)), timeout=10)
    entries = [e for e in audit_sink.entries if e["request_id"].startswith(tag)]
    assert sorted(e["request_id"] for e in entries) == [f"{tag}-1", f"{tag}-2", f"{tag}-8"]
    by_id = {r.response.decision_id: r for r in resp.results if r.HasField("response")}
    for entry in entries:
        result = by_id[entry["decision_id"]]  # each entry is that item's own decision
        assert entry["effect"] == pb.Effect.Name(result.response.effect)
        assert entry["decision"] == "s17_payment"
        assert "amount_pence" not in entry  # never the context facts


def test_empty_batch_is_an_empty_answer(channel: grpc.Channel) -> None:
    resp = _stub(channel).AuthoriseBatch(pb.AuthoriseBatchRequest(), timeout=5)
    assert list(resp.results) == []


def test_batch_over_the_default_limit_is_refused_naming_items(channel: grpc.Channel) -> None:
    items = [pb.BatchItem(correlation_id=str(i), request=_s17(100)) for i in range(101)]
    with pytest.raises(grpc.RpcError) as err:
        _stub(channel).AuthoriseBatch(pb.AuthoriseBatchRequest(items=items), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "items" in (err.value.details() or "")
    ok = _stub(channel).AuthoriseBatch(pb.AuthoriseBatchRequest(items=items[:100]), timeout=10)
    assert len(ok.results) == 100
    assert all(r.response.effect == pb.EFFECT_ALLOW for r in ok.results)


@pytest.fixture(scope="module")
def small_limit_channel(policies: PolicySet) -> Iterator[grpc.Channel]:
    server, port = create_server(
        "127.0.0.1:0",
        Deps(
            PolicyHolder(policies),
            audit=AuditLog(MemorySink(), "strict", Pseudonymiser(b"k" * 32)),
            batch_limit=3,
        ),
    )
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    server.stop(grace=None)


def test_batch_limit_is_configurable(small_limit_channel: grpc.Channel) -> None:
    stub = _stub(small_limit_channel)
    items = [pb.BatchItem(correlation_id=str(i), request=_s17(100)) for i in range(4)]
    with pytest.raises(grpc.RpcError) as err:
        stub.AuthoriseBatch(pb.AuthoriseBatchRequest(items=items), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(stub.AuthoriseBatch(pb.AuthoriseBatchRequest(items=items[:3])).results) == 3


def test_stream_answers_each_message_in_order(
    channel: grpc.Channel, audit_sink: MemorySink
) -> None:
    tag = uuid.uuid4().hex[:8]
    outbox: queue.Queue[pb.AuthoriseStreamRequest | None] = queue.Queue()

    def requests() -> Iterator[pb.AuthoriseStreamRequest]:
        while (message := outbox.get()) is not None:
            yield message

    replies = _stub(channel).AuthoriseStream(requests(), timeout=10)
    # truly bidirectional: each answer arrives before the next message is sent
    outbox.put(pb.AuthoriseStreamRequest(items=_mixed(tag)))
    first = next(replies)
    _check_mixed(list(first.results))
    outbox.put(
        pb.AuthoriseStreamRequest(
            items=[
                pb.BatchItem(correlation_id="z", request=_s17(300000, rid=f"{tag}-z")),
                pb.BatchItem(correlation_id="y", request=_s17(200000, rid=f"{tag}-y")),
            ]
        )
    )
    second = next(replies)
    assert [(r.correlation_id, r.response.effect) for r in second.results] == [
        ("z", pb.EFFECT_DENY),
        ("y", pb.EFFECT_ALLOW),
    ]
    outbox.put(pb.AuthoriseStreamRequest())
    assert list(next(replies).results) == []
    outbox.put(None)
    assert list(replies) == []
    audited = sorted(e["request_id"] for e in audit_sink.entries if e["request_id"].startswith(tag))
    assert audited == sorted([f"{tag}-1", f"{tag}-2", f"{tag}-8", f"{tag}-z", f"{tag}-y"])


def test_stream_message_over_the_limit_errors_each_item_and_goes_on(
    small_limit_channel: grpc.Channel,
) -> None:
    big = pb.AuthoriseStreamRequest(
        items=[pb.BatchItem(correlation_id=f"b{i}", request=_s17(100)) for i in range(4)]
    )
    small = pb.AuthoriseStreamRequest(items=[pb.BatchItem(correlation_id="s", request=_s17(100))])
    replies = list(_stub(small_limit_channel).AuthoriseStream(iter([big, small]), timeout=10))
    assert len(replies) == 2
    assert [r.correlation_id for r in replies[0].results] == ["b0", "b1", "b2", "b3"]
    assert all(
        r.error.code == code_pb2.INVALID_ARGUMENT and r.error.field == "items"
        for r in replies[0].results
    )
    assert replies[1].results[0].response.effect == pb.EFFECT_ALLOW


# -- ListPermittedDecisions ---------------------------------------------------------------


def _permitted(
    channel: grpc.Channel, council: str, actor: pb.Actor, context: pb.Context | None = None
) -> dict[str, pb.PermittedDecision]:
    resp = _stub(channel).ListPermittedDecisions(
        pb.ListPermittedDecisionsRequest(council=council, actor=actor, context=context),
        timeout=10,
    )
    assert len(resp.policy_version) == 16
    return {d.decision: d for d in resp.decisions}


def test_permitted_for_a_team_manager_with_a_settled_payment(channel: grpc.Channel) -> None:
    got = _permitted(
        channel, "torbay", TM, pb.Context(amount_pence=150000, cumulative_amount_pence=150000)
    )
    s17 = got["s17_payment"]
    assert (s17.rule_id, s17.section, s17.conditional, s17.summary) == ("2.4-tm", "2.4", False, "")
    epo = got["apply_epo"]
    assert epo.conditional
    assert epo.summary == "exceptional circumstances where delay would place the child at risk"
    missing = got["missing_over_24_hours"]
    assert missing.summary == "only with the agreement of the Head of Service"
    assert [o.party for o in missing.obligations] == ["Missing and CSE Coordinator"]
    # a Head of Service decision is not in a Team Manager's list
    assert "write_off" not in got


def test_permitted_with_an_amount_above_the_ceiling_drops_the_payment(
    channel: grpc.Channel,
) -> None:
    got = _permitted(
        channel, "torbay", TM, pb.Context(amount_pence=240000, cumulative_amount_pence=240000)
    )
    assert "s17_payment" not in got
    open_amount = _permitted(channel, "torbay", TM)
    assert open_amount["s17_payment"].conditional
    assert "up to £2,000.00" in open_amount["s17_payment"].summary


def test_permitted_names_an_absence_deputy_condition(channel: grpc.Channel) -> None:
    scheme = pb_grpc.CatalogueServiceStub(channel).GetScheme(
        pb.GetSchemeRequest(council="halton"), timeout=5
    )
    assert "icart_advanced_practitioner" in {r.id for r in scheme.roles}
    ap = pb.Actor(id="ap-1", roles=["icart_advanced_practitioner"], service_areas=["icart"])
    got = _permitted(channel, "halton", ap)
    assert "only while the Practice Lead is absent" in got["step_down_contact"].summary
    settled = _permitted(channel, "halton", ap, pb.Context(absent_roles=["practice_lead"]))
    assert not settled["step_down_contact"].conditional


@pytest.mark.parametrize(
    ("council", "actor", "field", "code"),
    [
        ("atlantis", TM, "council", grpc.StatusCode.NOT_FOUND),
        (
            "torbay",
            pb.Actor(id="a-1", roles=["archbishop"]),
            "actor.roles[0]",
            grpc.StatusCode.NOT_FOUND,
        ),
        ("torbay", pb.Actor(id="a-1"), "actor.roles", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_permitted_refuses_unknown_names(
    channel: grpc.Channel, council: str, actor: pb.Actor, field: str, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _stub(channel).ListPermittedDecisions(
            pb.ListPermittedDecisionsRequest(council=council, actor=actor), timeout=5
        )
    assert err.value.code() == code
    assert (err.value.details() or "").startswith(field)


# -- ListAuthorisers ----------------------------------------------------------------------


def _authorisers(
    channel: grpc.Channel, council: str, decision: str, context: pb.Context | None = None
) -> list[pb.Authoriser]:
    resp = _stub(channel).ListAuthorisers(
        pb.ListAuthorisersRequest(council=council, decision=decision, context=context), timeout=5
    )
    return list(resp.authorisers)


def test_authorisers_of_a_large_payment_lowest_first_with_panel(channel: grpc.Channel) -> None:
    got = _authorisers(
        channel,
        "torbay",
        "s17_payment",
        pb.Context(amount_pence=240000, cumulative_amount_pence=240000),
    )
    assert [(a.role, a.rule_id, a.section) for a in got] == [
        ("head_of_service", "2.4-hos", "2.4"),
        ("resource_panel", "2.4-panel", "2.4"),
    ]
    small = _authorisers(
        channel, "torbay", "s17_payment", pb.Context(amount_pence=100, cumulative_amount_pence=100)
    )
    assert [a.role for a in small] == ["team_manager"]


def test_authorisers_of_an_epo_include_the_exception(channel: grpc.Channel) -> None:
    got = _authorisers(channel, "torbay", "apply_epo")
    assert [(a.role, a.rule_id) for a in got] == [
        ("team_manager", "6.7-tm-exceptional"),
        ("head_of_service", "6.7-hos"),
    ]
    assert (
        got[0].conditions == "exceptional circumstances where delay would place the child at risk"
    )


def test_authorisers_include_the_absence_deputy(channel: grpc.Channel) -> None:
    got = _authorisers(channel, "halton", "step_down_contact")
    assert [(a.role, a.rule_id) for a in got] == [
        ("icart_advanced_practitioner", "1.1-ap-absence"),  # lowest post first
        ("practice_lead", "1.1-pl"),
    ]
    assert got[0].conditions == "only while the Practice Lead is absent"
    # once the absence is settled either way, the deputy is in or out
    absent = _authorisers(
        channel, "halton", "step_down_contact", pb.Context(absent_roles=["practice_lead"])
    )
    assert "icart_advanced_practitioner" in [a.role for a in absent]
    present = _authorisers(
        channel, "halton", "step_down_contact", pb.Context(absent_roles=["director"])
    )
    assert [a.role for a in present] == ["practice_lead"]


@pytest.mark.parametrize(
    ("council", "decision", "field", "code"),
    [
        ("atlantis", "s17_payment", "council", grpc.StatusCode.NOT_FOUND),
        ("torbay", "no_such_decision", "decision", grpc.StatusCode.NOT_FOUND),
        ("torbay", "", "decision", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_authorisers_refuse_unknown_names(
    channel: grpc.Channel, council: str, decision: str, field: str, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _authorisers(channel, council, decision)
    assert err.value.code() == code
    assert (err.value.details() or "").startswith(field)


def test_authorisers_refuse_an_unknown_fact(channel: grpc.Channel) -> None:
    ctx = pb.Context(facts={"moon_phase": pb.FactValue(bool_value=True)})
    with pytest.raises(grpc.RpcError) as err:
        _authorisers(channel, "torbay", "s17_payment", ctx)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "context.facts[moon_phase]" in (err.value.details() or "")
