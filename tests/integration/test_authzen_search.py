"""AuthZEN subject and action search over HTTP, with the specification's pagination,
answered as the gRPC list queries answer (the same engine queries); responses validated
against the OpenAPI document's schemas."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from remit.model.policy import PolicySet
from remit.server.access import AccessPolicy
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.integration.test_authzen_http import Pdp, _serve, epo
from tests.integration.test_authzen_openapi import validator

SUBJECTS = "/access/v1/search/subject"
ACTIONS = "/access/v1/search/action"


@pytest.fixture(scope="module")
def pdp(policies: PolicySet) -> Iterator[Pdp]:
    server, sink, metrics = _serve(policies, AccessPolicy.open_access())
    yield Pdp(server, sink, metrics)
    server.stop()


def search(pdp: Pdp, path: str, body: dict[str, Any], schema: str) -> dict[str, Any]:
    validator(schema.replace("Response", "Request")).validate(body)
    status, _, data = pdp.call(path, body)
    assert status == 200, data
    answer: dict[str, Any] = json.loads(data)
    validator(schema).validate(answer)
    return answer


def who(
    context: dict[str, Any] | None = None, page: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = epo(["team_manager"], context)
    body["subject"] = {"type": "role"}
    if page is not None:
        body["page"] = page
    return body


def test_subject_search_is_list_authorisers(pdp: Pdp, channel: grpc.Channel) -> None:
    for context in (None, {"exceptional_circumstances": True}):
        answer = search(pdp, SUBJECTS, who(context), "SubjectSearchResponse")
        grpc_answer = pb_grpc.AuthorisationServiceStub(channel).ListAuthorisers(
            pb.ListAuthorisersRequest(
                council="torbay",
                decision="apply_epo",
                context=pb.Context(**(context or {})),
            ),
            timeout=5,
        )
        assert [r["id"] for r in answer["results"]] == [a.role for a in grpc_answer.authorisers]
        assert [r["properties"]["rule_id"] for r in answer["results"]] == [
            a.rule_id for a in grpc_answer.authorisers
        ]
        assert all(r["type"] == "role" for r in answer["results"])
        assert answer["page"] == {
            "next_token": "",
            "count": len(answer["results"]),
            "total": len(answer["results"]),
        }
    assert answer["results"][0]["id"] == "team_manager"  # exceptional circumstances: 6.7


def test_action_search_is_the_settled_permitted_decisions(pdp: Pdp, channel: grpc.Channel) -> None:
    body = epo(["team_manager"])
    del body["action"]
    answer = search(pdp, ACTIONS, body, "ActionSearchResponse")
    listed = pb_grpc.AuthorisationServiceStub(channel).ListPermittedDecisions(
        pb.ListPermittedDecisionsRequest(
            council="torbay", actor=pb.Actor(id="tm-0001", roles=["team_manager"])
        ),
        timeout=5,
    )
    settled = [d.decision for d in listed.decisions if not d.conditional]
    conditional = [d.decision for d in listed.decisions if d.conditional]
    assert settled and conditional
    assert [r["name"] for r in answer["results"]] == settled
    assert [r["name"] for r in answer["context"]["conditional"]] == conditional
    assert "apply_epo" in conditional  # it hangs on exceptional circumstances
    # each result, evaluated, is an allow (the spec's search semantics)
    for name in settled[:5]:
        one = epo(["team_manager"])
        one["action"]["name"] = name
        assert pdp.evaluate(one)[1]["decision"] is True, name


def test_pagination_walks_every_result_once_and_binds_the_token(pdp: Pdp) -> None:
    # one decision time for every page: due times count from it (a walk across midnight
    # would otherwise see two due dates for the same obligation)
    from datetime import UTC, datetime

    when = datetime.now(UTC).replace(microsecond=0).isoformat()
    body = epo(["team_manager"], {"decision_time": when})
    del body["action"]
    everything = search(pdp, ACTIONS, body, "ActionSearchResponse")["results"]
    assert len(everything) > 3
    seen: list[dict[str, Any]] = []
    page: dict[str, Any] = {"limit": 2}
    while True:
        answer = search(pdp, ACTIONS, {**body, "page": page}, "ActionSearchResponse")
        assert answer["page"]["count"] == len(answer["results"]) <= 2
        assert answer["page"]["total"] == len(everything)
        seen.extend(answer["results"])
        if not answer["page"]["next_token"]:
            break
        page = {"limit": 2, "token": answer["page"]["next_token"]}
        last = page
    assert seen == everything
    # a token sent with another query, or another limit, is refused
    changed = {**body, "context": {"emergency": True}, "page": last}
    status, headers, _ = pdp.call(ACTIONS, changed)
    assert status == 400 and headers["remit-error-field"] == "page.token"
    status, headers, _ = pdp.call(ACTIONS, {**body, "page": {**last, "limit": 3}})
    assert status == 400 and headers["remit-error-field"] == "page.token"
    status, headers, _ = pdp.call(ACTIONS, {**body, "page": {"token": "not a token"}})
    assert status == 400 and headers["remit-error-field"] == "page.token"


@pytest.mark.parametrize(
    ("path", "change", "field"),
    [
        (SUBJECTS, lambda b: b["subject"].update(type="worker"), "subject.type"),
        (SUBJECTS, lambda b: b.pop("action"), "action"),
        (SUBJECTS, lambda b: b["action"].update(name="nope"), "action.name"),
        (SUBJECTS, lambda b: b.update(page={"limit": -1}), "page.limit"),
        (SUBJECTS, lambda b: b.update(page={"limit": True}), "page.limit"),
        (
            SUBJECTS,
            lambda b: b["resource"]["properties"].update(council="atlantis"),
            "resource.properties.council",
        ),
        (ACTIONS, lambda b: b.update(subject={"type": "role"}), "subject.type"),
        (
            ACTIONS,
            lambda b: b["subject"]["properties"].update(roles=["wizard"]),
            "subject.properties.roles[0]",
        ),
        (ACTIONS, lambda b: b.update(context={"amount_pence": "1"}), "context.amount_pence"),
    ],
)
def test_a_bad_search_names_the_field(pdp: Pdp, path: str, change: Any, field: str) -> None:
    body = who() if path == SUBJECTS else epo(["team_manager"])
    if path == ACTIONS:
        del body["action"]
    change(body)
    status, headers, data = pdp.call(path, body)
    assert status in (400, 404), data
    assert headers["remit-error-field"] == field


def test_metadata_lists_the_searches_offered_and_not_resource_search(pdp: Pdp) -> None:
    _, _, data = pdp.call("/.well-known/authzen-configuration", method="GET")
    meta = json.loads(data)
    assert meta["search_subject_endpoint"].endswith(SUBJECTS)
    assert meta["search_action_endpoint"].endswith(ACTIONS)
    assert "search_resource_endpoint" not in meta
    assert pdp.call("/access/v1/search/resource", who())[0] == 404
