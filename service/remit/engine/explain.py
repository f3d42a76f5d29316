"""Explanations, read from the trace of :func:`remit.engine.trace.walk`.

The invariants every deny holds (``tests/unit/test_explanations.py`` checks them over every
council's boundary corpus, and the regression cases of issue 13 by name):

1. **The nearest rule.** A default deny explains the actor's nearest rule: among the
   permissions naming one of the actor's posts, a rule naming the actor's own post (or the
   post it covers) comes before one it inherits from a junior post; then a rule whose area
   held before one whose area failed; then the fewest failed terms; then the fewest failed
   on a value the request sent (a fact it did not carry is one the actor may yet record);
   then the most terms held on case facts the request sent (the case it describes; an
   agreement or a precondition is a step the decider takes, not the case); then the smallest
   shortfall on the amounts and numbers that failed (£625,000.01 is nearer the £625,000
   ceiling than the £10,000 one); then priority order. A deny by a prohibition explains the
   exception to it, open to the actor, nearest to applying, by the same order.
2. **Exactly what failed there.** ``failed_conditions`` lists the terms that failed on
   that rule's nearest line, and its area when the area failed, nothing else.
3. **Areas.** An area failure lists every area that rule allows; an area is never blamed
   when the area held.
4. **Who may decide** never offers the refused actor's own posts (the rule it just failed
   is in the reason, not in the list).
5. **Values as sent.** A fact sent as false is reported as recorded false; only a fact the
   request did not carry is reported as not recorded.
6. **Outside the department.** A deny by a rule that places the decision with a body
   outside the department (the Court, the Executive Member) names that body and asks for
   no facts.
7. **Missing facts** are only bool / role-set facts the explained rule tested, that the
   request did not carry and that failed there (read as false / empty).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence

from remit.engine.answer import Answer, Authoriser, Citation, Prepared
from remit.engine.memo import Memo, memo, new_memo
from remit.engine.trace import (
    Actor,
    LineTrace,
    State,
    TermTrace,
    Trace,
    Via,
    actor_of,
    permission_posts,
    tested_facts,
    walk,
)
from remit.model.conditions import FactValue, Term, pounds
from remit.model.facts import ACTOR_FACTS, FactType
from remit.model.policy import CouncilPolicy, Decision, Line, Rule
from remit.model.words import describe


def council_ref(policy: CouncilPolicy, section: str) -> str:
    """ "Torbay 2.5": the council's short name and the section."""
    name = policy.name
    for suffix in (" Borough Council", " County Council", " Council"):
        if name.endswith(suffix):
            name = name.removesuffix(suffix)
            break
    return f"{name} {section}"


def titles(policy: CouncilPolicy, roles: Iterable[str]) -> str:
    """The posts' titles, most senior first, joined by " / "."""
    ranked = sorted(roles, key=lambda r: policy.roles[r].rank, reverse=True)
    return " / ".join(policy.roles[r].title for r in ranked)


def describe_term(policy: CouncilPolicy, term: Term) -> str:
    """A condition term in plain words ("up to £2,000.00")."""
    return describe(policy.facts, lambda r: policy.roles[r].title, term)


# -- memos of what one policy version's objects alone determine (remit.engine.memo) ------

_STEPS: Memo = new_memo()
_DECISION_FACTS: Memo = new_memo()
_AUTHORISERS: Memo = new_memo()
_AUTHORISERS_LIMIT = 50_000  # entries of a few authorisers each: a few MB at most


def steps(rule: Rule) -> frozenset[str]:
    """Facts an authoriser satisfies by acting (preconditions, agreements), not case facts."""
    return memo(
        _STEPS,
        id(rule),
        (rule,),
        lambda: frozenset(
            {o.fact for o in rule.obligations if o.kind == "precondition"} | {"concurring_roles"}
        ),
        200_000,
    )


def decision_steps(policy: CouncilPolicy, decision: Decision) -> dict[str, frozenset[str]]:
    """:func:`steps` for every rule of the decision, by rule id (a walk's ``steps``)."""
    return {rid: steps(policy.rules[rid]) for rid in decision.rules if rid in policy.rules}


class _DecisionFacts:
    """What :func:`authorisers` reads of a decision alone, computed once per decision."""

    __slots__ = ("order", "posts", "steps", "tested")

    def __init__(self, policy: CouncilPolicy, decision: Decision) -> None:
        self.tested = tested_facts(decision)
        self.order = tuple(sorted(self.tested))
        self.posts = permission_posts(decision)
        self.steps = decision_steps(policy, decision)


def _decision_facts(policy: CouncilPolicy, decision: Decision) -> _DecisionFacts:
    return memo(
        _DECISION_FACTS,
        (id(decision), id(policy)),
        (decision, policy),
        lambda: _DecisionFacts(policy, decision),
        100_000,
    )


