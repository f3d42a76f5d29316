"""AuthZEN Access Evaluations (the batch) over HTTP: default values, the three
evaluations_semantic values, per-evaluation errors, the batch limit, one decision-log entry
per decided evaluation. A real server on a free port; every request evaluation (defaults
merged) and every response evaluation validated against the JSON Schemas."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from remit.model.policy import PolicySet
from remit.server.access import AccessPolicy

from tests.integration.test_authzen_http import REQUEST, RESPONSE, Pdp, _serve, epo

PATH = "/access/v1/evaluations"
DENY = {"action": {"name": "apply_epo"}}  # a team manager without exceptional circumstances
ALLOW = {"action": {"name": "apply_epo"}, "context": {"exceptional_circumstances": True}}
BAD = {"action": {"name": "no_such_decision"}}


@pytest.fixture(scope="module")
def pdp(policies: PolicySet) -> Iterator[Pdp]:
    server, sink, metrics = _serve(policies, AccessPolicy.open_access())
    yield Pdp(server, sink, metrics)
    server.stop()


def batch(items: list[dict[str, Any]], semantic: str | None = None) -> dict[str, Any]:
    """Defaults: the worker and the case at top level; each item names the action."""
    base = epo(["team_manager"])
    body: dict[str, Any] = {
        "subject": base["subject"],
        "resource": base["resource"],
        "evaluations": items,
    }
    if semantic is not None:
        body["options"] = {"evaluations_semantic": semantic}
    for item in items:  # what each evaluation is once the defaults are applied
        REQUEST.validate({**{k: body[k] for k in ("subject", "resource")}, **item})
    return body


def post(pdp: Pdp, body: dict[str, Any]) -> list[dict[str, Any]]:
    status, _, data = pdp.call(PATH, body)
    assert status == 200, data
    answer = json.loads(data)
    assert set(answer) == {"evaluations"}
    for item in answer["evaluations"]:
        RESPONSE.validate(item)
    evaluations: list[dict[str, Any]] = answer["evaluations"]
    return evaluations


@pytest.mark.parametrize("semantic", [None, "execute_all"])
def test_execute_all_answers_every_evaluation_in_order(pdp: Pdp, semantic: str | None) -> None:
    before = len(pdp.sink.lines)
    got = post(pdp, batch([DENY, ALLOW, BAD, ALLOW], semantic))
    assert [e["decision"] for e in got] == [False, True, False, True]
    assert got[1]["context"]["rule_id"] == "6.7-tm-exceptional"
    assert got[2]["context"] == {
        "error": {
            "status": 400,
            "message": "council 'torbay' has no decision 'no_such_decision'; "
            "CatalogueService/GetScheme or `remit catalogue torbay` lists its decisions",
            "field": "action.name",
        }
    }
    # one decision-log entry per decided evaluation, in order, none for the refused one
    entries = [json.loads(line) for line in pdp.sink.lines[before:]]
    assert [e["decision_id"] for e in entries] == [
        got[i]["context"]["decision_id"] for i in (0, 1, 3)
    ]


def test_deny_on_first_deny_stops_at_the_first_deny_or_error(pdp: Pdp) -> None:
    before = len(pdp.sink.lines)
    got = post(pdp, batch([ALLOW, DENY, ALLOW], "deny_on_first_deny"))
    assert [e["decision"] for e in got] == [True, False]
    assert len(pdp.sink.lines) == before + 2  # the third was never decided
    got = post(pdp, batch([ALLOW, BAD, ALLOW], "deny_on_first_deny"))
    assert [e["decision"] for e in got] == [True, False] and "error" in got[1]["context"]


def test_permit_on_first_permit_stops_at_the_first_permit(pdp: Pdp) -> None:
    got = post(pdp, batch([DENY, BAD, ALLOW, DENY], "permit_on_first_permit"))
    assert [e["decision"] for e in got] == [False, False, True]
    got = post(pdp, batch([DENY, DENY], "permit_on_first_permit"))
    assert [e["decision"] for e in got] == [False, False]


def test_an_evaluation_overrides_a_default_and_a_missing_one_is_its_own_error(
    pdp: Pdp,
) -> None:
    other_case = {"type": "case", "id": "CASE-78", "properties": {"council": "atlantis"}}
    got = post(pdp, batch([ALLOW, {**ALLOW, "resource": other_case}]))
    assert got[0]["decision"] is True
    assert got[1]["context"]["error"] == {
        "status": 404,
        "message": "unknown council 'atlantis'; "
        "CatalogueService/ListCouncils or `remit catalogue` lists the councils",
        "field": "resource.properties.council",
    }
    body = batch([ALLOW, {**ALLOW, "subject": epo(["team_manager"])["subject"]}])
    del body["subject"]  # no default subject: the first evaluation has none
    got = post(pdp, body)
    assert got[0]["context"]["error"] == {
        "status": 400,
        "message": "is required",
        "field": "subject",
    }
    assert got[1]["decision"] is True


def test_without_an_evaluations_array_the_body_is_one_evaluation(pdp: Pdp) -> None:
    body = epo(["team_manager"], {"exceptional_circumstances": True})
    status, _, data = pdp.call(PATH, body)
    assert status == 200 and json.loads(data)["decision"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"evaluations": {"a": 1}}, "evaluations"),
        ({"evaluations": [], "options": []}, "options"),
        (
            {"evaluations": [], "options": {"evaluations_semantic": "any"}},
            "options.evaluations_semantic",
        ),
        ({"evaluations": [DENY] * 101}, "evaluations"),
    ],
)
def test_a_bad_batch_is_400_naming_the_field(pdp: Pdp, body: dict[str, Any], field: str) -> None:
    status, headers, data = pdp.call(PATH, body)
    assert status == 400, data
    assert headers["remit-error-field"] == field
