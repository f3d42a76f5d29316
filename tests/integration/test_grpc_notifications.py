"""Notifications, obligations with due times, implied notifications and missing facts, over a
real gRPC server on a loopback port."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import timestamp_pb2
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

TM = pb.Actor(id="tm-0001", roles=["team_manager"])


def _ts(*args: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime(*args, tzinfo=UTC))
    return stamp


def _due(msg: pb.Notification | pb.Obligation) -> datetime | None:
    return msg.due.ToDatetime(tzinfo=UTC) if msg.HasField("due") else None


# Friday 22 August 2025 15:00 BST (14:00 UTC); Monday 25 August is a bank holiday.
FRIDAY = _ts(2025, 8, 22, 14, 0)


def _stub(channel: grpc.Channel) -> pb_grpc.AuthorisationServiceStub:
    return pb_grpc.AuthorisationServiceStub(channel)


def _notify(
    channel: grpc.Channel, event: str, context: pb.Context | None = None, **kw: object
) -> list[pb.Notification]:
    req = pb.NotificationsRequest(
        council=str(kw.get("council", "torbay")), event=event, context=context, decision_time=FRIDAY
    )
    resp = _stub(channel).Notifications(req, timeout=5)
    assert len(resp.policy_version) == 16
    return list(resp.notifications)


def test_missing_child_cp_or_lac_tells_dcs_and_ad_next_working_day(channel: grpc.Channel) -> None:
    (n,) = _notify(channel, "a1_missing_24h_cp_lac", pb.Context(looked_after=True))
    assert list(n.audience) == ["director", "assistant_director"]
    assert list(n.by) == ["head_of_service", "team_manager"]
    assert n.timescale == "next_working_day"
    # over the weekend and the Summer bank holiday: end of Tuesday 26 August (BST)
    assert _due(n) == datetime(2025, 8, 26, 22, 59, 59, tzinfo=UTC)
    assert n.section == "App1 DCS/AD"
    assert "Child missing after 24 hours" in n.quote
    assert "looked after" in n.conditions
    assert _notify(channel, "a1_missing_24h_cp_lac") == []  # neither CP nor looked after


def test_allegation_against_staff_within_one_working_day(channel: grpc.Channel) -> None:
    (n,) = _notify(channel, "a1_allegation_against_staff")
    assert list(n.by) == ["senior_iro", "head_of_service"]
    assert _due(n) == datetime(2025, 8, 26, 22, 59, 59, tzinfo=UTC)


def test_media_enquiry_same_day_and_expectation_without_due(channel: grpc.Channel) -> None:
    (media,) = _notify(channel, "a1_media_enquiry")
    assert _due(media) == datetime(2025, 8, 22, 22, 59, 59, tzinfo=UTC)
    (audits,) = _notify(channel, "a1x_supervision_file_audits")
    assert audits.timescale == "recurring" and _due(audits) is None
    assert list(audits.audience) == [] and list(audits.by) == ["head_of_service"]


@pytest.mark.parametrize(
    ("council", "event", "context", "code", "field"),
    [
        ("atlantis", "a1_child_death", None, grpc.StatusCode.NOT_FOUND, "council"),
        ("torbay", "a1_no_such_event", None, grpc.StatusCode.NOT_FOUND, "event"),
        ("torbay", "", None, grpc.StatusCode.INVALID_ARGUMENT, "event"),
        ("halton", "a1_child_death", None, grpc.StatusCode.NOT_FOUND, "event"),
        (
            "torbay",
            "a1_child_death",
            pb.Context(facts={"moon_phase": pb.FactValue(bool_value=True)}),
            grpc.StatusCode.NOT_FOUND,
            "context.facts[moon_phase]",
        ),
        (
            "torbay",
            "a1_trafficked_child",
            pb.Context(facts={"unaccompanied_asylum_seeking_child": pb.FactValue(int_value=1)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "context.facts[unaccompanied_asylum_seeking_child]",
        ),
        (
            "torbay",
            "a1_child_death",
            pb.Context(service_area="mash"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "context.service_area",
        ),
    ],
)
def test_notifications_refuse_bad_requests_naming_the_field(
    channel: grpc.Channel,
    council: str,
    event: str,
    context: pb.Context | None,
    code: grpc.StatusCode,
    field: str,
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _notify(channel, event, context, council=council)
    assert err.value.code() == code
    assert (err.value.details() or "").startswith(field)


def test_scheme_fact_condition_from_context_facts(channel: grpc.Channel) -> None:
    ctx = pb.Context(facts={"unaccompanied_asylum_seeking_child": pb.FactValue(bool_value=True)})
    (n,) = _notify(channel, "a1_trafficked_child", ctx)
    assert n.event == "a1_trafficked_child"


def test_catalogue_lists_every_appendix1_event(channel: grpc.Channel) -> None:
    scheme = pb_grpc.CatalogueServiceStub(channel).GetScheme(
        pb.GetSchemeRequest(council="torbay"), timeout=5
    )
    ids = {e.id for e in scheme.events}
    assert len({i for i in ids if i.startswith("a1")}) == 53  # Appendix 1
    assert {"a1_child_death", "a1_missing_24h_cp_lac", "a1s_press_contact"} <= ids
    assert "a2_ssf_cp_review_cease" in ids  # Appendix 2 (SSF): CP reviews to the HoS
    facts = {f.id for f in scheme.facts}
    assert "unaccompanied_asylum_seeking_child" in facts


def test_decision_implying_an_event_returns_the_notification(channel: grpc.Channel) -> None:
    resp = _stub(channel).Authorise(
        pb.AuthoriseRequest(
            council="torbay",
            decision="missing_over_24_hours",
            actor=TM,
            context=pb.Context(cp_plan=True, concurring_roles=["head_of_service"]),
            decision_time=FRIDAY,
        ),
        timeout=5,
    )
    assert resp.effect == pb.EFFECT_ALLOW
    assert [n.event for n in resp.notifications] == ["a1_missing_24h_cp_lac"]
    assert _due(resp.notifications[0]) == datetime(2025, 8, 26, 22, 59, 59, tzinfo=UTC)
    assert [o.party for o in resp.obligations] == ["Missing and CSE Coordinator"]


def test_obligation_due_times_from_the_decision_time(channel: grpc.Channel) -> None:
    resp = _stub(channel).Authorise(
        pb.AuthoriseRequest(
            council="torbay",
            decision="emergency_72_hour_secure_bed",
            actor=pb.Actor(id="ad-1", roles=["assistant_director"]),
            decision_time=FRIDAY,
        ),
        timeout=5,
    )
    assert resp.effect == pb.EFFECT_ALLOW
    (ratify,) = resp.obligations
    assert ratify.timescale == "within_72_hours"
    assert _due(ratify) == datetime(2025, 8, 25, 14, 0, tzinfo=UTC)
    week = _stub(channel).Authorise(
        pb.AuthoriseRequest(
            council="torbay", decision="court_directed_placement", actor=TM, decision_time=FRIDAY
        ),
        timeout=5,
    )
    dues = {o.timescale: _due(o) for o in week.obligations if o.timescale}
    assert dues == {
        "within_1_week": datetime(2025, 8, 29, 22, 59, 59, tzinfo=UTC),
        "retrospective": None,  # no computable due time
    }
    assert all(not o.HasField("due") for o in week.obligations if not o.timescale)


def test_denial_names_the_facts_the_rule_needed(channel: grpc.Channel) -> None:
    resp = _stub(channel).Authorise(
        pb.AuthoriseRequest(council="torbay", decision="apply_epo", actor=TM), timeout=5
    )
    assert resp.effect == pb.EFFECT_DENY
    assert list(resp.missing_facts) == ["exceptional_circumstances"]
    joint = _stub(channel).Authorise(
        pb.AuthoriseRequest(council="torbay", decision="missing_over_24_hours", actor=TM),
        timeout=5,
    )
    assert list(joint.missing_facts) == ["concurring_roles"]
    assert "only with the agreement of the Head of Service" in " ".join(joint.failed_conditions)
    # a fact the request carried is not "missing", even when it fails
    said_no = _stub(channel).Authorise(
        pb.AuthoriseRequest(
            council="torbay",
            decision="missing_over_24_hours",
            actor=TM,
            context=pb.Context(concurring_roles=["director"]),
        ),
        timeout=5,
    )
    assert said_no.effect == pb.EFFECT_DENY and list(said_no.missing_facts) == []
