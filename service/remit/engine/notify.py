"""Notifications: who must be told of an event, by whom and by when (e.g. Torbay Appendix 1).

An event is a ``notifications:`` entry of a scheme. ``notifications()`` answers the
Notifications RPC for one event; ``implied()`` gives the notifications an allowed decision
reports (the decision's ``implies:``). An event's conditions ("CP / LAC") are tested on the
request's facts: absent bools are false; any other fact a condition tests is required by
the Notifications RPC (refused, never guessed) and, for a decision's implied events, makes
the notification be returned (telling too many is the safe side). Due times come from
:mod:`remit.engine.due`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from remit.engine.context import case_facts, not_found, required
from remit.engine.due import due
from remit.engine.evaluate import council_policy
from remit.engine.explain import describe_term
from remit.model.conditions import FactValue
from remit.model.errors import InvalidArgument
from remit.model.policy import CouncilPolicy, Decision, Event, PolicySet


@dataclass(frozen=True)
class Notice:
    """One notification owed: the event, who is told, who tells, by when."""

    event: str
    wording: str
    audience: tuple[str, ...]
    by: tuple[str, ...]
    timescale: str
    due: datetime | None
    section: str
    quote: str
    reading: str
    conditions: str


def event_of(policy: CouncilPolicy, event_id: str) -> Event:
    if not event_id:
        raise InvalidArgument("event", "is required")
    event = policy.events.get(event_id)
    if event is None:  # the closest event ids and how to list them, as for the other ids
        raise not_found("event", "notification", event_id, policy.events, policy.council)
    return event


def conditions_text(policy: CouncilPolicy, event: Event) -> str:
    return " or ".join(
        "; ".join(describe_term(policy, t) for t in alt) for alt in event.conditions if alt
    )


def _applies(
    policy: CouncilPolicy, event: Event, ctx: Mapping[str, FactValue], *, require: bool
) -> bool:
    if not event.conditions:
        return True
    missing = [f for f in event.facts if f not in ctx]
    if missing:
        if require:
            raise required(policy, missing[0], f"notification {event.id}")
        return True
    return any(all(t.holds(ctx) for t in alt) for alt in event.conditions)


def notice(policy: CouncilPolicy, event: Event, when: datetime) -> Notice:
    return Notice(
        event.id,
        event.wording,
        tuple(p.name for p in event.audience),
        tuple(p.name for p in event.by),
        event.timescale,
        due(event.timescale, when),
        event.section,
        event.quote,
        event.reading,
        conditions_text(policy, event),
    )


def notifications(
    policies: PolicySet,
    council: str,
    event_id: str,
    facts: Mapping[str, FactValue],
    when: datetime | None = None,
) -> list[Notice]:
    """The notification owed for ``event_id`` in this context; [] when its conditions fail."""
    policy = council_policy(policies, council)
    event = event_of(policy, event_id)
    ctx = case_facts(policy, facts)
    if not _applies(policy, event, ctx, require=True):
        return []
    return [notice(policy, event, when or datetime.now(UTC))]


def implied(
    policy: CouncilPolicy, decision: Decision, facts: Mapping[str, FactValue], when: datetime
) -> list[Notice]:
    """Notifications that taking ``decision`` reports, in this context."""
    if not decision.implies:
        return []
    ctx = case_facts(policy, facts)
    out: list[Notice] = []
    for eid in decision.implies:
        event = policy.events[eid]
        if _applies(policy, event, ctx, require=False):
            out.append(notice(policy, event, when))
    return out
