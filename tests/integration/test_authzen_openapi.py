"""The OpenAPI 3.1 document: generated from the code, committed as openapi.json (a stale
copy fails here, as ``scripts/gen-proto --check`` does for the stubs), served by the
server, every reference resolving, and real answers over HTTP valid against it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from remit.model.policy import PolicySet
from remit.server.access import AccessPolicy
from remit.server.http.openapi import document, render

from tests.integration.test_authzen_http import Pdp, _serve, epo
from tests.support import ROOT

COMMITTED = ROOT / "openapi.json"


@pytest.fixture(scope="module")
def pdp(policies: PolicySet) -> Iterator[Pdp]:
    server, sink, metrics = _serve(policies, AccessPolicy.open_access())
    yield Pdp(server, sink, metrics)
    server.stop()


def validator(name: str) -> Draft202012Validator:
    """A validator for one component schema of the document (JSON Schema 2020-12, as
    OpenAPI 3.1 schemas are)."""
    doc = Resource.from_contents(document(), default_specification=DRAFT202012)
    return Draft202012Validator(
        {"$ref": f"urn:remit:openapi#/components/schemas/{name}"},
        registry=Registry().with_resource("urn:remit:openapi", doc),
    )


def test_the_committed_document_is_what_the_code_generates() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        "openapi.json is stale: run python -m remit.server.http.openapi"
    )
    check = subprocess.run(
        [sys.executable, "-m", "remit.server.http.openapi", "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_the_check_fails_on_a_stale_copy(tmp_path: Path) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text(render().replace('"3.1.0"', '"3.0.0"'), encoding="utf-8")
    check = subprocess.run(
        [sys.executable, "-m", "remit.server.http.openapi", "--check", str(stale)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 1 and "stale" in check.stderr


def test_every_reference_resolves_and_every_endpoint_is_described(pdp: Pdp) -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    names = set(doc["components"]["schemas"])
    assert refs and all(r.removeprefix("#/components/schemas/") in names for r in refs)
    _, _, data = pdp.call("/.well-known/authzen-configuration", method="GET")
    meta = json.loads(data)
    base = meta.pop("policy_decision_point")
    assert {url.removeprefix(base) for url in meta.values()} <= set(doc["paths"])
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_the_server_serves_it(pdp: Pdp) -> None:
    status, headers, data = pdp.call("/openapi.json", method="GET")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(data) == json.loads(render())


def test_real_requests_and_answers_are_valid_against_the_document(pdp: Pdp) -> None:
    allow = epo(["team_manager"], {"exceptional_circumstances": True})
    deny = epo(["team_manager"])
    validator("EvaluationRequest").validate(allow)
    for body in (allow, deny):
        status, _, data = pdp.call("/access/v1/evaluation", body)
        assert status == 200
        validator("Decision").validate(json.loads(data))
    batch = {
        "subject": deny["subject"],
        "resource": deny["resource"],
        "evaluations": [{"action": {"name": "apply_epo"}}, {"action": {"name": "nope"}}],
    }
    validator("EvaluationsRequest").validate(batch)
    status, _, data = pdp.call("/access/v1/evaluations", batch)
    assert status == 200
    validator("EvaluationsResponse").validate(json.loads(data))
    # and the document is strict enough to refuse a wrong answer
    with pytest.raises(ValidationError, match="is not of type 'boolean'"):
        validator("Decision").validate({"decision": "true"})
    with pytest.raises(ValidationError, match="Additional properties"):
        validator("Subject").validate({"type": "worker", "id": "w", "properties": {"x": 1}})
