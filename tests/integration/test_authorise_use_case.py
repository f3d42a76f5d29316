"""One authorise use case: gRPC, `remit check --json` and a policy-suite case answer one
request identically (engine/authorise.py is the only composition of decide, implied
notifications and due times)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from remit.cli.main import main as remit_main
from remit.engine.authorise import authorise
from remit.model.policy import PolicySet
from remit.tools import suites
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support.grpc_errors import bad_request
from tests.support.hosts import HOSTS, hosted_pb, record_files, scenario

AT = "2025-08-22T14:00:00+00:00"

# (name, council, decision, roles, facts as `remit check --fact` / suite context)
CASES = [
    # an allow implying a notification (Torbay Appendix 1), due the next working day
    (
        "implied_notification",
        "torbay",
        "missing_over_24_hours",
        ["team_manager"],
        {"looked_after": True, "concurring_roles": ["head_of_service"]},
    ),
    # an allow with a timed obligation (Permanency Panel notified within a week)
    ("timed_obligation", "torbay", "court_directed_placement", ["team_manager"], {}),
    # a deny with authorisers, failed conditions and missing facts
    ("deny", "torbay", "missing_over_24_hours", ["team_manager"], {"looked_after": True}),
]


def _grpc(channel: grpc.Channel, council: str, decision: str, roles: list[str], facts: Any) -> Any:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(AT))
    context = pb.Context(
        looked_after=bool(facts.get("looked_after")),
        concurring_roles=facts.get("concurring_roles", []),
    )
    request = pb.AuthoriseRequest(
        council=council,
        decision=decision,
        actor=pb.Actor(id="cli-user", roles=roles),
        context=context,
        decision_time=stamp,
    )
    return pb_grpc.AuthorisationServiceStub(channel).Authorise(request, timeout=10)


def _cli(
    capsys: pytest.CaptureFixture[str], council: str, decision: str, roles: list[str], facts: Any
) -> dict[str, Any]:
    argv = ["check", "--council", council, "--decision", decision, "--at", AT, "--json"]
    for role in roles:
        argv += ["--role", role]
    for key, value in facts.items():
        argv += ["--fact", f"{key}={json.dumps(value)}"]
    capsys.readouterr()
    assert remit_main(argv) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def _stamp(iso: str | None) -> str | None:
    return datetime.fromisoformat(iso).astimezone(UTC).isoformat() if iso else None


def _due(msg: Any) -> str | None:
    return msg.due.ToDatetime(tzinfo=UTC).isoformat() if msg.HasField("due") else None


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_one_request_is_answered_the_same_by_grpc_cli_and_a_suite_case(
    case: Any,
    channel: grpc.Channel,
    policies: PolicySet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, council, decision, roles, facts = case
    wire = _grpc(channel, council, decision, roles, facts)
    cli = _cli(capsys, council, decision, roles, facts)
    # the same answer, field by field (the decision id is each answer's own)
    assert cli["effect"] == pb.Effect.Name(wire.effect).removeprefix("EFFECT_")
    assert (cli["reason"], cli["rule"], cli["matched_role"], cli["policy_version"]) == (
        wire.reason,
        wire.rule_id,
        wire.matched_role,
        wire.policy_version,
    )
    assert cli["failed_conditions"] == list(wire.failed_conditions)
    assert cli["missing_facts"] == list(wire.missing_facts)
    assert [a["role"] for a in cli["authorisers"]] == [a.role for a in wire.authorisers]
    assert [(o["kind"], o["timescale"], _stamp(o["due"])) for o in cli["obligations"]] == [
        (
            pb.ObligationKind.Name(o.kind).removeprefix("OBLIGATION_KIND_").lower(),
            o.timescale,
            _due(o),
        )
        for o in wire.obligations
    ]
    assert [(n["event"], _stamp(n["due"])) for n in cli["notifications"]] == [
        (n.event, _due(n)) for n in wire.notifications
    ]
    # a policy-suite case expecting exactly that answer passes, and its answer agrees
    expect: dict[str, Any] = {
        "effect": cli["effect"].lower(),
        "rule": wire.rule_id,
        "reason_contains": wire.reason,
        "authorisers": [a.role for a in wire.authorisers],
        "obligations": [
            {"kind": o["kind"], "role": o["role"], "party": o["party"]} for o in cli["obligations"]
        ],
        "notifications": [{"event": n.event, "due": _due(n)} for n in wire.notifications],
    }
    suite_case = {
        "name": "same as gRPC",
        "decision": decision,
        "actor": {"id": "cli-user", "roles": roles},
        "context": dict(facts, decision_time=AT),
        "expect": expect,
    }
    problems, answer = suites.run_case(policies, council, suite_case, {"actors": {}, "cases": {}})
    assert problems == []
    assert answer is not None and answer.reason == wire.reason
    assert answer.failed_conditions == tuple(wire.failed_conditions)
    # the use case itself: the due times every caller showed are the ones it computed
    request = suites.build_request(
        policies, council, decision, suite_case["actor"], suite_case["context"]
    )
    outcome = authorise(policies, request)
    assert outcome.decided_at == datetime.fromisoformat(AT)
    assert [n.due.isoformat() if n.due else None for n in outcome.notices] == [
        _due(n) for n in wire.notifications
    ]
    assert [d.isoformat() if d else None for d in outcome.obligation_due] == [
        _due(o) for o in wire.obligations
    ]
    if case[0] != "deny":  # the cases above that allow show what they were chosen for
        assert wire.notifications or any(o.HasField("due") for o in wire.obligations)


def test_one_refused_request_names_the_same_field_everywhere(
    channel: grpc.Channel, policies: PolicySet, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown role: NOT_FOUND on actor.roles[0] over gRPC, from `remit check` and in a
    suite case's expected error."""
    with pytest.raises(grpc.RpcError) as info:
        _grpc(channel, "torbay", "apply_epo", ["chief_wizard"], {})
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    argv = ["check", "--council", "torbay", "--decision", "apply_epo", "--role", "chief_wizard"]
    capsys.readouterr()
    assert remit_main(argv) == 2  # a sentence naming the field, with gRPC's message
    text = capsys.readouterr().err
    assert text.startswith("remit check: actor.roles[0] not found: ")
    assert text.removeprefix("remit check: actor.roles[0] not found: ").strip() in (
        info.value.details() or ""
    )
    assert remit_main([*argv, "--json"]) == 2
    refused = json.loads(capsys.readouterr().err)
    assert (refused["error"], refused["field"]) == ("NOT_FOUND", "actor.roles[0]")
    assert refused["message"] in (info.value.details() or "")
    suite_case = {
        "name": "refused",
        "decision": "apply_epo",
        "actor": {"id": "cli-user", "roles": ["chief_wizard"]},
        "expect": {"error": {"code": "NOT_FOUND", "field": "actor.roles[0]"}},
    }
    problems, _ = suites.run_case(policies, "torbay", suite_case, {"actors": {}, "cases": {}})
    assert problems == []


