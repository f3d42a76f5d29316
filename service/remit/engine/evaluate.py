"""The decision engine: validate a request against the catalogue, then decide.

Evaluation walks the compiled lines of one (council, decision) in Casbin priority order —
the same order and matcher as the Casbin model, so the Casbin reference evaluator
(:mod:`remit.tools.reference`) must agree with it, and the differential tests check that it does.
Every request is validated before any line is looked at: unknown names and wrong types
raise :class:`InvalidArgument` / :class:`NotFound`, never an allow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from remit.model.conditions import FactValue, Term, pounds
from remit.model.errors import InvalidArgument, NotFound
from remit.model.facts import ACTOR_FACTS, LEGAL_STATUS_GROUPS, FactSpec, FactType
from remit.model.policy import (
    NAME_PATTERN,
    CouncilPolicy,
    Decision,
    Line,
    Obligation,
    PolicySet,
    Rule,
)
from remit.model.request import (
    ID_PATTERN,
    MAX_AREAS,
    MAX_FACTS,
    MAX_ROLES,
    Deviation,
    Request,
)
from remit.model.words import describe


@dataclass(frozen=True)
class Citation:
    council: str
    document: str
    section: str
    quote: str
    reading: str


@dataclass(frozen=True)
class Authoriser:
    role: str
    title: str
    rule: str
    section: str
    conditions: str  # plain words; "" when unconditional


@dataclass(frozen=True)
class Answer:
    allowed: bool
    reason: str
    rule: str  # deciding rule id, "" for a default deny
    citation: Citation | None
    obligations: tuple[Obligation, ...]
    authorisers: tuple[Authoriser, ...]
    failed_conditions: tuple[str, ...]
    decided_outside: str
    policy_version: str
    decision_id: str
    council: str
    decision: str
    matched_role: str  # the actor role the deciding line matched ("" on default deny)
    area: str
    deviation: bool = False  # allowed only by an agreed deviation: flagged for review
    # on a deny: bool / role-set facts a rule of this actor needed, absent from the request
    missing_facts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """A validated request: the policy it is decided under and the typed context."""

    policy: CouncilPolicy
    decision: Decision
    roles: frozenset[str]
    area: str
    ctx: Mapping[str, FactValue]


def _check_name(field_name: str, value: str, pattern: re.Pattern[str] = NAME_PATTERN) -> None:
    if not value:
        raise InvalidArgument(field_name, "is required")
    if not pattern.match(value):
        raise InvalidArgument(
            field_name, f"must match {pattern.pattern} (got {len(value)} characters)"
        )


def council_policy(policies: PolicySet, council: str) -> CouncilPolicy:
    policy = policies.councils.get(council)
    if policy is None:  # catalogue ids are checked against NAME_PATTERN at load
        _check_name("council", council)
        raise NotFound("council", f"unknown council {council!r}")
    return policy


def decision_of(policy: CouncilPolicy, decision_id: str) -> Decision:
    decision = policy.decisions.get(decision_id)
    if decision is None:
        _check_name("decision", decision_id)
        raise NotFound("decision", f"council {policy.council!r} has no decision {decision_id!r}")
    return decision


def prepare(policies: PolicySet, req: Request) -> Prepared:
    """Validate ``req`` against the catalogue. Raises InvalidArgument / NotFound."""
    policy = council_policy(policies, req.council)
    decision = decision_of(policy, req.decision)
    if req.request_id:
        _check_name("request_id", req.request_id, ID_PATTERN)
    validate_actor(policy, req)
    validate_service_area(policy, req.service_area)
    roles = frozenset(req.actor.all_roles)
    area = _effective_area(policy, decision, req, roles)
    ctx = context(policy, decision, req)
    return Prepared(policy, decision, roles, area, ctx)


def _check_roles(policy: CouncilPolicy, req: Request, field: str, roles: tuple[str, ...]) -> None:
    if len(roles) > MAX_ROLES:
        raise InvalidArgument(field, f"at most {MAX_ROLES} roles")
    known = policy.roles
    for i, role in enumerate(roles):
        if role not in known:  # catalogue ids are checked against NAME_PATTERN at load
            _check_name(f"{field}[{i}]", role)
            raise NotFound(f"{field}[{i}]", f"council {req.council!r} has no role {role!r}")


def validate_actor(policy: CouncilPolicy, req: Request) -> None:
    _check_name("actor.id", req.actor.id, ID_PATTERN)
    if not req.actor.roles:
        raise InvalidArgument("actor.roles", "at least one role is required")
    _check_roles(policy, req, "actor.roles", req.actor.roles)
    _check_roles(policy, req, "actor.acting_for", req.actor.acting_for)
    if len(req.actor.service_areas) > MAX_AREAS:
        raise InvalidArgument("actor.service_areas", f"at most {MAX_AREAS} areas")
    for i, area in enumerate(req.actor.service_areas):
        if area not in policy.areas:
            _check_name(f"actor.service_areas[{i}]", area)
            raise NotFound(
                f"actor.service_areas[{i}]", f"council {req.council!r} has no area {area!r}"
            )


def validate_service_area(policy: CouncilPolicy, area: str) -> None:
    if area and area not in policy.areas:
        _check_name("context.service_area", area)
        raise NotFound("context.service_area", f"council {policy.council!r} has no area {area!r}")


def _scoped(decision: Decision, roles: frozenset[str]) -> bool:
    """Whether an area-limited line of the decision could match one of these roles."""
    return any(
        line.area != "*" and (line.matching_roles is None or line.matching_roles & roles)
        for line in decision.lines
    )


def _effective_area(
    policy: CouncilPolicy, decision: Decision, req: Request, roles: frozenset[str] | None = None
) -> str:
    """The service area the decision is taken in, when the actor may act there; else "".

    ``context.service_area`` names the area; an actor acts there if it is one of
    ``actor.service_areas`` or the actor holds an ``all_areas`` post. Without a context
    area, an actor of exactly one area acts in it. When the decision has area-limited
    rules and the area cannot be settled, the request is refused rather than guessed.
    """
    if roles is None:
        roles = frozenset(req.actor.all_roles)
    actor_areas = req.actor.service_areas
    if req.service_area:
        if req.service_area in actor_areas or any(policy.roles[r].all_areas for r in roles):
            return req.service_area
        # only area-limited lines this actor could match make the area matter
        if not actor_areas and _scoped(decision, roles):
            raise InvalidArgument(
                "actor.service_areas",
                f"required: {decision.id} is limited by service area",
            )
        return ""  # acting outside one's own areas: no area-limited rule applies
    if len(set(actor_areas)) == 1:
        return actor_areas[0]
    if _scoped(decision, roles):
        raise InvalidArgument(
            "context.service_area",
            f"required: {decision.id} is limited by service area and the actor's area "
            "is not settled by actor.service_areas",
        )
    return ""


def known_facts(req: Request) -> frozenset[str]:
    """Facts the request settles: those it carries, the actor's, and what derives from them."""
    known = set(req.facts) | set(ACTOR_FACTS)
    if "legal_status" in known:
        known.add("legal_status_group")
    if req.grant is not None:
        known |= {"grant_remaining", "grant_unexpired"}
    return frozenset(known)


