"""The fast path and the Casbin reference evaluator agree: for every council, decision,
role, service area and condition boundary, the same effect and the same deciding rule."""

from __future__ import annotations

import pytest
from remit._boundaries import contexts
from remit._engine import Prepared, first_match
from remit._policy import PolicySet
from remit._reference import ReferenceEvaluator


def _councils() -> list[str]:
    from remit._policy import load_dir

    from tests.conftest import GENERATED

    return sorted(load_dir(GENERATED).councils)


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
