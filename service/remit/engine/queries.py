"""Questions beside a single decision: what may this actor do here, and who may decide this.

Both read the same compiled lines as the engine. A fact the request does not carry is
*open*: a permission that depends on it is listed as conditional, with the condition in
plain words, never as settled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from remit.engine.evaluate import (
    Authoriser,
    Prepared,
    _effective_area,
    authorisers,
    context,
    council_policy,
    decision_of,
    describe_term,
    holds_ignoring,
    in_area,
    known_facts,
    names_actor,
    open_terms,
    validate_actor,
    validate_service_area,
)
from remit.model.conditions import FactValue
from remit.model.errors import InvalidArgument
from remit.model.policy import CouncilPolicy, Decision, Line, Obligation, PolicySet
from remit.model.request import Actor, Grant, Request


@dataclass(frozen=True)
class Permitted:
    decision: str
    wording: str
    section: str
    rule: str
    summary: str
    conditional: bool
    obligations: tuple[Obligation, ...]


def _describe_open(policy: CouncilPolicy, line: Line, open_facts: frozenset[str]) -> str:
    rule = policy.rules[line.rule]
    pre = {o.fact: o.text for o in rule.obligations if o.kind == "precondition"}
    words: list[str] = []
    for term in line.cond:
        if term.fact not in open_facts:
            continue
        words.append(f"only {pre[term.fact]}" if term.fact in pre else describe_term(policy, term))
    return "; ".join(words)


def _permitted_one(policy: CouncilPolicy, decision: Decision, req: Request) -> Permitted | None:
    try:
        area = _effective_area(policy, decision, req)
    except InvalidArgument:
        area = ""  # unsettled area: area-limited lines cannot apply
    ctx = context(policy, decision, req, require=False)
    known = known_facts(req)
    roles = frozenset(req.actor.all_roles)
    conditional: list[str] = []
    first_rule = ""
    obligations: tuple[Obligation, ...] = ()
    for line in decision.lines:
        if not in_area(line, area):
            continue
        if line.matching_roles is not None and not names_actor(line, roles):
            continue
        rule = policy.rules[line.rule]
        unsettled = open_terms(line, rule, known)
        if not holds_ignoring(line, ctx, unsettled):
            continue
        settled = not any(t.fact in unsettled for t in line.cond)
        if line.effect == "deny":
            if settled:
                break
            conditional.append("unless " + _describe_open(policy, line, unsettled))
            continue
        if not first_rule:
            first_rule, obligations = rule.id, rule.obligations
        if settled:
            return Permitted(
                decision.id,
                decision.wording,
                rule.section,
                first_rule,
                " or ".join(c for c in conditional if c) if conditional else "",
                bool(conditional),
                obligations,
            )
        conditional.append(_describe_open(policy, line, unsettled))
    allows = [c for c in conditional if not c.startswith("unless ")]
    if not allows:
        return None
    return Permitted(
        decision.id,
        decision.wording,
        decision.section,
        first_rule,
        " or ".join(dict.fromkeys(allows)),
        True,
        obligations,
    )


def permitted_decisions(
    policies: PolicySet,
    council: str,
    actor: Actor,
    facts: dict[str, FactValue],
    service_area: str = "",
    grant: Grant | None = None,
    when: datetime | None = None,
) -> list[Permitted]:
    """Every decision ``actor`` may take on this case, settled or conditional."""
    policy = council_policy(policies, council)
    probe = Request(council, "", actor, facts, service_area, grant, when)
    validate_actor(policy, probe)
    validate_service_area(policy, service_area)
    out: list[Permitted] = []
    for decision in policy.decisions.values():
        req = Request(council, decision.id, actor, facts, service_area, grant, when)
        found = _permitted_one(policy, decision, req)
        if found is not None:
            out.append(found)
    return out


def who_may_decide(
    policies: PolicySet,
    council: str,
    decision_id: str,
    facts: dict[str, FactValue],
    service_area: str = "",
    grant: Grant | None = None,
    when: datetime | None = None,
) -> tuple[Authoriser, ...]:
    """The posts that may take ``decision_id`` in this context, lowest first."""
    policy = council_policy(policies, council)
    decision = decision_of(policy, decision_id)
    validate_service_area(policy, service_area)
    req = Request(council, decision.id, Actor("query", ()), facts, service_area, grant, when)
    ctx = context(policy, decision, req, require=False)
    prep = Prepared(policy, decision, frozenset(), service_area, ctx)
    return authorisers(prep, known_facts(req))
