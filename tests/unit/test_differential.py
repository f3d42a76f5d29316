"""The engine and the Casbin reference evaluator agree: for every council, decision, role,
service area and condition boundary, the same effect and the same deciding rule.

The reference (pycasbin on the exported model.conf / policy.csv) is given the request as
the wire carries it (``remit.model.request.Request``) and derives roles, area and typed
context itself, so these tests check the engine's request handling as well as its walk."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from remit.engine.context import with_functions
from remit.engine.evaluate import Prepared, decide, effective_area, first_match
from remit.engine.trace import actor_of
from remit.model.conditions import FactValue
from remit.model.errors import RequestError
from remit.model.facts import ACTOR_FACTS
from remit.model.policy import CouncilPolicy, Decision, PolicySet
from remit.model.request import Actor, Grant, Request
from remit.tools.reference import ReferenceEvaluator, casbin_requests

from tests.support.boundaries import contexts


def _councils() -> list[str]:
    from remit.model.policy import load_dir

    from tests.support import GENERATED

    return sorted(load_dir(GENERATED).councils)


Boundary = tuple[Decision, int, str, str, dict[str, FactValue]]


def boundary_corpus(policy: CouncilPolicy, decision: Decision | None = None) -> Iterator[Boundary]:
    """Every boundary request of a council (or of one decision): (decision, k, role, area,
    ctx) for each boundary context ``k`` × every role × every area its lines name and ""."""
    for d in policy.decisions.values() if decision is None else (decision,):
        areas = [*sorted({line.area for line in d.lines if line.area != "*"}), ""]
        for k, ctx in enumerate(contexts(policy, d)):
            for area in areas:
                for role in policy.roles:
                    yield d, k, role, area, ctx


def engine_answer(policy: CouncilPolicy, b: Boundary) -> tuple[bool, str]:
    """The engine's (allowed, deciding rule id) on one boundary request."""
    decision, _, role, area, ctx = b
    actor = actor_of(policy, (role,))
    if not area and policy.roles[role].all_areas:  # the area an all-areas post acts in
        with contextlib.suppress(RequestError):  # unsettled: no area-limited line applies
            area = effective_area(policy, decision, _wire_request(policy, b), actor.all_roles)
    typed = dict(ctx)
    with_functions(policy, typed)
    prep = Prepared(policy, decision, actor.all_roles, area, typed, agrees=actor.agrees)
    line = first_match(prep)
    return (False, "") if line is None else (line.effect == "allow", line.rule)


_SENT: dict[str, dict[str, bool]] = {}  # council -> fact a caller sends: defaults when absent


def _wire_request(policy: CouncilPolicy, b: Boundary) -> Request:
    """A boundary request as a caller sends it: the actor in the area (if any), the facts
    it would carry (bools false and empty role sets sent on every other context, left out
    on the rest so the defaults are exercised), the actor's flags, and the grant the
    context's derived grant facts describe."""
    decision, k, role, area, ctx = b
    sent = _SENT.get(policy.council)
    if sent is None:
        sent = _SENT[policy.council] = {
            f: spec.defaults_when_absent
            for f, spec in policy.facts.items()
            if not spec.derived and f not in ACTOR_FACTS
        }
    facts = {f: v for f, v in ctx.items() if f in sent and (k % 2 == 0 or v or not sent[f])}
    actor = Actor(
        "a-1",
        (role,),
        service_areas=(area,) if area else (),
        agency=bool(ctx["actor_agency"]),
        registered_social_worker=bool(ctx["actor_registered_social_worker"]),
    )
    return Request(
        policy.council, decision.id, actor, facts, area, _grant(decision.id, ctx, k), _WHEN
    )


@pytest.mark.slow
@pytest.mark.parametrize("council", _councils())
def test_fast_path_agrees_with_casbin(policies: PolicySet, council: str) -> None:
    policy = policies.councils[council]
    checked = allowed = 0
    for decision in policy.decisions.values():
        reference = ReferenceEvaluator(policy, decision.id)
        for b in boundary_corpus(policy, decision):
            fast = engine_answer(policy, b)
            ref_allowed, ref_rule, _ = reference.decide(_wire_request(policy, b))
            assert fast == (ref_allowed, ref_rule), (decision.id, *b[2:])
            checked += 1
            allowed += fast[0]
    print(f"\n{council}: {checked} boundary requests agree with pycasbin ({allowed} allowed)")
    assert checked > len(policy.decisions)
    assert 0 < allowed < checked


def test_wire_requests_carry_the_boundary_context(policies: PolicySet) -> None:
    """The reference's own derivation gives back every boundary context from the request
    a caller would send for it (so the comparison above is on the same question)."""
    checked = 0
    for policy in policies.councils.values():
        for b in boundary_corpus(policy):
            if b[2] != next(iter(policy.roles)):
                continue  # the role does not change the context
            asked = casbin_requests(policy, _wire_request(policy, b))
            held = policy.roles[b[2]].holds
            assert (asked.decision, asked.roles, asked.area) == (
                b[0].id,
                tuple(sorted({b[2], *held})),
                b[3],
            )
            want = dict(b[4])
            with_functions(policy, want)  # the posts recorded carry their functions
            if b[2] in policy.line_posts:  # and the actor's own agreement is given
                want["concurring_roles"] = frozenset({*want["concurring_roles"], b[2]})  # type: ignore[misc]
            assert asked.ctx == want, (b[0].id, b[3], b[4])
            checked += 1
    assert checked > 1000


