"""The decision engine: validate a request against the catalogue, then decide.

Every request is validated before any line is looked at: unknown names and wrong types
raise :class:`InvalidArgument` / :class:`NotFound`, never an allow. The decision is one
walk over the compiled lines of one (council, decision) in Casbin priority order
(:func:`remit.engine.trace.walk`, the same order and matcher as the Casbin model, which the
differential tests check against two Casbin implementations); the answer and its
explanation are read from that walk's trace (:mod:`remit.engine.explain`).
"""

from __future__ import annotations

import os
from dataclasses import replace

from remit.engine.answer import Answer, Authoriser, Citation, Prepared
from remit.engine.context import decision_context, given_facts, not_found, required
from remit.engine.explain import answer, council_ref, decision_steps, memoised
from remit.engine.trace import Actor as Walker
from remit.engine.trace import State, Trace, actor_of, area_limited, decision_areas, walk
from remit.model.errors import InvalidArgument
from remit.model.policy import CouncilPolicy, Decision, Line, Obligation, PolicySet
from remit.model.request import (
    ID_PATTERN,
    MAX_AREAS,
    MAX_ROLES,
    Deviation,
    Request,
    check_name,
)

__all__ = [
    "Answer",
    "Authoriser",
    "Citation",
    "Prepared",
    "council_policy",
    "decide",
    "decision_of",
    "first_match",
    "prepare",
    "trace_of",
    "validate_actor",
    "validate_service_area",
]


def council_policy(policies: PolicySet, council: str) -> CouncilPolicy:
    policy = policies.councils.get(council)
    if policy is None:  # catalogue ids are checked against NAME_PATTERN at load
        raise not_found("council", "council", council, policies.councils)
    return policy


def decision_of(policy: CouncilPolicy, decision_id: str) -> Decision:
    decision = policy.decisions.get(decision_id)
    if decision is None:
        raise not_found("decision", "decision", decision_id, policy.decisions, policy.council)
    return decision


def prepare(policies: PolicySet, req: Request) -> Prepared:
    """Validate ``req`` against the catalogue. Raises InvalidArgument / NotFound."""
    policy = council_policy(policies, req.council)
    decision = decision_of(policy, req.decision)
    if req.request_id:
        check_name("request_id", req.request_id, ID_PATTERN)
    validate_actor(policy, req)
    validate_service_area(policy, req.service_area)
    actor = actor_of(policy, req.actor.roles, req.actor.acting_for)
    roles = actor.all_roles
    area = effective_area(policy, decision, req, roles)
    ctx = decision_context(policy, decision, req, require=False)
    missing = frozenset(f for f in decision.required_facts if f not in ctx)
    return Prepared(
        policy,
        decision,
        roles,
        area,
        ctx,
        actor.acting_for,
        given_facts(req),
        missing,
        actor.agrees,
    )


def _check_roles(policy: CouncilPolicy, req: Request, field: str, roles: tuple[str, ...]) -> None:
    if len(roles) > MAX_ROLES:
        raise InvalidArgument(field, f"at most {MAX_ROLES} roles")
    known = policy.roles
    for i, role in enumerate(roles):
        if role not in known:  # catalogue ids are checked against NAME_PATTERN at load
            raise not_found(f"{field}[{i}]", "role", role, known, req.council)


def validate_actor(policy: CouncilPolicy, req: Request) -> None:
    check_name("actor.id", req.actor.id, ID_PATTERN)
    if not req.actor.roles:
        raise InvalidArgument("actor.roles", "at least one role is required")
    _check_roles(policy, req, "actor.roles", req.actor.roles)
    _check_roles(policy, req, "actor.acting_for", req.actor.acting_for)
    if len(req.actor.service_areas) > MAX_AREAS:
        raise InvalidArgument("actor.service_areas", f"at most {MAX_AREAS} areas")
    for i, area in enumerate(req.actor.service_areas):
        if area not in policy.areas:
            raise not_found(f"actor.service_areas[{i}]", "area", area, policy.areas, req.council)


