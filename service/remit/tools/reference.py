"""The Casbin reference evaluator: pycasbin on the compiled model.conf / policy.csv.

Used by the differential tests and by ``remit check --reference``; never on the serving
path (pycasbin scans every line per call and re-parses its matcher). One enforcer per
council, each guarded by a lock (concurrent pycasbin calls are not safe, see the notes).
Casbin's own request logging is switched off: requests carry personal data.

It takes the request as the wire gives it (:class:`remit.model.request.Request`) and builds
the Casbin requests itself, in :func:`casbin_requests`, from the semantics documented in
``model.conf``, the README and ``policies/README.md`` ("Areas", the facts table) — not
from the engine's validated form, so that a fault in the engine's role, area or context
handling shows up as a disagreement. It does not validate: the differential tests only
compare requests the engine accepts, and ``remit check`` asks it only after the engine has.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import casbin

from remit.model.conditions import FactValue, holds
from remit.model.facts import LEGAL_STATUS_GROUPS, FactType
from remit.model.policy import CouncilPolicy
from remit.model.request import Request

logging.getLogger("casbin").setLevel(logging.CRITICAL)

# p = decision, role, area, cond, eft, priority, rule (model.conf [policy_definition])
_ROLE, _RULE = 1, 6


def _cond(text: str, ctx: Mapping[str, FactValue]) -> bool:
    """The model's ``cond(p.cond, r.ctx)``: every term of the condition holds."""
    return holds(text, ctx)


@dataclass(frozen=True)
class CasbinRequests:
    """What one remit request asks Casbin: ``(decision, role, area, ctx)`` per role."""

    decision: str
    roles: tuple[str, ...]
    area: str
    ctx: Mapping[str, FactValue]


def defaults(policy: CouncilPolicy) -> dict[str, FactValue]:
    """What an omitted fact reads as: bools false, role sets empty (policies/README.md)."""
    out: dict[str, FactValue] = {}
    for fid, spec in policy.facts.items():
        if spec.type is FactType.BOOL and not spec.derived:
            out[fid] = False
        elif spec.type is FactType.ROLES:
            out[fid] = frozenset()
    return out


def casbin_requests(
    policy: CouncilPolicy, req: Request, omitted: Mapping[str, FactValue] | None = None
) -> CasbinRequests:
    """The Casbin requests of ``req``, derived as documented (no validation).

    * roles: the actor's roles, the functions they hold (``holds``) and the posts it acts
      for in their holder's absence (exercised as its own roles), in id order;
    * area: ``context.service_area`` when the actor works there or holds an ``all_areas``
      post; an area elsewhere is no area (no area-limited line applies); without a context
      area, the actor's area when it has exactly one; for an ``all_areas`` post, the one
      area every area-limited rule its roles meet names; else "";
    * ctx: the request's facts, absent bools false and absent role sets empty;
      ``absent_roles`` with every function all of whose holders are absent,
      ``concurring_roles`` with every function one of whose holders agrees and the actor's
      own line posts (an actor's own agreement needs no record); the actor's
      ``actor_agency`` / ``actor_registered_social_worker``; ``legal_status_group`` from
      the SSDA903 ``legal_status``; ``grant_remaining`` / ``grant_unexpired`` from a grant
      for this decision (its last day, inclusive, a UTC date, against the decision time,
      else now), 0 / false without one.

    ``omitted``: :func:`defaults` of ``policy``, when the caller holds them.
    """
    held = {f for r in req.actor.roles if r in policy.roles for f in policy.roles[r].holds}
    roles = tuple(sorted({*req.actor.roles, *req.actor.acting_for, *held}))
    areas = set(req.actor.service_areas)
    all_areas = any(r in policy.roles and policy.roles[r].all_areas for r in roles)
    if req.service_area:
        area = req.service_area if req.service_area in areas or all_areas else ""
    elif len(areas) == 1:
        area = next(iter(areas))
    elif all_areas:  # the decision's one area, when every area-limited rule it meets names it
        named = {
            a
            for rule in policy.rules.values()
            if rule.decision == req.decision
            for w in rule.who
            if w == "*"
            or w in roles
            or (rule.effect == "allow" and bool(policy.roles[w].seniors & set(roles)))
            for a in rule.areas
        }
        area = next(iter(named)) if len(named) == 1 else ""
    else:
        area = ""
    ctx = dict(defaults(policy) if omitted is None else omitted)
    ctx.update(req.facts)
    holders: dict[str, set[str]] = {}
    for rid, role in policy.roles.items():
        for f in role.holds:
            holders.setdefault(f, set()).add(rid)
    absent = ctx.get("absent_roles")
    if isinstance(absent, frozenset):
        ctx["absent_roles"] = absent | {f for f, by in holders.items() if by <= absent}
    agreed = ctx.get("concurring_roles")
    if isinstance(agreed, frozenset):
        ctx["concurring_roles"] = (
            agreed
            | {f for f, by in holders.items() if by & agreed}
            | {r for r in req.actor.roles if r in policy.line_posts}
        )
    ctx["actor_agency"] = req.actor.agency
    ctx["actor_registered_social_worker"] = req.actor.registered_social_worker
    if "legal_status" in req.facts:
        ctx["legal_status_group"] = LEGAL_STATUS_GROUPS[str(req.facts["legal_status"])]
    grant = req.grant
    if grant is not None and grant.decision == req.decision:
        when = req.decision_time or datetime.now(UTC)
        when = when.astimezone(UTC) if when.tzinfo else when  # naive: taken as UTC
        ctx["grant_remaining"] = grant.remaining
        ctx["grant_unexpired"] = grant.expires >= when.date()
    else:
        ctx["grant_remaining"] = 0
        ctx["grant_unexpired"] = False
    return CasbinRequests(req.decision, roles, area, ctx)


