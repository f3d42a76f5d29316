"""The other four schemes over a real gRPC server: the client's acceptance cases."""

from __future__ import annotations

import grpc
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc


def _authorise(channel: grpc.Channel, request: pb.AuthoriseRequest) -> pb.AuthoriseResponse:
    return pb_grpc.AuthorisationServiceStub(channel).Authorise(request, timeout=5)


def test_halton_epo_by_edt_social_worker_out_of_hours_with_the_tm_edt_absent(
    channel: grpc.Channel,
) -> None:
    request = pb.AuthoriseRequest(
        council="halton",
        decision="apply_epo",
        actor=pb.Actor(id="edt-1", roles=["edt_social_worker"], service_areas=["edt"]),
        # "Team Manager EDT or EDT Social Worker in their absence" (Halton 1.5): the TM EDT's
        context=pb.Context(
            out_of_hours=True, absent_roles=["team_manager_edt"], service_area="edt"
        ),
    )
    resp = _authorise(channel, request)
    assert resp.effect == pb.EFFECT_ALLOW, resp.reason
    assert any(
        o.kind == pb.OBLIGATION_KIND_CONSULT and "Senior Manager on call" in (o.party + o.text)
        for o in resp.obligations
    ), resp.obligations
    assert any(o.kind == pb.OBLIGATION_KIND_RECORD for o in resp.obligations)
    # in hours, or with the Team Manager EDT present: no
    request.context.out_of_hours = False
    assert _authorise(channel, request).effect == pb.EFFECT_DENY
    request.context.out_of_hours = True
    del request.context.absent_roles[:]
    assert _authorise(channel, request).effect == pb.EFFECT_DENY


def test_gloucestershire_ap_chairing_a_strategy_meeting_is_denied_citing_4_1(
    channel: grpc.Channel,
) -> None:
    resp = _authorise(
        channel,
        pb.AuthoriseRequest(
            council="gloucestershire",
            decision="chair_strategy_meeting",
            actor=pb.Actor(id="ap-1", roles=["advanced_practitioner"]),
        ),
    )
    assert resp.effect == pb.EFFECT_DENY
    assert resp.citation.section == "4.1"
    assert "Deputy Team Managers" in resp.citation.quote or "strategy" in resp.citation.quote


def test_ap_scheme_allocation_in_cswt_needs_team_manager_agreement(channel: grpc.Channel) -> None:
    request = pb.AuthoriseRequest(
        council="ap_scheme",
        decision="allocate_case",
        actor=pb.Actor(id="ap-1", roles=["advanced_practitioner"], service_areas=["cswt"]),
        context=pb.Context(facts={"allocation_case_type": pb.FactValue(enum_value="cin")}),
    )
    resp = _authorise(channel, request)
    assert resp.effect == pb.EFFECT_DENY
    assert any("precondition not met" in f for f in resp.failed_conditions), resp.failed_conditions
    request.context.facts["team_manager_agreement"].bool_value = True
    assert _authorise(channel, request).effect == pb.EFFECT_ALLOW


def test_list_councils_names_every_scheme_from_its_document(channel: grpc.Channel) -> None:
    listed = pb_grpc.CatalogueServiceStub(channel).ListCouncils(pb.ListCouncilsRequest(), timeout=5)
    names = {c.council: c.name for c in listed.councils}
    assert names["ap_scheme"] == (
        "Scheme of Delegations to Advance Practitioners (the document names no council)"
    )
    assert not [n for n in names.values() if n.lower().startswith("unnamed")], names
