"""Every YAML policy test case runs as its own pytest test; coverage gaps fail too."""

from __future__ import annotations

from typing import Any

import pytest
from remit.model.policy import PolicySet
from remit.tools import suites as _testing

from tests.support import ROOT

TESTS = ROOT / "policies" / "tests"
CASES = list(_testing.iter_cases(TESTS))


@pytest.mark.parametrize(
    ("council", "case", "fixtures"),
    [pytest.param(c, case, fx, id=f"{suite}:{line}") for c, suite, line, case, fx in CASES],
)
def test_policy_case(
    policies: PolicySet, council: str, case: dict[str, Any], fixtures: dict[str, Any]
) -> None:
    problems, _ = _testing.run_case(policies, council, case, fixtures)
    assert not problems, f"{case.get('name')}: {'; '.join(problems)}"


def test_every_decision_has_an_allow_and_a_deny_case(policies: PolicySet) -> None:
    report = _testing.run(policies, TESTS)
    gaps = [r.message for r in report.results if r.suite.endswith("(coverage)")]
    assert not gaps, "\n".join(gaps)


def test_a_case_without_expectation_fails(policies: PolicySet) -> None:
    problems, _ = _testing.run_case(
        policies,
        "torbay",
        {"name": "x", "decision": "apply_epo", "actor": {"id": "a", "roles": ["team_manager"]}},
        {"actors": {}, "cases": {}},
    )
    assert problems == ["case has no expectation (expect: with effect or error)"]


def test_a_wrong_expectation_fails(policies: PolicySet) -> None:
    problems, _ = _testing.run_case(
        policies,
        "torbay",
        {
            "decision": "apply_epo",
            "actor": {"id": "a", "roles": ["team_manager"]},
            "expect": {"effect": "allow"},
        },
        {"actors": {}, "cases": {}},
    )
    assert problems and problems[0].startswith("expected allow, got deny")
