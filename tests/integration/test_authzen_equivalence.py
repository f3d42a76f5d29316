"""Every policy-suite decision case (policies/tests/, as remit test runs them) sent over
AuthZEN HTTP and over gRPC gives the same answer: effect, rule, reason, failed conditions,
missing facts and who may decide instead, or the same refusal naming the same field (in
each API's terms). Both are real servers on free ports. A case the gRPC client cannot even
send (a value of the wrong type for a typed field: the protobuf encoder refuses it) is
counted and sent over HTTP alone, where it must be a 400."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from remit.audit.log import AuditLog, Pseudonymiser
from remit.distribution.holder import PolicyHolder
from remit.model.policy import PolicySet
from remit.server.access import AccessPolicy
from remit.server.convert import TimeWindow
from remit.server.hook import DecisionHook
from remit.server.http.app import HttpDeps
from remit.server.http.mapping import authzen_field
from remit.server.http.server import HttpServer, start_http
from remit.tools.suites import iter_cases
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support import ROOT
from tests.support.grpc_errors import bad_request
from tests.support.sinks import MemorySink

CONTEXT = pb.Context.DESCRIPTOR.fields_by_name
KIND = {"bool": "bool_value", "int": "int_value", "money": "money_pence", "enum": "enum_value"}
HTTP_STATUS = {"NOT_FOUND": {400, 404}, "INVALID_ARGUMENT": {400}, "PERMISSION_DENIED": {403}}


def suite_cases() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(id, council, actor, context) of every decision case, fixtures applied as remit test
    applies them."""
    out = []
    for council, suite, line, case, fixtures in iter_cases(ROOT / "policies" / "tests"):
        if "event" in case:
            continue
        actor = case.get("actor", {})
        if isinstance(actor, str):
            actor = fixtures["actors"][actor]
        context: dict[str, Any] = {}
        names = case.get("case", [])
        for name in [names] if isinstance(names, str) else names:
            context.update(fixtures["cases"][name])
        context.update(case.get("context", {}))
        context["_decision"] = str(case.get("decision", ""))
        out.append((f"{suite}:{line}", str(case.get("council", council)), dict(actor), context))
    return out


def _time(value: Any) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _grant(raw: dict[str, Any]) -> dict[str, Any]:
    expires = raw.get("expires")
    text = expires.isoformat() if isinstance(expires, date) else str(expires)
    return {"decision": raw["decision"], "remaining": raw["remaining"], "expires_on": text}


def to_grpc(
    policies: PolicySet, council: str, actor: dict[str, Any], context: dict[str, Any]
) -> pb.AuthoriseRequest:
    """The case as a gRPC client sends it; TypeError/ValueError when it cannot be encoded."""
    policy = policies.councils.get(council)
    declared = {f: policy.facts[f].type.value for f in policy.declared_facts} if policy else {}
    roles = actor.get("roles", [])
    request = pb.AuthoriseRequest(
        council=council,
        decision=context["_decision"],
        actor=pb.Actor(
            id=str(actor.get("id", "")),
            roles=roles if isinstance(roles, list) else [roles],
            service_areas=actor.get("service_areas", []),
            agency=actor.get("agency", False),
            registered_social_worker=actor.get("registered_social_worker", False),
            acting_for=actor.get("acting_for", []),
        ),
    )
    for key, value in context.items():
        if key == "_decision":
            continue
        if key == "decision_time":
            request.decision_time.FromDatetime(_time(value))
        elif key == "deviation":
            request.deviation.CopyFrom(pb.Deviation(**value))
        elif key == "grant":
            request.context.grant.CopyFrom(pb.Grant(**_grant(value)))
        elif key in CONTEXT and key != "facts":
            fd = CONTEXT[key]
            if fd.is_repeated:
                getattr(request.context, key).extend(value)
            elif fd.type == FieldDescriptor.TYPE_BOOL and not isinstance(value, bool):
                raise TypeError(key)  # protobuf would read any truthy value as true
            else:
                setattr(request.context, key, value)
        else:
            kind = declared.get(key) or (
                "bool" if isinstance(value, bool) else "int" if isinstance(value, int) else "enum"
            )
            setattr(request.context.facts[key], KIND[kind], value)
    return request