def validate_service_area(policy: CouncilPolicy, area: str) -> None:
    if area and area not in policy.areas:
        raise not_found("context.service_area", "area", area, policy.areas, policy.council)


def effective_area(
    policy: CouncilPolicy, decision: Decision, req: Request, roles: frozenset[str] | None = None
) -> str:
    """The service area the decision is taken in, when the actor may act there; else "".

    ``context.service_area`` names the area; an actor acts there if it is one of
    ``actor.service_areas`` or the actor holds an ``all_areas`` post. Without a context
    area, an actor of exactly one area acts in it; an all-areas post (AD, DCS), when every
    area-limited line it could meet names one area, acts there (it never needs a service
    area for a decision taken in one area). Otherwise, when the area cannot be settled (an
    actor of several areas: the case may lie in the other), the request is refused, naming
    the field, the CLI flag and the areas, rather than guessed.
    """
    if roles is None:
        roles = frozenset(req.actor.all_roles)
    actor_areas = req.actor.service_areas
    if req.service_area:
        if req.service_area in actor_areas or any(policy.roles[r].all_areas for r in roles):
            return req.service_area
        # only area-limited lines this actor could match make the area matter
        if not actor_areas and area_limited(decision, roles):
            raise InvalidArgument(
                "actor.service_areas",
                f"required: {decision.id} is limited by service area",
            )
        return ""  # acting outside one's own areas: no area-limited rule applies
    if len(set(actor_areas)) == 1:
        return actor_areas[0]
    limited = decision_areas(decision, roles)
    if not limited:
        return ""
    if len(limited) == 1 and any(policy.roles[r].all_areas for r in roles):
        return limited[0]  # taken in one area only, by a post that works in every area
    names = ", ".join(f"{a} ({policy.areas[a].name})" for a in limited)
    raise InvalidArgument(
        "context.service_area",
        f"required: {decision.id} is limited by service area and the actor's area is not "
        f"settled by actor.service_areas; set context.service_area (remit check "
        f"--service-area) to one of: {names}",
    )


def trace_of(prep: Prepared) -> Trace:
    """The walk of a prepared request: every line up to the deciding one."""
    actor = Walker(prep.roles - prep.acting_for, prep.acting_for, prep.agrees)
    return walk(
        prep.decision, actor, prep.area, prep.ctx, open_facts=prep.missing, given=prep.given
    )


def _require_deciding_facts(prep: Prepared, trace: Trace) -> None:
    """Refuse the request when a fact it did not carry (one with no default) could change
    its answer: a line met by the actor, in the area, with nothing failed, rests on it. A
    fact only other posts' rules test is not required of this actor."""
    for lt in trace.lines:
        if lt.possible and lt.open:
            fact = lt.open[0].term.fact
            rule = prep.policy.rules[lt.line.rule]
            raise required(
                prep.policy,
                fact,
                f"a rule of {prep.decision.id} that could decide here ({rule.id})",
            )


def first_match(prep: Prepared) -> Line | None:
    """The deciding line: first in priority order whose area, role and condition match."""
    deciding = trace_of(prep).deciding
    return None if deciding is None else deciding.line


def new_decision_id() -> str:
    """A random (version 4) UUID as 32 hex digits, without the cost of a uuid.UUID object."""
    n = int.from_bytes(os.urandom(16), "big")
    n = (n & ~(0xC000 << 48) | (0x8000 << 48)) & ~(0xF000 << 64) | (0x4000 << 64)
    return f"{n:032x}"


def decide(policies: PolicySet, req: Request) -> Answer:
    """Validate and decide one request."""
    prep = prepare(policies, req)
    if req.deviation is not None:
        _check_deviation(prep.policy, req.deviation)
    ans = memoised(policies.version, prep, new_decision_id(), _answer)
    if ans.allowed or req.deviation is None or ans.decided_outside:
        return ans
    return _deviation_answer(prep, ans, req.deviation, req.service_area or prep.area)