class ReferenceEvaluator:
    """Decides with pycasbin. Returns the effect, deciding rule id and matched role."""

    def __init__(self, policy: CouncilPolicy, decision: str | None = None) -> None:
        """``decision`` loads only that decision's p lines (same answers, faster scans)."""
        self._policy = policy
        self._defaults = defaults(policy)
        text = policy.policy_text
        if decision is not None:
            text = "\n".join(
                line
                for line in text.splitlines()
                if not line.startswith("p, ") or line.startswith(f"p, {decision}, ")
            )
        with tempfile.TemporaryDirectory() as tmp:
            model = Path(tmp) / "model.conf"
            csv = Path(tmp) / "policy.csv"
            model.write_text(policy.model_text, encoding="utf-8")
            csv.write_text(text, encoding="utf-8")
            self._enforcer: Any = casbin.Enforcer(str(model), str(csv), enable_log=False)
        # pycasbin logs every request with its context (denies at WARNING): keep it quiet
        self._enforcer.logger.setLevel(logging.CRITICAL)
        self._enforcer.add_function("cond", _cond)
        if not self._enforcer.enabled:  # a disabled enforcer allows everything
            raise RuntimeError("casbin enforcer is disabled")
        self._lock = threading.Lock()

    def enforce(
        self, decision: str, role: str, area: str, ctx: Mapping[str, FactValue]
    ) -> tuple[bool, list[str]]:
        """One Casbin request: (allowed, the deciding p line or [] when none matched)."""
        with self._lock:
            allowed, explain = self._enforcer.enforce_ex(decision, role, area, dict(ctx))
        return bool(allowed), list(explain)

    def decide(self, req: Request) -> tuple[bool, str, str]:
        """(allowed, rule id or "", matched role) for a whole request.

        One Casbin request per role; the deciding line is the one Casbin reaches first
        (the policy is held sorted by priority, so its position decides), and no match
        is a deny. The matched role is the first role (in id order) that reached it, ""
        for a line that binds anyone (role ``*``)."""
        asked = casbin_requests(self._policy, req, self._defaults)
        lines: list[list[str]] = self._enforcer.model["p"]["p"].policy
        best: tuple[int, bool, str, str] | None = None
        for role in asked.roles:
            allowed, explain = self.enforce(asked.decision, role, asked.area, asked.ctx)
            if not explain:
                continue
            matched = "" if explain[_ROLE] == "*" else role
            candidate = (lines.index(explain), allowed, explain[_RULE], matched)
            if best is None or candidate[0] < best[0]:
                best = candidate
        if best is None:
            return False, "", ""
        return best[1], best[2], best[3]
