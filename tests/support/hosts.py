"""Helpers for the adapter tests: the seed host fixtures and canonical requests built from
them (tests/fixtures/hosts/<council>/<scenario>/{scenario.json, lcs/, paris/})."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2
from remit.model.policy import PolicySet
from remit.v1 import remit_pb2 as pb

from tests.support import ROOT

HOSTS = ROOT / "tests" / "fixtures" / "hosts"
SCENARIOS = sorted(HOSTS.glob("*/*/scenario.json"))
SYSTEMS = ("lcs", "paris")

_TYPED = {
    "amount_pence",
    "cumulative_amount_pence",
    "emergency",
    "exceptional_circumstances",
    "out_of_hours",
    "absent_roles",
    "concurring_roles",
    "child_age",
    "legal_status",
    "looked_after",
    "placement_distance_miles",
    "court_proceedings",
    "service_area",
    "cp_plan",
    "cp_category",
    "child_in_need",
    "care_leaver_eligibility",
    "placement_provider",
}


def scenario(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data["dir"] = path.parent
    return data


def record_files(s: dict[str, Any], system: str) -> list[Path]:
    return [s["dir"] / system / "worker.json", s["dir"] / system / "case.json"]


def records(s: dict[str, Any], system: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in record_files(s, system):
        out.extend(json.loads(path.read_text(encoding="utf-8")))
    return out


def when(s: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(s["decision_time"].replace("Z", "+00:00"))


def context_pb(policies: PolicySet, council: str, facts: dict[str, Any]) -> pb.Context:
    ctx = pb.Context()
    policy = policies.councils[council]
    for key, value in facts.items():
        if key in _TYPED:
            if isinstance(value, list):
                getattr(ctx, key).extend(value)
            else:
                setattr(ctx, key, value)
            continue
        kind = policy.facts[key].type.value
        field = {
            "bool": "bool_value",
            "int": "int_value",
            "money": "money_pence",
            "enum": "enum_value",
        }[kind]
        setattr(ctx.facts[key], field, value)
    return ctx


def stamp(s: dict[str, Any]) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when(s))
    return out


def host_pb(system: str, recs: list[dict[str, Any]]) -> pb.HostInput:
    host = pb.HostInput(system=system)
    for r in recs:
        fields = struct_pb2.Struct()
        fields.update(r["fields"])
        host.records.append(pb.HostRecord(table=r["table"], fields=fields))
    return host


def canonical_pb(policies: PolicySet, s: dict[str, Any]) -> pb.AuthoriseRequest:
    return pb.AuthoriseRequest(
        council=s["council"],
        decision=s["decision"],
        actor=pb.Actor(**s["canonical"]["actor"]),
        context=context_pb(policies, s["council"], s["canonical"]["context"]),
        decision_time=stamp(s),
    )


def hosted_pb(
    policies: PolicySet, s: dict[str, Any], system: str, recs: list[dict[str, Any]] | None = None
) -> pb.AuthoriseRequest:
    return pb.AuthoriseRequest(
        council=s["council"],
        decision=s["decision"],
        context=context_pb(policies, s["council"], s["context"]),
        decision_time=stamp(s),
        host=host_pb(system, records(s, system) if recs is None else recs),
    )
