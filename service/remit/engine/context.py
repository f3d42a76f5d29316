"""The one typed-context builder, for decisions and for notification events.

A request's facts become a typed context: every declared fact checked against its type,
absent bools read as false and absent role sets as empty (their defaults), the derived
facts computed (``legal_status_group`` from ``legal_status``; for a decision, the actor's
attributes and a development grant's ``grant_remaining`` / ``grant_unexpired``). Unknown,
derived or actor facts sent by the caller are refused, naming the field.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from remit.model.conditions import FactValue
from remit.model.errors import InvalidArgument, NotFound
from remit.model.facts import ACTOR_FACTS, LEGAL_STATUS_GROUPS, FactSpec, FactType
from remit.model.policy import CouncilPolicy, Decision
from remit.model.request import MAX_FACTS, Request, check_name

#: How a caller lists each kind of id a NotFound names (the catalogue over gRPC, or the CLI).
_LISTED_BY = {
    "council": "CatalogueService/ListCouncils or `remit catalogue` lists the councils",
    "decision": "CatalogueService/GetScheme or `remit catalogue {council}` lists its decisions",
    "role": "CatalogueService/GetScheme or `remit catalogue {council}` lists its roles",
    "area": "CatalogueService/GetScheme or `remit catalogue {council}` lists its areas",
    "fact": "CatalogueService/GetScheme or `remit catalogue {council}` lists its facts",
    "notification": (
        "CatalogueService/GetScheme (events) or `remit catalogue {council}` lists its notifications"
    ),
}


def not_found(
    field: str, kind: str, wanted: str, known: Iterable[str], council: str = ""
) -> NotFound:
    """The one NOT_FOUND error the engine raises for an unknown council, decision, role, area,
    fact or notification event: what was not found, the closest known ids (difflib) and how
    to list them.

    ``wanted`` is checked against the id pattern first (an :class:`InvalidArgument` naming
    the field otherwise), so the message never echoes more than a well-formed id; the
    suggestions are the catalogue's own ids."""
    check_name(field, wanted)
    close = difflib.get_close_matches(wanted, sorted(known), n=3, cutoff=0.6)
    where = f"council {council!r} has no {kind}" if council else f"unknown {kind}"
    hint = f" (closest: {', '.join(close)})" if close else ""
    return NotFound(field, f"{where} {wanted!r}{hint}; " + _LISTED_BY[kind].format(council=council))


def field_name(policy: CouncilPolicy, fid: str) -> str:
    """Where a fact travels on the wire: ``context.<fact>`` for the well-known facts, which
    have typed fields, ``context.facts[<fact>]`` for the scheme's declared ones."""
    if fid in policy.facts and fid not in policy.declared_facts:
        return f"context.{fid}"
    return f"context.facts[{fid}]"


def required(policy: CouncilPolicy, fid: str, what: str) -> InvalidArgument:
    """The error for a fact a rule tests that the request did not carry."""
    spec = policy.facts[fid]
    return InvalidArgument(
        field_name(policy, fid), f"required: {what} tests {spec.label} ({spec.type.value})"
    )


def typed(policy: CouncilPolicy, spec: FactSpec, field: str, value: FactValue) -> FactValue:
    """``value`` checked against the fact's type (raises InvalidArgument / NotFound)."""
    t = spec.type
    if t is FactType.BOOL:
        if not isinstance(value, bool):
            raise InvalidArgument(field, "must be a bool")
        return value
    if t in (FactType.INT, FactType.MONEY):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(
                field, f"must be an integer{' (pence)' if t is FactType.MONEY else ''}"
            )
        if value < 0 or value > 10**13:
            raise InvalidArgument(field, "out of range")
        return value
    if t is FactType.ENUM:
        if not isinstance(value, str) or value not in spec.values:
            raise InvalidArgument(field, f"must be one of {', '.join(spec.values)}")
        return value
    if not isinstance(value, frozenset):
        raise InvalidArgument(field, "must be a list of role ids")
    for role in value:
        if role not in policy.roles:
            raise not_found(field, "role", role, policy.roles, policy.council)
    return value


def with_functions(policy: CouncilPolicy, ctx: dict[str, FactValue]) -> None:
    """A post recorded absent or agreeing records the functions it holds (in place):
    :meth:`CouncilPolicy.recorded` on ``absent_roles`` and ``concurring_roles``."""
    for fid in ("absent_roles", "concurring_roles"):
        recorded = ctx.get(fid)
        if isinstance(recorded, frozenset) and recorded:
            ctx[fid] = policy.recorded(fid, recorded)


def case_facts(policy: CouncilPolicy, facts: Mapping[str, FactValue]) -> dict[str, FactValue]:
    """The typed case facts with their defaults and ``legal_status_group``."""
    if len(facts) > MAX_FACTS:
        raise InvalidArgument("context.facts", f"at most {MAX_FACTS} facts")
    ctx: dict[str, FactValue] = dict(policy.fact_defaults)  # bools false, role sets empty
    for fid, value in facts.items():
        spec = policy.facts.get(fid)
        if spec is None or spec.derived or fid in ACTOR_FACTS:
            known = (f for f, s in policy.facts.items() if not s.derived and f not in ACTOR_FACTS)
            raise not_found(field_name(policy, fid), "fact", fid, known, policy.council)
        ctx[fid] = typed(policy, spec, field_name(policy, fid), value)
    with_functions(policy, ctx)
    if "legal_status" in ctx:
        ctx["legal_status_group"] = LEGAL_STATUS_GROUPS[str(ctx["legal_status"])]
    return ctx


def decision_context(
    policy: CouncilPolicy, decision: Decision, req: Request, *, require: bool = True
) -> dict[str, FactValue]:
    """The context a decision is taken in: the case facts, the actor's attributes and the
    grant's derived facts. ``require``: refuse a request lacking a fact a rule tests that has
    no default (amounts, ages, statuses); queries pass False and leave such facts open."""
    ctx = case_facts(policy, req.facts)
    ctx["actor_agency"] = req.actor.agency
    ctx["actor_registered_social_worker"] = req.actor.registered_social_worker
    grant = req.grant
    if grant is not None:
        check_name("context.grant.decision", grant.decision)
        if grant.remaining < 0:
            raise InvalidArgument("context.grant.remaining", "must not be negative")
    if grant is not None and grant.decision == decision.id:
        when = req.decision_time or datetime.now(UTC)
        ctx["grant_remaining"] = grant.remaining
        # expires_on is a UTC calendar date (the API's contract): compare in UTC
        ctx["grant_unexpired"] = grant.expires >= when.astimezone(UTC).date()
    else:
        ctx["grant_remaining"] = 0
        ctx["grant_unexpired"] = False
    for fid in decision.required_facts if require else ():
        if fid not in ctx:
            raise required(policy, fid, f"a rule of {decision.id}")
    return ctx


def given_facts(req: Request) -> frozenset[str]:
    """Facts the request settles: those it carries, the actor's, and what derives from them."""
    known = set(req.facts) | set(ACTOR_FACTS)
    if "legal_status" in known:
        known.add("legal_status_group")
    if req.grant is not None:
        known |= {"grant_remaining", "grant_unexpired"}
    return frozenset(known)