def context(
    policy: CouncilPolicy, decision: Decision, req: Request, *, require: bool = True
) -> dict[str, FactValue]:
    """Typed facts with defaults and derived facts. ``require``: refuse missing facts."""
    if len(req.facts) > MAX_FACTS:
        raise InvalidArgument("context.facts", f"at most {MAX_FACTS} facts")
    ctx: dict[str, FactValue] = dict(policy.fact_defaults)  # bools false, role sets empty
    for fid, value in req.facts.items():
        field_name = (
            f"context.{fid}"
            if fid in policy.facts and fid not in policy.declared_facts
            else f"context.facts[{fid}]"
        )
        spec = policy.facts.get(fid)
        if spec is None or spec.derived or fid in ACTOR_FACTS:
            raise NotFound(field_name, f"council {req.council!r} declares no fact {fid!r}")
        ctx[fid] = _typed(policy, spec, field_name, value)
    ctx["actor_agency"] = req.actor.agency
    ctx["actor_registered_social_worker"] = req.actor.registered_social_worker
    if "legal_status" in ctx:
        ctx["legal_status_group"] = LEGAL_STATUS_GROUPS[str(ctx["legal_status"])]
    grant = req.grant
    if grant is not None:
        _check_name("context.grant.decision", grant.decision)
        if grant.remaining < 0:
            raise InvalidArgument("context.grant.remaining", "must not be negative")
    if grant is not None and grant.decision == decision.id:
        when = req.decision_time or datetime.now(UTC)
        ctx["grant_remaining"] = grant.remaining
        ctx["grant_unexpired"] = grant.expires >= when.date()
    else:
        ctx["grant_remaining"] = 0
        ctx["grant_unexpired"] = False
    for fid in decision.required_facts if require else ():
        if fid not in ctx:
            spec = policy.facts[fid]
            where = f"context.facts[{fid}]" if fid in policy.declared_facts else f"context.{fid}"
            raise InvalidArgument(
                where, f"required: a rule of {decision.id} tests {spec.label} ({spec.type.value})"
            )
    return ctx