def to_authzen(council: str, actor: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The same case as an AuthZEN evaluation request."""
    props = {k: actor[k] for k in ("roles", "service_areas", "acting_for", "agency") if k in actor}
    if "registered_social_worker" in actor:
        props["registered_social_worker"] = actor["registered_social_worker"]
    if isinstance(props.get("roles"), str):
        props["roles"] = [props["roles"]]
    ctx: dict[str, Any] = {}
    for key, value in context.items():
        if key == "_decision":
            continue
        if key == "decision_time":
            ctx[key] = _time(value).isoformat()
        elif key == "grant":
            ctx[key] = _grant(value)
        else:
            ctx[key] = value
    return {
        "subject": {"type": "worker", "id": str(actor.get("id", "")), "properties": props},
        "action": {"name": context["_decision"]},
        "resource": {"type": "case", "id": "SUITE-CASE", "properties": {"council": council}},
        "context": ctx,
    }


@pytest.fixture(scope="module")
def http_server(policies: PolicySet) -> Iterator[HttpServer]:
    deps = HttpDeps(
        PolicyHolder(policies),
        DecisionHook(AuditLog(MemorySink(), "strict", Pseudonymiser(b"k" * 32))),
        AccessPolicy.open_access(),
        TimeWindow(past=timedelta(days=3660)),  # as the gRPC test server: suites' fixed dates
    )
    server = start_http("127.0.0.1:0", deps)
    yield server
    server.stop()


def _answer_view(context: dict[str, Any]) -> dict[str, Any]:
    return {
        "effect": context["effect"].upper(),
        "rule": context["rule_id"],
        "reason": context["reason"],
        "failed": context["failed_conditions"],
        "missing": context["missing_facts"],
        "authorisers": [a["role"] for a in context["authorisers"]],
    }


@pytest.mark.slow
def test_every_suite_case_answers_alike_over_authzen_and_grpc(
    policies: PolicySet, channel: grpc.Channel, http_server: HttpServer
) -> None:
    stub = pb_grpc.AuthorisationServiceStub(channel)
    conn = http.client.HTTPConnection("127.0.0.1", http_server.port, timeout=10)
    cases = suite_cases()
    compared = unsendable = refused = 0
    mismatches: list[str] = []
    for case_id, council, actor, context in cases:
        conn.request(
            "POST",
            "/access/v1/evaluation",
            body=json.dumps(to_authzen(council, actor, context)).encode(),
            headers={"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        data = resp.read()
        try:
            wire = to_grpc(policies, council, actor, context)
        except (TypeError, ValueError):
            unsendable += 1
            if resp.status != 400:
                mismatches.append(f"{case_id}: unsendable over gRPC, HTTP {resp.status}")
            continue
        try:
            got = stub.Authorise(wire, timeout=10)
        except grpc.RpcError as exc:
            refused += 1
            field = bad_request(exc).field_violations[0].field
            code = exc.code().name
            http_field = resp.headers.get("Remit-Error-Field", "")
            if resp.status not in HTTP_STATUS.get(code, set()) or http_field != authzen_field(
                field
            ):
                mismatches.append(
                    f"{case_id}: gRPC {code} {field}, HTTP {resp.status} {http_field}"
                )
            continue
        compared += 1
        if resp.status != 200:
            mismatches.append(f"{case_id}: gRPC answered, HTTP {resp.status} {data[:200]!r}")
            continue
        answer = json.loads(data)
        want = {
            "effect": pb.Effect.Name(got.effect).removeprefix("EFFECT_"),
            "rule": got.rule_id,
            "reason": got.reason,
            "failed": list(got.failed_conditions),
            "missing": list(got.missing_facts),
            "authorisers": [a.role for a in got.authorisers],
        }
        if answer["decision"] is not (got.effect == pb.EFFECT_ALLOW) or (
            _answer_view(answer["context"]) != want
        ):
            mismatches.append(f"{case_id}: {_answer_view(answer['context'])} != {want}")
    conn.close()
    print(
        f"\nAuthZEN = gRPC: {compared} answered, {refused} refused alike, "
        f"{unsendable} not sendable over gRPC (HTTP 400), of {len(cases)} suite cases"
    )
    assert mismatches == [], "\n".join(mismatches[:20])
    assert compared > 1000 and refused > 0
