"""Questions beside a single decision: what may this actor do here, and who may decide this.

Both are read from the engine's one walk (:func:`remit.engine.trace.walk`). A fact the
request does not carry is *open*: a permission that depends on it is listed as conditional,
with the condition in plain words, never as settled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from remit.engine.answer import Authoriser
from remit.engine.context import decision_context, given_facts
from remit.engine.evaluate import (
    council_policy,
    decision_of,
    effective_area,
    validate_actor,
    validate_service_area,
)
from remit.engine.explain import authorisers, decision_steps, describe_term, outside
from remit.engine.trace import LineTrace, State, actor_of, tested_facts, walk
from remit.model.conditions import FactValue
from remit.model.errors import InvalidArgument
from remit.model.policy import CouncilPolicy, Decision, Obligation, PolicySet
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


@dataclass(frozen=True)
class WhoMayDecide:
    """The authorisers, lowest post first, and the body outside the department that takes
    the decision in this context ("" when it is taken inside)."""

    authorisers: tuple[Authoriser, ...]
    decided_outside: str = ""


def open_words(policy: CouncilPolicy, lt: LineTrace) -> str:
    """The line's open terms in plain words ("only with the agreement of the ..."; ...)."""
    rule = policy.rules[lt.line.rule]
    pre = {o.fact: o.text for o in rule.obligations if o.kind == "precondition"}
    words: list[str] = []
    for t in lt.open:
        fact = t.term.fact
        words.append(f"only {pre[fact]}" if fact in pre else describe_term(policy, t.term))
    return "; ".join(words)


def _permitted_one(policy: CouncilPolicy, decision: Decision, req: Request) -> Permitted | None:
    try:
        area = effective_area(policy, decision, req)
    except InvalidArgument:
        area = ""  # unsettled area: area-limited lines cannot apply
    ctx = decision_context(policy, decision, req, require=False)
    known = given_facts(req)
    tested = tested_facts(decision)
    trace = walk(
        decision,
        actor_of(policy, req.actor.roles, req.actor.acting_for),
        area,
        ctx,
        open_facts=tested - known,
        steps=decision_steps(policy, decision),
        given=known,
        stop=False,
    )
    conditional: list[str] = []
    first_rule = ""
    obligations: tuple[Obligation, ...] = ()
    for lt in trace.lines:
        if not lt.possible or lt.area is not State.HELD:
            continue
        rule = policy.rules[lt.line.rule]
        settled = not lt.open
        if lt.line.effect == "deny":
            if settled:
                break
            conditional.append("unless " + open_words(policy, lt))
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
        conditional.append(open_words(policy, lt))
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
) -> WhoMayDecide:
    """The posts that may take ``decision_id`` in this context, lowest first, and the body
    outside the department that takes it here, if a settled prohibition places it there."""
    policy = council_policy(policies, council)
    decision = decision_of(policy, decision_id)
    validate_service_area(policy, service_area)
    req = Request(council, decision.id, Actor("query", ()), facts, service_area, grant, when)
    ctx = decision_context(policy, decision, req, require=False)
    known = given_facts(req)
    area = service_area or None
    body = outside(policy, decision, area, ctx, known)
    if body:
        return WhoMayDecide((), body)
    return WhoMayDecide(authorisers(policy, decision, area, ctx, known))
