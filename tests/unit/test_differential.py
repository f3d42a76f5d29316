"""The fast path and the Casbin reference evaluator agree: for every council, decision,
role, service area and condition boundary, the same effect and the same deciding rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from remit.engine.evaluate import Prepared, decide, first_match, prepare
from remit.model.conditions import FactValue
from remit.model.errors import RequestError
from remit.model.policy import CouncilPolicy, PolicySet
from remit.model.request import Actor, Grant, Request
from remit.tools.reference import ReferenceEvaluator

from tests.support.boundaries import contexts


def _councils() -> list[str]:
    from remit.model.policy import load_dir

    from tests.support import GENERATED

    return sorted(load_dir(GENERATED).councils)


@pytest.mark.slow
@pytest.mark.parametrize("council", _councils())
def test_fast_path_agrees_with_casbin(policies: PolicySet, council: str) -> None:
    policy = policies.councils[council]
    checked = 0
    for decision in policy.decisions.values():
        reference = ReferenceEvaluator(policy, decision.id)
        areas = [*sorted({line.area for line in decision.lines if line.area != "*"}), ""]
        for ctx in contexts(policy, decision):
            for area in areas:
                for role in policy.roles:
                    prep = Prepared(policy, decision, frozenset({role}), area, ctx)
                    line = first_match(prep)
                    fast = (False, "") if line is None else (line.effect == "allow", line.rule)
                    ref_allowed, ref_rule, _ = reference.decide(prep)
                    assert fast == (ref_allowed, ref_rule), (decision.id, role, area, ctx)
                    checked += 1
    assert checked > len(policy.decisions)


# -- whole requests: several roles, acting_for, areas, grants ----------------------------

_WHEN = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _grant(decision: str, ctx: dict[str, FactValue], k: int) -> Grant | None:
    """The grant a boundary context describes (remaining uses, expired or not)."""
    remaining = ctx.get("grant_remaining", 0)
    unexpired = bool(ctx.get("grant_unexpired", False))
    assert isinstance(remaining, int)
    if not remaining and not unexpired:
        # sometimes a grant for another decision: it must not count for this one
        return (
            Grant("some_other_decision", 3, _WHEN.date() + timedelta(days=5))
            if k % 5 == 0
            else None
        )
    days = 1 if unexpired else -1
    return Grant(decision, remaining, _WHEN.date() + timedelta(days=days))


def _actors(policy: CouncilPolicy, k: int, i: int, role: str) -> list[tuple[Actor, str]]:
    """Actors built around ``role``: with a second role, acting for another post, and
    placed in service areas (with and without a context area)."""
    roles = sorted(policy.roles)
    areas = sorted(policy.areas)
    other = roles[(i + 1 + k) % len(roles)]
    out = [
        (Actor("a-1", (role, other)), ""),
        (Actor("a-1", (role,), acting_for=(other,)), ""),
    ]
    if areas:
        mine = areas[(i + k) % len(areas)]
        there = areas[(i + 2 * k) % len(areas)]
        out += [
            (Actor("a-1", (role,), service_areas=(mine,)), ""),
            (Actor("a-1", (role, other), service_areas=(mine, there)), there),
            (Actor("a-1", (role,), service_areas=(mine,)), there),
        ]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("council", _councils())
def test_whole_requests_agree_with_casbin(policies: PolicySet, council: str) -> None:
    """decide() on whole requests (validation, area settling, acting_for, grants, several
    roles) gives the effect, rule and matched role that Casbin gives on the same input."""
    policy = policies.councils[council]
    checked = refused = 0
    for decision in policy.decisions.values():
        reference = ReferenceEvaluator(policy, decision.id)
        for k, ctx in enumerate(contexts(policy, decision)):
            facts = {
                f: v
                for f, v in ctx.items()
                if not policy.facts[f].derived
                and f not in ("actor_agency", "actor_registered_social_worker")
            }
            grant = _grant(decision.id, ctx, k)
            # one actor shape per (context, role), every other role: each shape and role
            # still meets many boundaries, and CI stays fast
            for i, role in enumerate(sorted(policy.roles)):
                if (i + k) % 2:
                    continue
                shapes = _actors(policy, k, i, role)
                for actor, area in (shapes[(i // 2 + k) % len(shapes)],):
                    req = Request(council, decision.id, actor, facts, area, grant, _WHEN)
                    try:
                        prep = prepare(policies, req)
                        got = decide(policies, req)
                    except RequestError:
                        refused += 1  # e.g. an area-limited decision the area cannot settle
                        continue
                    allowed, rule, role_matched = reference.decide(prep)
                    where = (decision.id, actor, area, grant, ctx)
                    assert (got.allowed, got.rule) == (allowed, rule), where
                    if allowed:
                        assert got.matched_role == role_matched, where
                    checked += 1
    assert checked > 5 * len(policy.decisions)
    assert refused < checked