def _who(policy: CouncilPolicy, line: Line) -> str:
    return "anyone" if line.role == "*" else policy.roles[line.role].title


def _term_message(
    policy: CouncilPolicy, line: Line, tt: TermTrace, actor_roles: frozenset[str]
) -> str:
    """Why one term failed, in plain words, citing the rule."""
    rule = policy.rules[line.rule]
    term, actual = tt.term, tt.value
    ref = council_ref(policy, rule.section)
    who = _who(policy, line)
    pre = {o.fact: o.text for o in rule.obligations if o.kind == "precondition"}
    spec = policy.facts[term.fact]
    if term.fact in pre:
        return f"precondition not met: {pre[term.fact]} ({ref})"
    if spec.type is FactType.MONEY and isinstance(actual, int) and isinstance(term.value, int):
        if term.op in ("<=", "<"):
            return (
                f"{pounds(actual)} ({spec.label}) is above the {who} ceiling of "
                f"{pounds(term.value)} ({ref})"
            )
        return (
            f"{pounds(actual)} ({spec.label}) is not over {pounds(term.value)}, "
            f"which {ref} requires for the {who}"
        )
    if spec.type is FactType.BOOL:
        if not term.value:
            return f"{who} not with {spec.label} ({ref})"
        if spec.derived:  # computed by remit (a grant's expiry), not sent by the caller
            seen = "not so for this request" if tt.given else "nothing in the request gives it"
        else:
            seen = "recorded as false" if tt.given else "not recorded in the request"
        return f"{who} only with {spec.label} ({ref}); {seen}"
    words = describe_term(policy, term)
    if spec.type is FactType.ROLES:
        text = f"{who} {words} ({ref})"
        if term.fact == "concurring_roles" and term.op == "has" and term.value in actor_roles:
            # a membership or function the actor holds: only line posts agree by acting
            # (engine.trace.walk), so the row asks for another holder's agreement
            title = policy.roles[str(term.value)].title
            text += (
                f"; the actor's own {title} role does not stand for the one the row names: "
                f"another {title}'s agreement is recorded in concurring_roles"
            )
        elif not tt.given:
            text += "; not recorded in the request"
        return text
    return f"{who}: {words} ({ref})"


def _area_message(policy: CouncilPolicy, line: Line, rule_lines: Sequence[LineTrace]) -> str:
    areas = dict.fromkeys(lt.line.area for lt in rule_lines if lt.line.area != "*")
    names = ", ".join(policy.areas[a].name for a in areas)
    ref = council_ref(policy, policy.rules[line.rule].section)
    return f"{_who(policy, line)} only in {names} ({ref})"


def _shortfall(tt: TermTrace) -> int:
    """How far a failed number or amount is from its bound (0 for other terms)."""
    v, bound = tt.value, tt.term.value
    if isinstance(v, bool) or not isinstance(v, int):
        return 0
    if isinstance(bound, bool) or not isinstance(bound, int):
        return 0
    return abs(v - bound)


def _distance(policy: CouncilPolicy, lt: LineTrace) -> tuple[int, int, int, int, int, int]:
    """How near a line is to applying (smaller is nearer); invariant 1 of the docstring."""
    failed = lt.failed
    acts = steps(policy.rules[lt.line.rule])
    return (
        0 if lt.via in (Via.DIRECT, Via.ACTING) else 1,
        0 if lt.area is State.HELD else 1,
        len(failed),
        sum(t.given for t in failed),
        -sum(t.given and t.term.fact not in acts for t in lt.terms if t.state is State.HELD),
        sum(_shortfall(t) for t in failed),
    )


def nearest(
    policy: CouncilPolicy, candidates: Sequence[LineTrace]
) -> tuple[LineTrace, tuple[LineTrace, ...]] | None:
    """The nearest line among ``candidates`` (in priority order) and all candidate lines of
    its rule; None when there are none. See invariant 1 of the module docstring."""
    best: LineTrace | None = None
    for lt in candidates:  # strict < keeps the earliest line among equals
        if best is None or _distance(policy, lt) < _distance(policy, best):
            best = lt
    if best is None:
        return None
    return best, tuple(lt for lt in candidates if lt.line.rule == best.line.rule)


def failures(
    policy: CouncilPolicy, best: LineTrace, rule_lines: Sequence[LineTrace], roles: frozenset[str]
) -> tuple[str, ...]:
    """Exactly what failed on the nearest line: its area (listing every area of the rule)
    when the area failed, then each failed term."""
    out: list[str] = []
    if best.area is State.FAILED:
        out.append(_area_message(policy, best.line, rule_lines))
    out.extend(_term_message(policy, best.line, t, roles) for t in best.failed)
    return tuple(out)