def _typed(policy: CouncilPolicy, spec: FactSpec, field_name: str, value: FactValue) -> FactValue:
    t = spec.type
    if t is FactType.BOOL:
        if not isinstance(value, bool):
            raise InvalidArgument(field_name, "must be a bool")
        return value
    if t in (FactType.INT, FactType.MONEY):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(
                field_name, f"must be an integer{' (pence)' if t is FactType.MONEY else ''}"
            )
        if value < 0 or value > 10**13:
            raise InvalidArgument(field_name, "out of range")
        return value
    if t is FactType.ENUM:
        if not isinstance(value, str) or value not in spec.values:
            raise InvalidArgument(field_name, f"must be one of {', '.join(spec.values)}")
        return value
    if not isinstance(value, frozenset):
        raise InvalidArgument(field_name, "must be a list of role ids")
    for role in value:
        if role not in policy.roles:
            raise NotFound(field_name, f"council {policy.council!r} has no role {role!r}")
    return value


def in_area(line: Line, area: str) -> bool:
    return line.area == "*" or line.area == area


def names_actor(line: Line, roles: frozenset[str]) -> bool:
    """A line naming a post these roles hold or are senior to (not an ``anyone`` line)."""
    return line.matching_roles is not None and bool(line.matching_roles & roles)


def first_match(prep: Prepared) -> Line | None:
    """The deciding line: first in priority order whose area, role and condition match.

    The hot path: the area and role tests are written out here rather than calling
    in_area / names_actor (an ``anyone`` line matches every actor)."""
    for line in prep.decision.lines:
        if line.area != "*" and line.area != prep.area:
            continue
        if line.matching_roles is not None and not (line.matching_roles & prep.roles):
            continue
        if all(t.holds(prep.ctx) for t in line.cond):
            return line
    return None


def decide(policies: PolicySet, req: Request) -> Answer:
    """Validate and decide one request."""
    prep = prepare(policies, req)
    if req.deviation is not None:
        _check_deviation(prep.policy, req.deviation)
    ans = answer(policies.version, prep, first_match(prep))
    if ans.allowed:
        return ans
    ans = replace(ans, missing_facts=missing_facts(prep, req))
    if req.deviation is None or ans.decided_outside:
        return ans
    return _deviation_answer(prep, ans, req.deviation)


def _check_deviation(policy: CouncilPolicy, dev: Deviation) -> None:
    clause = policy.deviation
    if clause is None:
        raise InvalidArgument(
            "deviation", f"the scheme of {policy.council!r} provides for no deviation"
        )
    _check_name("deviation.agreed_by_id", dev.agreed_by_id, ID_PATTERN)
    _check_name("deviation.agreed_by_role", dev.agreed_by_role)
    if dev.agreed_by_role not in policy.roles:
        raise NotFound(
            "deviation.agreed_by_role",
            f"council {policy.council!r} has no role {dev.agreed_by_role!r}",
        )
    if dev.agreed_by_role not in clause.roles:
        named = ", ".join(policy.roles[r].title for r in clause.roles)
        raise InvalidArgument(
            "deviation.agreed_by_role",
            f"only {named} may agree a deviation ({_council_ref(policy, clause.section)})",
        )
    if dev.reason_code:
        _check_name("deviation.reason_code", dev.reason_code)


def _deviation_answer(prep: Prepared, denied: Answer, dev: Deviation) -> Answer:
    """ALLOW by an agreed deviation: cited, recorded, and flagged for review."""
    policy = prep.policy
    clause = policy.deviation
    assert clause is not None
    agreed = policy.roles[dev.agreed_by_role].title
    ref = _council_ref(policy, clause.section)
    reason = (
        f"Allowed as a deviation from the scheme agreed by the {agreed} ({ref}); "
        f"without it: {denied.reason}"
    )
    record = Obligation(
        kind="record",
        text=f"record the deviation agreed by the {agreed} and the exceptional reason ({ref})",
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
        sorted(prep.roles)[0],
        denied.area,
        deviation=True,
    )


def missing_facts(prep: Prepared, req: Request) -> tuple[str, ...]:
    """Facts read by default (absent bools false, role sets empty) on which a permission
    or exception open to this actor failed: the facts the rule needed but did not get."""
    out: dict[str, None] = {}
    for line in prep.decision.lines:
        if line.effect != "allow" or not names_actor(line, prep.roles):
            continue
        if not in_area(line, prep.area):
            continue
        for term in line.cond:
            if term.fact in req.facts or term.fact in ACTOR_FACTS or term.holds(prep.ctx):
                continue
            spec = prep.policy.facts[term.fact]
            if not spec.derived and spec.type in (FactType.BOOL, FactType.ROLES):
                out[term.fact] = None
    return tuple(out)