def test_reference_derives_area_roles_and_grant(policies: PolicySet) -> None:
    """The reference's derivation on hand-made requests (values from policies/README.md)."""
    policy = policies.councils["torbay"]
    when = datetime(2025, 3, 1, 0, 30, tzinfo=UTC)
    grant = Grant("s17_payment", 2, when.date())
    req = Request(
        "torbay",
        "s17_payment",
        Actor("a-1", ("social_worker",), acting_for=("team_manager", "social_worker")),
        {"legal_status": "V3", "amount_pence": 5},
        grant=grant,
        decision_time=when,
    )
    asked = casbin_requests(policy, req)
    assert asked.roles == ("social_worker", "team_manager")
    assert asked.area == ""
    assert asked.ctx["legal_status_group"] == "s20"
    assert asked.ctx["emergency"] is False and asked.ctx["absent_roles"] == frozenset()
    assert (asked.ctx["grant_remaining"], asked.ctx["grant_unexpired"]) == (2, True)
    # the grant's last day is a UTC date: 00:30 at +01:00 is still the day before
    late = datetime.fromisoformat("2025-03-02T00:30:00+01:00")
    assert casbin_requests(policy, replace(req, decision_time=late)).ctx["grant_unexpired"]
    after = datetime.fromisoformat("2025-03-02T00:30:00+00:00")
    assert not casbin_requests(policy, replace(req, decision_time=after)).ctx["grant_unexpired"]
    # a grant for another decision counts for nothing here
    other = casbin_requests(policy, replace(req, grant=Grant("write_off", 2, when.date())))
    assert (other.ctx["grant_remaining"], other.ctx["grant_unexpired"]) == (0, False)
    # areas: the context area where the actor works; elsewhere no area; else its one area
    area = sorted(policy.areas)[0]
    elsewhere = sorted(policy.areas)[1]
    tm = Actor("a-1", ("team_manager",), service_areas=(area,))
    assert casbin_requests(policy, replace(req, actor=tm)).area == area
    assert casbin_requests(policy, replace(req, actor=tm, service_area=area)).area == area
    assert casbin_requests(policy, replace(req, actor=tm, service_area=elsewhere)).area == ""
    two = Actor("a-1", ("team_manager",), service_areas=(area, elsewhere))
    assert casbin_requests(policy, replace(req, actor=two)).area == ""
    everywhere = [r for r, role in policy.roles.items() if role.all_areas]
    assert everywhere, "torbay has an all-areas post"
    wide = Actor("a-1", (everywhere[0],))
    assert (
        casbin_requests(policy, replace(req, actor=wide, service_area=elsewhere)).area == elsewhere
    )


def test_reference_logs_no_request(policies: PolicySet, caplog: pytest.LogCaptureFixture) -> None:
    """pycasbin logs each request with its context (a deny at WARNING); the reference
    keeps that off: requests carry facts about a child."""
    caplog.set_level(logging.DEBUG)
    reference = ReferenceEvaluator(policies.councils["torbay"], "s17_payment")
    req = Request(
        "torbay",
        "s17_payment",
        Actor("a-1", ("social_worker",)),
        {"amount_pence": 987654, "cumulative_amount_pence": 987654},
    )
    assert reference.decide(req) == (False, "", "")
    assert not [r for r in caplog.records if r.name.startswith("casbin")]
    assert "987654" not in caplog.text


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
    days = 0 if unexpired else -1  # its last day (inclusive), or the day before
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
                        got = decide(policies, req)
                    except RequestError:
                        refused += 1  # e.g. an area-limited decision the area cannot settle
                        continue
                    allowed, rule, role_matched = reference.decide(req)
                    where = (decision.id, actor, area, grant, ctx)
                    assert (got.allowed, got.rule) == (allowed, rule), where
                    if allowed:
                        assert got.matched_role == role_matched, where
                    checked += 1
    print(f"\n{council}: {checked} whole requests agree with pycasbin ({refused} refused)")
    assert checked > 5 * len(policy.decisions)
    assert refused < checked


def test_grant_expiry_is_a_utc_date(policies: PolicySet) -> None:
    """00:30 at +01:00 on 2 March is 23:30 UTC on 1 March: a grant whose last day is
    1 March still holds. Found by the reference, which derives it on its own."""
    policy = policies.councils["gloucestershire"]
    req = Request(
        "gloucestershire",
        "sign_off_assessment",
        Actor("a-1", ("advanced_practitioner",)),
        grant=Grant("sign_off_assessment", 2, datetime(2025, 3, 1).date()),
        decision_time=datetime.fromisoformat("2025-03-02T00:30:00+01:00"),
    )
    reference = ReferenceEvaluator(policy, "sign_off_assessment")
    assert reference.decide(req)[:2] == (True, "4.2-ap-sign-off-development")
    got = decide(policies, req)
    assert (got.allowed, got.rule) == (True, "4.2-ap-sign-off-development")
