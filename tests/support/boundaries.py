"""Boundary contexts for a decision: every ceiling ±1p, every flag on/off, every absence.

Used by the differential test (fast path vs Casbin reference) and by benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator

from remit.model.conditions import FactValue, Term
from remit.model.facts import LEGAL_STATUS_GROUPS, FactType
from remit.model.policy import CouncilPolicy, Decision

_BY_GROUP = {g: c for c, g in sorted(LEGAL_STATUS_GROUPS.items(), reverse=True)}


def _base(policy: CouncilPolicy, decision: Decision) -> dict[str, FactValue]:
    ctx: dict[str, FactValue] = {}
    for fid, spec in policy.facts.items():
        if spec.derived:
            continue
        if spec.type is FactType.BOOL:
            ctx[fid] = False
        elif spec.type is FactType.ROLES:
            ctx[fid] = frozenset()
    for fid in decision.required_facts:
        spec = policy.facts[fid]
        ctx[fid] = spec.values[0] if spec.type is FactType.ENUM else 0
    _derive(ctx)
    return ctx


def _derive(ctx: dict[str, FactValue]) -> None:
    if "legal_status" in ctx:
        ctx["legal_status_group"] = LEGAL_STATUS_GROUPS[str(ctx["legal_status"])]
    ctx.setdefault("grant_remaining", 0)
    ctx.setdefault("grant_unexpired", False)
    ctx.setdefault("actor_agency", False)
    ctx.setdefault("actor_registered_social_worker", False)


def _values(policy: CouncilPolicy, term: Term) -> list[FactValue]:
    spec = policy.facts[term.fact]
    v = term.value
    if spec.type is FactType.BOOL:
        return [True, False]
    if spec.type is FactType.ROLES:
        return [frozenset({str(v)}), frozenset()]
    if spec.type is FactType.ENUM:
        return list(spec.values)
    assert isinstance(v, int)
    return sorted({max(0, v - 1), v, v + 1})


def _satisfy(ctx: dict[str, FactValue], term: Term, policy: CouncilPolicy) -> None:
    v = term.value
    spec = policy.facts[term.fact]
    if term.op in ("has", "lacks"):
        cur = ctx.get(term.fact, frozenset())
        assert isinstance(cur, frozenset)
        ctx[term.fact] = cur | {str(v)} if term.op == "has" else cur - {str(v)}
    elif term.op == "==":
        ctx[term.fact] = v
    elif term.op == "!=":
        if spec.values:
            ctx[term.fact] = next((x for x in spec.values if x != v), str(v))
        elif isinstance(v, int):
            ctx[term.fact] = v + 1
    elif term.op == "in":
        assert isinstance(v, frozenset)
        ctx[term.fact] = sorted(v)[0]
    elif term.op == "not_in":
        assert isinstance(v, frozenset)
        ctx[term.fact] = next(x for x in spec.values if x not in v)
    elif isinstance(v, int):
        ctx[term.fact] = {"<=": v, "<": v - 1, ">=": v, ">": v + 1}[term.op]
    if term.fact == "legal_status_group":
        ctx["legal_status"] = _BY_GROUP[str(ctx["legal_status_group"])]


def contexts(policy: CouncilPolicy, decision: Decision) -> Iterator[dict[str, FactValue]]:
    """The base context, each line satisfied, and each term's boundary values."""
    base = _base(policy, decision)
    yield dict(base)
    for line in decision.lines:
        sat = dict(base)
        for term in line.cond:
            _satisfy(sat, term, policy)
        _derive(sat)
        yield sat
        for term in line.cond:
            if term.fact in ("legal_status_group",):
                continue
            for value in _values(policy, term):
                variant = dict(sat)
                variant[term.fact] = value
                if term.fact == "legal_status" and isinstance(value, str):
                    variant["legal_status_group"] = LEGAL_STATUS_GROUPS[value]
                yield variant