# -- explanation ------------------------------------------------------------------------


def _titles(policy: CouncilPolicy, roles: frozenset[str] | tuple[str, ...]) -> str:
    names = [
        policy.roles[r].title
        for r in sorted(roles, key=lambda r: policy.roles[r].rank, reverse=True)
    ]
    return " / ".join(names)


def _council_ref(policy: CouncilPolicy, section: str) -> str:
    name = policy.name
    for suffix in (" Borough Council", " County Council", " Council"):
        if name.endswith(suffix):
            name = name.removesuffix(suffix)
            break
    return f"{name} {section}"


def describe_term(policy: CouncilPolicy, term: Term) -> str:
    """A condition term in plain words ("up to £2,000.00")."""
    return describe(policy.facts, lambda r: policy.roles[r].title, term)


def _failed(
    policy: CouncilPolicy, line: Line, rule: Rule, ctx: Mapping[str, FactValue]
) -> list[str]:
    out: list[str] = []
    pre = {o.fact: o.text for o in rule.obligations if o.kind == "precondition"}
    who = _titles(policy, (line.role,)) if line.role != "*" else "anyone"
    ref = _council_ref(policy, rule.section)
    for term in line.cond:
        if term.holds(ctx):
            continue
        spec = policy.facts[term.fact]
        actual = ctx[term.fact]
        if term.fact in pre:
            out.append(f"precondition not met: {pre[term.fact]} ({ref})")
        elif (
            spec.type is FactType.MONEY and isinstance(actual, int) and isinstance(term.value, int)
        ):
            if term.op in ("<=", "<"):
                out.append(
                    f"{pounds(actual)} ({spec.label}) is above the {who} ceiling of "
                    f"{pounds(term.value)} ({ref})"
                )
            else:
                out.append(
                    f"{pounds(actual)} ({spec.label}) is not over {pounds(term.value)}, "
                    f"which {ref} requires for the {who}"
                )
        elif spec.type is FactType.BOOL:
            if term.value:
                out.append(f"{who} only with {spec.label} ({ref}); not recorded in the request")
            else:
                out.append(f"{who} not with {spec.label} ({ref})")
        else:
            out.append(f"{who}: {describe_term(policy, term)} ({ref})")
    return out


def _steps(rule: Rule) -> frozenset[str]:
    """Facts an authoriser satisfies by acting (preconditions, agreements), not case facts."""
    return frozenset(
        {o.fact for o in rule.obligations if o.kind == "precondition"} | {"concurring_roles"}
    )


def holds_ignoring(line: Line, ctx: Mapping[str, FactValue], skip: frozenset[str]) -> bool:
    """Whether every term of the line holds, leaving out the facts in ``skip``."""
    return all(t.holds(ctx) for t in line.cond if t.fact not in skip)


def open_terms(line: Line, rule: Rule, known: frozenset[str] | None) -> frozenset[str]:
    """Facts of a line left open: steps the decider takes, and facts the request lacks."""
    steps = _steps(rule)
    if known is None:
        return steps
    return steps | frozenset(t.fact for t in line.cond if t.fact not in known)


def authorisers(prep: Prepared, known: frozenset[str] | None = None) -> tuple[Authoriser, ...]:
    """Posts that could take this decision in this context, lowest post first.

    Each post named by a permission is tried as if it asked, in the same area and context:
    the first line that would decide for it (prohibitions included) settles whether it is
    an authoriser. Preconditions and agreements are steps the authoriser takes, so they
    are not required of the context; they appear in the conditions summary.
    """
    policy = prep.policy
    found: dict[str, Authoriser] = {}
    candidates = [
        line.role for line in prep.decision.lines if line.effect == "allow" and line.role != "*"
    ]
    for role in dict.fromkeys(candidates):
        for line in prep.decision.lines:
            if not in_area(line, prep.area or line.area):
                continue
            if line.matching_roles is not None and role not in line.matching_roles:
                continue
            if line.effect == "allow" and line.role != role:
                continue  # list each post for its own row, not for a junior post's
            steps = _steps(policy.rules[line.rule])
            skip = open_terms(line, policy.rules[line.rule], known)
            if not holds_ignoring(line, prep.ctx, skip):
                continue
            # a line resting on case facts the request leaves open may not apply: an allow
            # is kept only until a settled line is found; an open prohibition is passed over
            settled = known is None or all(t.fact in known or t.fact in steps for t in line.cond)
            if line.effect == "allow" and (settled or role not in found):
                rule = policy.rules[line.rule]
                found[role] = Authoriser(
                    role, policy.roles[role].title, rule.id, rule.section, line.summary
                )
            if settled:
                break
    return tuple(sorted(found.values(), key=lambda a: (-policy.roles[a.role].rank, a.role)))


