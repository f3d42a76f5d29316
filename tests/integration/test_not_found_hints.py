"""NOT_FOUND over gRPC carries the engine's hint: the closest catalogue ids (difflib) and how
to list them, for every kind of id; a malformed id is INVALID_ARGUMENT and never echoed."""

from __future__ import annotations

import grpc
import pytest
from remit.engine.context import not_found
from remit.model.errors import InvalidArgument
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc


def _authorise(channel: grpc.Channel, **fields: object) -> grpc.RpcError:
    request = dict(
        council="torbay",
        decision="apply_epo",
        actor=pb.Actor(id="tm-1", roles=["team_manager"]),
        context=pb.Context(exceptional_circumstances=True),
    )
    request.update(fields)
    with pytest.raises(grpc.RpcError) as info:
        pb_grpc.AuthorisationServiceStub(channel).Authorise(
            pb.AuthoriseRequest(**request),  # type: ignore[arg-type]
            timeout=5,
        )
    return info.value


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"council": "torbey"}, "unknown council 'torbey' (closest: torbay); "),
        ({"decision": "apply_ep"}, "has no decision 'apply_ep' (closest: apply_epo); "),
        (
            {"actor": pb.Actor(id="tm-1", roles=["team_managr"])},
            "has no role 'team_managr' (closest: team_manager,",
        ),
        (
            {"actor": pb.Actor(id="tm-1", roles=["team_manager"], service_areas=["mashh"])},
            "has no area 'mashh' (closest: mash",
        ),
        (
            {
                "context": pb.Context(
                    exceptional_circumstances=True,
                    facts={"emergancy": pb.FactValue(bool_value=True)},
                )
            },
            "has no fact 'emergancy' (closest: emergency",
        ),
    ],
)
def test_not_found_names_the_closest_ids_and_how_to_list_them(
    channel: grpc.Channel, fields: dict[str, object], expected: str
) -> None:
    err = _authorise(channel, **fields)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert expected in (err.details() or "")
    assert "CatalogueService/" in (err.details() or "")


def test_get_scheme_unknown_council_has_the_hint(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as info:
        pb_grpc.CatalogueServiceStub(channel).GetScheme(
            pb.GetSchemeRequest(council="halton2"), timeout=5
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "(closest: halton); CatalogueService/ListCouncils" in (info.value.details() or "")


def test_a_malformed_id_is_refused_by_pattern_and_not_echoed(channel: grpc.Channel) -> None:
    err = _authorise(channel, decision="apply_epo<img src=x>")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "<img" not in (err.details() or "")
    with pytest.raises(InvalidArgument):
        not_found("decision", "decision", "a b", ["a_b"], "torbay")


def test_no_close_id_gives_no_closest_but_still_says_how_to_list() -> None:
    err = not_found("actor.roles[0]", "role", "zzzz", ["team_manager"], "torbay")
    assert err.field == "actor.roles[0]"
    assert err.message == (
        "council 'torbay' has no role 'zzzz'; "
        "CatalogueService/GetScheme or `remit catalogue torbay` lists its roles"
    )


def test_an_unknown_notification_event_has_the_hint_too(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as info:
        pb_grpc.AuthorisationServiceStub(channel).Notifications(
            pb.NotificationsRequest(council="torbay", event="a1_child_deth"), timeout=5
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "council 'torbay' has no notification 'a1_child_deth' (closest: a1_child_death," in (
        info.value.details() or ""
    )
    assert "`remit catalogue torbay` lists its notifications" in (info.value.details() or "")
    # a malformed event id is refused by pattern, never echoed
    with pytest.raises(grpc.RpcError) as bad:
        pb_grpc.AuthorisationServiceStub(channel).Notifications(
            pb.NotificationsRequest(council="torbay", event="a1<script>"), timeout=5
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "<script>" not in (bad.value.details() or "")
