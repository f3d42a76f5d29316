"""The one walk over a decision's lines, and the typed trace it returns.

Every question remit answers about a decision is read from this walk: the effect and the
deciding rule (:mod:`remit.engine.evaluate`), the deny reason, the failed conditions, the
missing facts and who may decide instead (:mod:`remit.engine.explain`), the permitted list
and the authorisers query (:mod:`remit.engine.queries`) and the matrix cells
(:mod:`remit.tools.matrix`). No other module iterates over ``Decision.lines``.

The walk follows the Casbin model exactly (``model.conf``): lines in priority order; a line
applies when its area is ``*`` or the decision's area, its role is ``*``, one of the actor's
roles, or (for a permission) a post one of the actor's roles is senior to, and every term of
its condition holds; the first line that applies decides; none is a deny.

For each line the trace records how the actor's roles met it (:class:`Via`: directly, as
the post the actor covers, inherited from a junior post, as anyone, or not at all), whether
the area held, and each condition term held / failed (with the value seen) / open. A fact is
*open* when the caller asks about a case the request does not settle (a query), or when it
is a step the decider takes by acting (a precondition or an agreement): an open term neither
holds nor fails, so a line resting on one is *conditional*, never the deciding line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from remit.model.conditions import FactValue, Term
from remit.model.policy import CouncilPolicy, Decision, Line


class Via(StrEnum):
    """How the actor's roles met a line."""

    DIRECT = "direct"  # the line names one of the actor's own posts
    ACTING = "acting"  # the line names a post the actor covers in its holder's absence
    INHERITED = "inherited"  # a permission for a post junior to one of the actor's
    ANYONE = "anyone"  # the line binds everyone (role ``*``)
    NONE = "none"  # the actor's roles do not meet the line


class State(StrEnum):
    """Whether an area or a condition term held."""

    HELD = "held"
    FAILED = "failed"
    OPEN = "open"  # not settled by the request (a query), or a step the decider takes


class TermTrace(NamedTuple):
    term: Term
    state: State
    value: FactValue | None  # the value seen (None when open)
    given: bool  # the request carried the fact (False: read as its default)


class LineTrace(NamedTuple):
    line: Line
    via: Via
    role: str  # the actor's role through which the line was met ("" for anyone / none)
    area: State
    terms: tuple[TermTrace, ...]  # empty when the actor's roles do not meet the line

    @property
    def meets(self) -> bool:
        """The actor's roles meet the line (anyone lines included)."""
        return self.via is not Via.NONE

    @property
    def names_actor(self) -> bool:
        """The line names one of the actor's posts (directly, acting, or inherited)."""
        return self.via in (Via.DIRECT, Via.ACTING, Via.INHERITED)

    @property
    def failed(self) -> tuple[TermTrace, ...]:
        return tuple(t for t in self.terms if t.state is State.FAILED)

    @property
    def open(self) -> tuple[TermTrace, ...]:
        return tuple(t for t in self.terms if t.state is State.OPEN)

    @property
    def applies(self) -> bool:
        """Met, in the area, every term held: this line decides if nothing earlier did."""
        return (
            self.via is not Via.NONE
            and self.area is State.HELD
            and all(t.state is State.HELD for t in self.terms)
        )

    @property
    def possible(self) -> bool:
        """Met and nothing failed: it applies once its open terms (and area) are settled."""
        return (
            self.via is not Via.NONE
            and self.area is not State.FAILED
            and all(t.state is not State.FAILED for t in self.terms)
        )


class Trace(NamedTuple):
    """The lines considered, in priority order, and the deciding one (None: default deny)."""

    lines: tuple[LineTrace, ...]
    deciding: LineTrace | None


@dataclass(frozen=True, slots=True)
class Actor:
    """The roles a walk is made for: the actor's own posts (with the functions they hold)
    and the posts it covers; ``agrees``: the line posts among its own, whose agreement a
    row asks for (``concurring_roles has``) is the actor's own and needs no record."""

    roles: frozenset[str]
    acting_for: frozenset[str] = frozenset()
    agrees: frozenset[str] = frozenset()

    @property
    def all_roles(self) -> frozenset[str]:
        return self.roles | self.acting_for


def actor_of(policy: CouncilPolicy, posts: Iterable[str], acting_for: Iterable[str] = ()) -> Actor:
    """The one way a walk's actor is made from the posts an actor holds and covers: its own
    posts with the functions they hold (``Role.holds``: the Assistant Director as Agency
    Decision Maker), the posts it covers but does not hold, and the line posts among its
    own, which agree by acting (an actor never records its own agreement)."""
    own = frozenset(posts)
    roles = own | policy.functions_of(own)
    return Actor(roles, frozenset(acting_for) - roles, own & policy.line_posts)