def missing_facts(policy: CouncilPolicy, best: LineTrace) -> tuple[str, ...]:
    """Bool / role-set facts the nearest line tested, not in the request, that failed."""
    out: dict[str, None] = {}
    for t in best.failed:
        spec = policy.facts[t.term.fact]
        if t.given or spec.derived or t.term.fact in ACTOR_FACTS:
            continue
        if spec.type in (FactType.BOOL, FactType.ROLES):
            out[t.term.fact] = None
    return tuple(out)


def authorisers(
    policy: CouncilPolicy,
    decision: Decision,
    area: str | None,
    ctx: Mapping[str, FactValue],
    known: frozenset[str] | None = None,
    exclude: frozenset[str] = frozenset(),
) -> tuple[Authoriser, ...]:
    """Posts that could take this decision in this context, lowest post first.

    Each post named by a permission (but those in ``exclude``: the refused actor's own) is
    walked as if it asked, in the same area (None: any area) and context: the first line
    that would decide for it, prohibitions included, settles whether it is an authoriser.
    Preconditions and agreements are steps the authoriser takes, left open and listed in the
    conditions. ``known``: the facts the request settles (None: all); a line resting on a
    fact left unknown is kept only until a settled line is found.

    Each post's walk depends only on the decision, the area, the values of the facts its
    lines test and which of those the request settles, so the posts' answers are memoised
    per such shape (for every post; ``exclude`` is applied after).
    """
    facts = _decision_facts(policy, decision)
    shape: Hashable = (
        id(decision),
        id(policy),
        area,
        tuple([ctx.get(f, _ABSENT) for f in facts.order]),
        None if known is None else known & facts.tested,
    )
    every = memo(
        _AUTHORISERS,
        shape,
        (decision, policy),
        lambda: _authorisers(policy, decision, facts, area, ctx, known),
        _AUTHORISERS_LIMIT,
    )
    if not exclude:
        return every
    return tuple(a for a in every if a.role not in exclude)


_ABSENT = object()  # a fact the context does not hold (one left unknown)


def _authorisers(
    policy: CouncilPolicy,
    decision: Decision,
    facts: _DecisionFacts,
    area: str | None,
    ctx: Mapping[str, FactValue],
    known: frozenset[str] | None,
) -> tuple[Authoriser, ...]:
    """:func:`authorisers` of every post, computed."""
    rule_steps = facts.steps
    unknown = frozenset() if known is None else facts.tested - known
    found: dict[str, Authoriser] = {}
    for role in facts.posts:
        trace = walk(
            decision,
            actor_of(policy, (role,)),
            area,
            ctx,
            open_facts=unknown,
            steps=rule_steps,
            given=known,
            stop=False,
        )
        for lt in trace.lines:
            if not lt.possible:
                continue
            if lt.line.effect == "allow" and lt.line.role != role:
                continue  # list each post for its own row, not for a junior post's
            settled = all(t.term.fact not in unknown for t in lt.open)
            if lt.line.effect == "allow" and (settled or role not in found):
                rule = policy.rules[lt.line.rule]
                found[role] = Authoriser(
                    role, policy.roles[role].title, rule.id, rule.section, lt.line.summary
                )
            if settled:
                break
    return tuple(sorted(found.values(), key=lambda a: (-policy.roles[a.role].rank, a.role)))


def outside(
    policy: CouncilPolicy,
    decision: Decision,
    area: str | None,
    ctx: Mapping[str, FactValue],
    known: frozenset[str] | None = None,
) -> str:
    """The body outside the department that takes this decision in this context ("" when
    no settled prohibition binding everyone places it there)."""
    unknown = frozenset() if known is None else tested_facts(decision) - known
    trace = walk(decision, Actor(frozenset()), area, ctx, open_facts=unknown, given=known)
    for lt in trace.lines:
        if lt.via is not Via.ANYONE or not lt.possible or lt.open or lt.area is State.OPEN:
            continue
        if lt.line.effect == "deny":
            return policy.rules[lt.line.rule].decided_outside
    return ""


def _as_held(policy: CouncilPolicy, roles: frozenset[str], role: str) -> str:
    """A role's title, as the function of the actor's post that holds it when it is one
    ("Assistant Director of Social Care as Agency Decision Maker (ADM)")."""
    title = policy.roles[role].title
    holders = [h for h in policy.held_by.get(role, ()) if h in roles]
    return f"{policy.roles[holders[0]].title} as {title}" if holders else title


_ANSWERS: Memo = new_memo()
_ANSWERS_LIMIT = 8_192  # answers with their traces: a few KB each, a few tens of MB at most