def test_host_records_are_mapped_by_the_use_case_for_grpc_and_remit_check(
    channel: grpc.Channel, policies: PolicySet, capsys: pytest.CaptureFixture[str]
) -> None:
    """LCS records for a Team Manager's EPO: the same answer and the same mapped values over
    gRPC and from `remit check --host-system`; with a canonical role the records contradict,
    both refuse naming actor.roles."""
    s = scenario(HOSTS / "torbay" / "tm_epo_exceptional" / "scenario.json")
    files = ",".join(str(f) for f in record_files(s, "lcs"))
    argv = [
        "check", "--council", "torbay", "--decision", s["decision"], "--at", s["decision_time"],
        "--fact", "exceptional_circumstances=true", "--host-system", "lcs", "--records", files,
    ]  # fmt: skip
    stub = pb_grpc.AuthorisationServiceStub(channel)
    wire = stub.Authorise(hosted_pb(policies, s, "lcs"), timeout=10)
    capsys.readouterr()
    assert remit_main([*argv, "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert (cli["effect"], cli["rule"], cli["reason"]) == ("ALLOW", wire.rule_id, wire.reason)
    assert [(m["field"], m["canonical"], m["source"]) for m in cli["mapped"]] == [
        (m.field, m.canonical, m.source) for m in wire.mapped
    ]
    # a canonical role the records contradict is refused, never resolved by preference
    contradicted = hosted_pb(policies, s, "lcs")
    contradicted.actor.roles.append("director")
    with pytest.raises(grpc.RpcError) as info:
        stub.Authorise(contradicted, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in bad_request(info.value).field_violations] == ["actor.roles"]
    capsys.readouterr()
    assert remit_main([*argv, "--role", "director", "--json"]) == 2
    assert json.loads(capsys.readouterr().err)["field"] == "actor.roles"