def new_decision_id() -> str:
    """A random (version 4) UUID as 32 hex digits, without the cost of a uuid.UUID object."""
    n = int.from_bytes(os.urandom(16), "big")
    n = (n & ~(0xC000 << 48) | (0x8000 << 48)) & ~(0xF000 << 64) | (0x4000 << 64)
    return f"{n:032x}"


def answer(version: str, prep: Prepared, line: Line | None) -> Answer:
    policy, decision = prep.policy, prep.decision
    decision_id = new_decision_id()
    what = decision.wording[0].lower() + decision.wording[1:]
    if line is not None:
        rule = policy.rules[line.rule]
        citation = Citation(
            policy.council, policy.title, rule.section, rule.quote, rule.reading or decision.reading
        )
        ref = _council_ref(policy, rule.section)
        if line.effect == "allow":
            matched = sorted(prep.roles & (line.matching_roles or prep.roles))[0]
            cond = line.summary
            reason = f"{policy.roles[matched].title} may take this decision ({what}) under {ref}"
            if line.role != matched:
                reason += f", which names the {policy.roles[line.role].title} as the minimum level"
            if cond:
                reason += f": {cond}"
            return Answer(
                True,
                reason + ".",
                rule.id,
                citation,
                rule.obligations,
                (),
                (),
                "",
                version,
                decision_id,
                policy.council,
                decision.id,
                matched,
                prep.area,
            )
        # an explicit prohibition
        matched = "" if line.role == "*" else line.role
        if rule.decided_outside:
            reason = (
                f"Not decided within the department under {ref}: decided by {rule.decided_outside}."
            )
        else:
            reason = (
                f"{_titles(policy, prep.roles)} may not take this decision ({what}) under {ref}."
            )
        # why an exception to this prohibition, open to the actor, did not apply
        failed: list[str] = []
        for candidate in decision.lines:
            exception = policy.rules[candidate.rule]
            if exception.exception_to != rule.id or not names_actor(candidate, prep.roles):
                continue
            if not in_area(candidate, prep.area):
                continue
            for msg in _failed(policy, candidate, exception, prep.ctx):
                if msg not in failed:
                    failed.append(msg)
        if failed:
            reason = reason[:-1] + f"; the exception does not apply: {failed[0]}."
        auth = authorisers(prep)
        return Answer(
            False,
            reason,
            rule.id,
            citation,
            (),
            auth,
            tuple(failed),
            rule.decided_outside,
            version,
            decision_id,
            policy.council,
            decision.id,
            matched,
            prep.area,
        )
    # default deny: explain what the actor's own lines needed, and who could decide
    failed = []
    # a rule limited to several areas is one message listing them, in its first place
    area_misses: dict[tuple[str, str], tuple[int, list[str]]] = {}
    for candidate in decision.lines:
        if candidate.effect != "allow" or not names_actor(candidate, prep.roles):
            continue
        rule = policy.rules[candidate.rule]
        if not in_area(candidate, prep.area):
            key = (rule.id, candidate.role)
            if key not in area_misses:
                area_misses[key] = (len(failed), [])
                failed.append("")
            area_misses[key][1].append(policy.areas[candidate.area].name)
            continue
        for msg in _failed(policy, candidate, rule, prep.ctx):
            if msg not in failed:
                failed.append(msg)
    for (rule_id, role), (place, names) in area_misses.items():
        failed[place] = (
            f"{_titles(policy, (role,))} only in {', '.join(names)}"
            f" ({_council_ref(policy, policy.rules[rule_id].section)})"
        )
    auth = authorisers(prep)
    reason = f"{_titles(policy, prep.roles)} may not take this decision ({what})"
    if failed:
        reason += ": " + failed[0]
    else:
        reason += f": {_council_ref(policy, decision.section)} does not delegate it to this post"
    if auth:
        reason += ". Who may decide here: " + ", ".join(
            f"{a.title} ({_council_ref(policy, a.section)})" for a in auth
        )
    return Answer(
        False,
        reason + ".",
        "",
        None,
        (),
        auth,
        tuple(failed),
        "",
        version,
        decision_id,
        policy.council,
        decision.id,
        "",
        prep.area,
    )