def _via(line: Line, actor: Actor, all_roles: frozenset[str]) -> tuple[Via, str]:
    if line.role == "*":
        return Via.ANYONE, ""
    if line.role in actor.roles:
        return Via.DIRECT, line.role
    if line.role in actor.acting_for:
        return Via.ACTING, line.role
    if line.matching_roles is not None and line.effect == "allow":
        seniors = line.matching_roles & all_roles
        if seniors:
            return Via.INHERITED, min(seniors)  # the same role Casbin reports (sorted first)
    return Via.NONE, ""


def walk(
    decision: Decision,
    actor: Actor,
    area: str | None,
    ctx: Mapping[str, FactValue],
    *,
    open_facts: frozenset[str] = frozenset(),
    steps: Mapping[str, frozenset[str]] | None = None,
    given: frozenset[str] | None = None,
    stop: bool = True,
) -> Trace:
    """Walk ``decision``'s lines for ``actor`` in ``area`` (None: any area, left open).

    ``open_facts``: facts whose terms are left open (never held, never failed); they need
    not be in ``ctx``. ``steps``: further open facts per rule id (the steps its decider
    takes by acting: preconditions, agreements). ``given``: the facts the request carried
    (None: all of them), so a failed term can tell a value sent from a default. ``stop``:
    end the walk at the deciding line (the lines after it cannot change the answer).
    """
    all_roles, agrees = actor.all_roles, actor.agrees
    out: list[LineTrace] = []
    deciding: LineTrace | None = None
    held, failed, opened = State.HELD, State.FAILED, State.OPEN
    for line in decision.lines:
        via, role = _via(line, actor, all_roles)
        if via is Via.NONE:
            out.append(LineTrace(line, via, role, failed, ()))
            continue
        if line.area == "*" or line.area == area:
            area_state = held
        else:
            area_state = opened if area is None else failed
        unsettled = open_facts | steps.get(line.rule, frozenset()) if steps else open_facts
        terms: list[TermTrace] = []
        applies = area_state is held
        for t in line.cond:
            fact = t.fact
            if fact == "concurring_roles" and t.op == "has" and t.value in agrees:
                # the agreement of a post the actor holds: its own, given by acting
                terms.append(TermTrace(t, held, ctx.get(fact), True))
                continue
            if fact in unsettled:
                terms.append(TermTrace(t, opened, None, False))
                applies = False
                continue
            ok = t.holds(ctx)
            applies = applies and ok
            terms.append(
                TermTrace(t, held if ok else failed, ctx[fact], given is None or fact in given)
            )
        traced = LineTrace(line, via, role, area_state, tuple(terms))
        out.append(traced)
        if deciding is None and applies:
            deciding = traced
            if stop:
                break
    return Trace(tuple(out), deciding)


def tested_facts(decision: Decision) -> frozenset[str]:
    """Every fact a line of the decision tests."""
    return frozenset(t.fact for line in decision.lines for t in line.cond)


def permission_posts(decision: Decision) -> tuple[str, ...]:
    """The posts a permission of the decision names, in priority order, once each."""
    return tuple(
        dict.fromkeys(ln.role for ln in decision.lines if ln.effect == "allow" and ln.role != "*")
    )


def _area_line_for(line: Line, roles: frozenset[str] | None) -> bool:
    """An area-limited line that one of ``roles`` (None: any actor) could meet."""
    return line.area != "*" and (
        roles is None or line.matching_roles is None or bool(line.matching_roles & roles)
    )


def area_limited(decision: Decision, roles: frozenset[str] | None = None) -> bool:
    """Whether an area-limited line of the decision could match one of ``roles`` (None:
    any actor): only then does the area a decision is taken in matter."""
    return any(_area_line_for(line, roles) for line in decision.lines)


def decision_areas(decision: Decision, roles: frozenset[str]) -> tuple[str, ...]:
    """The areas of the decision's area-limited lines one of ``roles`` could meet, sorted."""
    return tuple(sorted({line.area for line in decision.lines if _area_line_for(line, roles)}))


def _shown(value: FactValue | None) -> object:
    return sorted(value) if isinstance(value, frozenset) else value


def view(trace: Trace) -> list[dict[str, object]]:
    """The trace as plain data (``remit check --trace``): each line the actor's roles met,
    how, whether its area held, and each term with the value seen."""
    return [
        {
            "rule": lt.line.rule,
            "effect": lt.line.effect,
            "role": lt.line.role,
            "area": lt.line.area,
            "via": lt.via.value,
            "via_role": lt.role,
            "area_state": lt.area.value,
            "terms": [
                {"term": t.term.text(), "state": t.state.value, "value": _shown(t.value)}
                | ({} if t.given or t.state is State.OPEN else {"default": True})
                for t in lt.terms
            ],
            "decides": lt is trace.deciding,
        }
        for lt in trace.lines
        if lt.meets
    ]