def memoised(
    version: str,
    prep: Prepared,
    decision_id: str,
    compute: Callable[[str, Prepared, str], Answer],
) -> Answer:
    """``compute(version, prep, decision_id)``, memoised per shape of request: the answer
    (and its trace) of a prepared request depends only on the policy version, the decision,
    the actor's roles, those it covers and those that agree by acting, the area, the values
    of the facts the decision's lines test, which of those the request carried and which it
    left open. A request of a shape seen before gets that answer under its own decision id;
    a refusal (``compute`` raising) is never memoised."""
    facts = _decision_facts(prep.policy, prep.decision)
    ctx, given = prep.ctx, prep.given
    shape: Hashable = (
        version,
        id(prep.policy),
        id(prep.decision),
        prep.roles,
        prep.acting_for,
        prep.agrees,
        prep.area,
        tuple([ctx.get(f, _ABSENT) for f in facts.order]),
        None if given is None else given & facts.tested,
        prep.missing,
    )
    ans = memo(
        _ANSWERS,
        shape,
        (prep.policy, prep.decision),
        lambda: compute(version, prep, decision_id),
        _ANSWERS_LIMIT,
    )
    return ans if ans.decision_id == decision_id else ans.with_decision_id(decision_id)


def citation(policy: CouncilPolicy, decision: Decision, rule: Rule) -> Citation:
    return Citation(
        policy.council, policy.title, rule.section, rule.quote, rule.reading or decision.reading
    )


def answer(version: str, prep: Prepared, trace: Trace, decision_id: str) -> Answer:
    """The answer to a prepared request, read from its trace."""
    policy, decision = prep.policy, prep.decision
    what = decision.wording[0].lower() + decision.wording[1:]
    line = trace.deciding.line if trace.deciding is not None else None
    if line is not None and line.effect == "allow":
        rule = policy.rules[line.rule]
        matched = min(prep.roles & (line.matching_roles or prep.roles))
        ref = council_ref(policy, rule.section)
        who = _as_held(policy, prep.roles, matched)
        reason = f"{who} may take this decision ({what}) under {ref}"
        if line.role != matched and line.role != "*":
            reason += f", which names the {policy.roles[line.role].title} as the minimum level"
        if line.summary:
            reason += f": {line.summary}"
        return Answer(
            True,
            reason + ".",
            rule.id,
            citation(policy, decision, rule),
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
            trace=trace,
        )
    # a fact the request did not carry and no line for this actor needed stays open for others
    known = frozenset(prep.ctx) if prep.missing else None
    auth = authorisers(policy, decision, prep.area or None, prep.ctx, known, exclude=prep.roles)
    if line is not None:  # an explicit prohibition
        rule = policy.rules[line.rule]
        ref = council_ref(policy, rule.section)
        exceptions = [
            lt
            for lt in trace.lines
            if lt.names_actor
            and lt.line.effect == "allow"
            and policy.rules[lt.line.rule].exception_to == rule.id
        ]
        found = nearest(policy, exceptions)
        failed: tuple[str, ...] = ()
        missing: tuple[str, ...] = ()
        explained = ""
        if found is not None:
            failed = failures(policy, found[0], found[1], prep.roles)
            explained = found[0].line.rule
            if not rule.decided_outside:
                missing = missing_facts(policy, found[0])
        if rule.decided_outside:
            reason = (
                f"Not decided within the department under {ref}: decided by {rule.decided_outside}."
            )
        else:
            who = titles(policy, prep.roles)
            reason = f"{who} may not take this decision ({what}) under {ref}."
        if failed:
            reason = reason[:-1] + f"; the exception does not apply: {'; '.join(failed)}."
        return Answer(
            False,
            reason,
            rule.id,
            citation(policy, decision, rule),
            (),
            () if rule.decided_outside else auth,
            failed,
            rule.decided_outside,
            version,
            decision_id,
            policy.council,
            decision.id,
            "" if line.role == "*" else line.role,
            prep.area,
            missing_facts=missing,
            explained_rule=explained,
            trace=trace,
        )
    # default deny: the actor's nearest rule, what failed there, and who could decide
    own = [lt for lt in trace.lines if lt.names_actor and lt.line.effect == "allow"]
    found = nearest(policy, own)
    reason = f"{titles(policy, prep.roles)} may not take this decision ({what})"
    failed, missing, explained = (), (), ""
    if found is not None:
        failed = failures(policy, found[0], found[1], prep.roles)
        missing = missing_facts(policy, found[0])
        explained = found[0].line.rule
    if failed:
        reason += ": " + "; ".join(failed)
    else:
        reason += f": {council_ref(policy, decision.section)} does not delegate it to this post"
    if auth:
        reason += ". Who may decide here: " + ", ".join(
            f"{a.title} ({council_ref(policy, a.section)})" for a in auth
        )
    return Answer(
        False,
        reason + ".",
        "",
        None,
        (),
        auth,
        failed,
        "",
        version,
        decision_id,
        policy.council,
        decision.id,
        "",
        prep.area,
        missing_facts=missing,
        explained_rule=explained,
        trace=trace,
    )