def _answer(version: str, prep: Prepared, decision_id: str) -> Answer:
    """The walk of a prepared request and the answer read from it (or the refusal of a
    request lacking a fact that could decide it)."""
    trace = trace_of(prep)
    if prep.missing:
        _require_deciding_facts(prep, trace)
    return answer(version, prep, trace, decision_id)


def _check_deviation(policy: CouncilPolicy, dev: Deviation) -> None:
    clause = policy.deviation
    if clause is None:
        raise InvalidArgument(
            "deviation", f"the scheme of {policy.council!r} provides for no deviation"
        )
    check_name("deviation.agreed_by_id", dev.agreed_by_id, ID_PATTERN)
    check_name("deviation.agreed_by_role", dev.agreed_by_role)
    if dev.agreed_by_role not in policy.roles:
        raise not_found(
            "deviation.agreed_by_role", "role", dev.agreed_by_role, policy.roles, policy.council
        )
    if dev.agreed_by_role not in clause.roles:
        named = ", ".join(policy.roles[r].title for r in clause.roles)
        raise InvalidArgument(
            "deviation.agreed_by_role",
            f"only {named} may agree a deviation ({council_ref(policy, clause.section)})",
        )
    if not dev.reason_code:
        raise InvalidArgument(
            "deviation.reason_code",
            "required: the exceptional reason the scheme is not followed "
            f"({council_ref(policy, clause.section)})",
        )
    check_name("deviation.reason_code", dev.reason_code)


def within_authority(prep: Prepared, role: str, area: str) -> bool:
    """Whether ``role`` could itself take the decision in this context through its own line
    authority: its post or a post below it in the line (never a function its post holds, an
    independent role, a panel or a body outside the department), within its ceilings, with
    the steps its decider takes by acting (preconditions, agreements) left to be taken. A
    prohibition that binds it first, or no such permission, is outside its authority."""
    policy = prep.policy
    actor = Walker(frozenset({role}), agrees=frozenset({role}) & policy.line_posts)
    steps = decision_steps(policy, prep.decision)
    trace = walk(prep.decision, actor, area, prep.ctx, steps=steps, given=prep.given, stop=False)
    for lt in trace.lines:
        if lt.possible and lt.area is State.HELD:
            return lt.line.effect == "allow"
    return False


def _deviation_answer(prep: Prepared, denied: Answer, dev: Deviation, area: str) -> Answer:
    """ALLOW by an agreed deviation, cited, recorded and flagged for review; but only for what
    lies within the agreeing post's own authority (:func:`within_authority`): else the deny
    stands, saying why the deviation cannot permit it."""
    policy = prep.policy
    clause = policy.deviation
    assert clause is not None
    agreed = policy.roles[dev.agreed_by_role].title
    ref = council_ref(policy, clause.section)
    if not within_authority(prep, dev.agreed_by_role, area):
        reason = (
            f"{denied.reason} A deviation agreed by the {agreed} ({ref}) cannot permit it: "
            f"the decision in this context lies outside the {agreed}'s own authority "
            "(a deviation reaches only what that post could decide itself)."
        )
        return replace(denied, reason=reason)
    reason = (
        f"Allowed as a deviation from the scheme agreed by the {agreed} ({ref}); "
        f"without it: {denied.reason}"
    )
    record = Obligation(
        kind="record",
        text=(
            f"record the deviation agreed by the {agreed} and the exceptional reason"
            f" ({dev.reason_code}) ({ref})"
        ),
        role=dev.agreed_by_role,
        casenote="deviation from the scheme of delegation",
    )
    return Answer(
        True,
        reason,
        "deviation",
        Citation(policy.council, policy.title, clause.section, clause.quote, clause.reading),
        (record,),
        denied.authorisers,
        denied.failed_conditions,
        "",
        denied.policy_version,
        denied.decision_id,
        denied.council,
        denied.decision,
        min(prep.roles),
        denied.area,
        deviation=True,
        explained_rule=denied.explained_rule,
        trace=denied.trace,
    )
