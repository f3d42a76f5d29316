"""The gRPC API over loopback against a real server (port 0)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support.grpc_errors import bad_request
from tests.support.sinks import MemorySink


def _authorise(channel: grpc.Channel, **kwargs: object) -> pb.AuthoriseResponse:
    stub = pb_grpc.AuthorisationServiceStub(channel)
    return stub.Authorise(pb.AuthoriseRequest(**kwargs), timeout=5)  # type: ignore[arg-type]


def _tm() -> pb.Actor:
    return pb.Actor(id="tm-0001", roles=["team_manager"])


def test_epo_by_team_manager_is_denied_naming_head_of_service(channel: grpc.Channel) -> None:
    resp = _authorise(
        channel, council="torbay", decision="apply_epo", actor=_tm(), request_id="r-1"
    )
    assert resp.effect == pb.EFFECT_DENY
    assert [a.role for a in resp.authorisers] == ["head_of_service"]
    assert "Head of Service" in resp.reason
    assert resp.request_id == "r-1"
    assert len(resp.policy_version) == 16
    assert len(resp.decision_id) == 32


def test_epo_by_team_manager_in_exceptional_circumstances_is_allowed_citing_6_7(
    channel: grpc.Channel,
) -> None:
    resp = _authorise(
        channel,
        council="torbay",
        decision="apply_epo",
        actor=_tm(),
        context=pb.Context(exceptional_circumstances=True),
    )
    assert resp.effect == pb.EFFECT_ALLOW
    assert resp.rule_id == "6.7-tm-exceptional"
    assert resp.citation.section == "6.7"
    assert "delay would place the child at risk" in resp.citation.quote
    assert resp.citation.document.startswith("Children's Social Care")


def test_a_flag_sent_false_is_reported_false_and_an_unset_one_not_recorded(
    channel: grpc.Channel,
) -> None:
    sent = _authorise(
        channel,
        council="torbay",
        decision="apply_epo",
        actor=_tm(),
        context=pb.Context(exceptional_circumstances=False),
    )
    assert sent.effect == pb.EFFECT_DENY
    assert "recorded as false" in sent.reason
    assert "exceptional_circumstances" not in sent.missing_facts
    unset = _authorise(channel, council="torbay", decision="apply_epo", actor=_tm())
    assert "not recorded in the request" in unset.reason
    assert "exceptional_circumstances" in unset.missing_facts


def test_every_well_known_fact_has_its_context_field_and_back() -> None:
    from remit.model.facts import ACTOR_FACTS, WELL_KNOWN

    fields = set(pb.Context.DESCRIPTOR.fields_by_name) - {"service_area", "grant", "facts"}
    facts = {f for f, spec in WELL_KNOWN.items() if not spec.derived and f not in ACTOR_FACTS}
    assert fields == facts
    for name in fields:  # numbers and flags carry presence: unset is not the same as 0 / false
        fd = pb.Context.DESCRIPTOR.fields_by_name[name]
        if fd.type in (fd.TYPE_BOOL, fd.TYPE_INT32, fd.TYPE_INT64):
            assert fd.has_presence, name


def test_s17_2400_by_team_manager_is_denied_with_authorisers(channel: grpc.Channel) -> None:
    resp = _authorise(
        channel,
        council="torbay",
        decision="s17_payment",
        actor=_tm(),
        context=pb.Context(amount_pence=240000, cumulative_amount_pence=240000),
    )
    assert resp.effect == pb.EFFECT_DENY
    assert [a.role for a in resp.authorisers][:1] == ["head_of_service"]
    assert (
        "£2,400.00 (the amount) is above the Team Manager ceiling of £2,000.00 (Torbay 2.4)"
        in list(resp.failed_conditions)
    )


def test_s17_1500_by_team_manager_is_allowed(channel: grpc.Channel) -> None:
    resp = _authorise(
        channel,
        council="torbay",
        decision="s17_payment",
        actor=_tm(),
        context=pb.Context(amount_pence=150000, cumulative_amount_pence=150000),
    )
    assert resp.effect == pb.EFFECT_ALLOW
    assert resp.rule_id == "2.4-tm"


def test_obligations_are_returned(channel: grpc.Channel) -> None:
    resp = _authorise(
        channel,
        council="torbay",
        decision="s17_payment",
        actor=pb.Actor(id="hos-1", roles=["head_of_service"]),
        context=pb.Context(amount_pence=240000, cumulative_amount_pence=240000),
    )
    assert resp.effect == pb.EFFECT_ALLOW
    assert [(o.kind, o.party) for o in resp.obligations] == [
        (pb.OBLIGATION_KIND_CONSULT, "finance officer")
    ]


def test_write_off_above_every_ceiling_names_who_decides_outside(channel: grpc.Channel) -> None:
    resp = _authorise(
        channel,
        council="torbay",
        decision="write_off",
        actor=pb.Actor(id="dcs-1", roles=["director"]),
        context=pb.Context(amount_pence=600000, concurring_roles=["head_of_finance"]),
    )
    assert resp.effect == pb.EFFECT_DENY
    assert resp.rule_id == "2.5-executive-member"
    assert "Executive Member" in resp.decided_outside


@pytest.mark.parametrize(
    ("kwargs", "code", "field"),
    [
        (
            {"council": "torbay", "decision": "apply_for_a_unicorn"},
            grpc.StatusCode.NOT_FOUND,
            "decision",
        ),
        ({"council": "atlantis", "decision": "apply_epo"}, grpc.StatusCode.NOT_FOUND, "council"),
        ({"council": "", "decision": "apply_epo"}, grpc.StatusCode.INVALID_ARGUMENT, "council"),
        (
            {
                "council": "torbay",
                "decision": "apply_epo",
                "actor": pb.Actor(id="x", roles=["wizard"]),
            },
            grpc.StatusCode.NOT_FOUND,
            "actor.roles[0]",
        ),
        (
            {"council": "torbay", "decision": "apply_epo", "actor": pb.Actor(id="x", roles=[])},
            grpc.StatusCode.INVALID_ARGUMENT,
            "actor.roles",
        ),
        (
            {
                "council": "torbay",
                "decision": "apply_epo",
                "actor": pb.Actor(id="", roles=["team_manager"]),
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "actor.id",
        ),
        (
            {
                "council": "torbay",
                "decision": "s17_payment",
                "actor": pb.Actor(id="x", roles=["team_manager"]),
                "context": pb.Context(amount_pence=1000),
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "context.cumulative_amount_pence",
        ),
        (
            {
                "council": "torbay",
                "decision": "apply_epo",
                "actor": pb.Actor(id="x", roles=["team_manager"]),
                "context": pb.Context(facts={"moon_phase": pb.FactValue(enum_value="full")}),
            },
            grpc.StatusCode.NOT_FOUND,
            "context.facts[moon_phase]",
        ),
        (
            {
                "council": "torbay",
                "decision": "apply_epo",
                "actor": pb.Actor(id="x", roles=["team_manager"]),
                "context": pb.Context(
                    facts={"strategy_discussion_held": pb.FactValue(int_value=1)}
                ),
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "context.facts[strategy_discussion_held]",
        ),
        (
            {
                "council": "torbay",
                "decision": "apply_epo",
                "actor": pb.Actor(id="x", roles=["team_manager"]),
                "context": pb.Context(absent_roles=["archmage"]),
            },
            grpc.StatusCode.NOT_FOUND,
            "context.absent_roles",
        ),
        (
            {
                "council": "torbay",
                "decision": "apply_epo",
                "actor": pb.Actor(id="x", roles=["team_manager"]),
                "context": pb.Context(legal_status="Z9"),
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "context.legal_status",
        ),
        (
            {
                "council": "torbay",
                "decision": "apply_epo",
                "actor": pb.Actor(id="x" * 300, roles=["team_manager"]),
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "actor.id",
        ),
        (
            {
                "council": "torbay",
                "decision": "apply_epo",
                "actor": pb.Actor(id="x", roles=["team_manager"]),
                "context": pb.Context(service_area="atlantis"),
            },
            grpc.StatusCode.NOT_FOUND,
            "context.service_area",
        ),
        *(
            (
                {
                    "council": "gloucestershire",
                    "decision": "chair_strategy_meeting",
                    "decision_time": Timestamp(seconds=seconds, nanos=nanos),
                },
                grpc.StatusCode.INVALID_ARGUMENT,
                "decision_time",
            )
            for seconds, nanos in (
                (-62135596800, 0),  # 0001-01-01: the edge of the Timestamp range
                (253402300799, 0),  # 9999-12-31T23:59:59
                (10**15, 0),  # past every calendar
                (0, -1),
                (0, 10**9),
            )
        ),
        *(
            (
                {
                    "council": "gloucestershire",
                    "decision": "chair_strategy_meeting",
                    "context": pb.Context(
                        grant=pb.Grant(decision="chair_strategy_meeting", expires_on=text)
                    ),
                },
                grpc.StatusCode.INVALID_ARGUMENT,
                "context.grant.expires_on",
            )
            for text in ("20991231", "2099-W52-4", "2099-12-31T00:00", "")
        ),
    ],
)
def test_bad_requests_name_the_field_and_never_allow(
    channel: grpc.Channel, kwargs: dict[str, object], code: grpc.StatusCode, field: str
) -> None:
    kwargs.setdefault("actor", _tm())
    with pytest.raises(grpc.RpcError) as info:
        _authorise(channel, **kwargs)
    err = info.value
    assert err.code() == code, err.details()
    violations = bad_request(err).field_violations
    assert [v.field for v in violations] == [field]
    assert field in err.details()


def test_health_reports_serving_per_service(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "remit.v1.AuthorisationService", "remit.v1.CatalogueService"):
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_services(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {
        "remit.v1.AuthorisationService",
        "remit.v1.CatalogueService",
        "grpc.health.v1.Health",
    } <= names


def test_catalogue(channel: grpc.Channel) -> None:
    stub = pb_grpc.CatalogueServiceStub(channel)
    councils = stub.ListCouncils(pb.ListCouncilsRequest(), timeout=5)
    assert "torbay" in [c.council for c in councils.councils]
    scheme = stub.GetScheme(pb.GetSchemeRequest(council="torbay"), timeout=5)
    decisions = {d.id: d for d in scheme.decisions}
    assert decisions["s17_payment"].section == "2.4"
    assert list(decisions["s17_payment"].required_facts) == [
        "amount_pence",
        "cumulative_amount_pence",
    ]
    roles = {r.id: r for r in scheme.roles}
    assert "head_of_service" in roles["team_manager"].inherited_by
    assert roles["independent_reviewing_officer"].independent
    assert (
        not roles["independent_reviewing_officer"].inherited_by
        or "team_manager" not in roles["independent_reviewing_officer"].inherited_by
    )
    facts = {f.id: f for f in scheme.facts}
    assert (
        facts["strategy_discussion_held"].type == "bool"
        and not facts["strategy_discussion_held"].well_known
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.GetScheme(pb.GetSchemeRequest(council="atlantis"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_every_answer_is_audited_without_context(
    channel: grpc.Channel, audit_sink: MemorySink
) -> None:
    resp = _authorise(
        channel,
        council="torbay",
        decision="s17_payment",
        actor=_tm(),
        request_id="audit-1",
        context=pb.Context(amount_pence=150000, cumulative_amount_pence=150000),
    )
    entries = [e for e in audit_sink.entries if e["decision_id"] == resp.decision_id]
    assert len(entries) == 1
    e = entries[0]
    assert (
        e["effect"] == "EFFECT_ALLOW" and e["rule_id"] == "2.4-tm" and e["request_id"] == "audit-1"
    )
    assert "150000" not in repr(e)
    assert e["masked_fields"] == ["context.amount_pence", "context.cumulative_amount_pence"]
