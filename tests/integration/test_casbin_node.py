"""A second, independent Casbin: node-casbin (npm ``casbin``) on the exported files.

For every council, every boundary request (the corpus of ``test_fast_path_agrees_with_casbin``:
boundary contexts × every role × every area incl. "") goes through one node process
(``tests/casbin_node/check.mjs``: the council's model.conf and policy.csv, and a JS port of
the condition grammar as the matcher function ``cond``); its effect and deciding rule id
must be the engine's on every one. Nothing of remit's Python decides on the node side.
The full corpus runs with one enforcer per decision; a sample also runs on the whole file
with one enforcer, as a security team would (slow: node-casbin scans every line).

Skips when node or the pinned package is missing (``scripts/test`` installs it into
``.tools/``, beside buf).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from remit.model.conditions import FactValue
from remit.model.policy import CouncilPolicy, Decision, PolicySet
from remit.tools.reference import casbin_requests

from tests.conftest import ROOT
from tests.unit.test_differential import _councils, _wire_request, boundary_corpus, engine_answer

CASBIN_VERSION = "5.51.1"  # the version scripts/test installs
PREFIX = ROOT / ".tools"
SCRIPT = ROOT / "tests" / "casbin_node" / "check.mjs"
NODE = shutil.which("node")


def _installed() -> str | None:
    try:
        meta = json.loads((PREFIX / "node_modules" / "casbin" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return str(meta.get("version"))


pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed (node-casbin cross-check)"),
    pytest.mark.skipif(
        NODE is not None and _installed() != CASBIN_VERSION,
        reason=f"npm casbin@{CASBIN_VERSION} is not in .tools/ (scripts/test installs it; "
        f"found {_installed() or 'none'})",
    ),
]


def _json(ctx: dict[str, FactValue]) -> dict[str, Any]:
    return {f: sorted(v) if isinstance(v, frozenset) else v for f, v in ctx.items()}


def run_node(
    policy: CouncilPolicy, requests: list[dict[str, Any]], tmp: Path, *, per_decision: bool
) -> list[Any]:
    """One node process for the council: every request in on stdin, one answer each out.

    The model and policy are written from the texts remit loaded (the ones pycasbin gets),
    not read from a fixed path under policies/generated/. ``per_decision``: one enforcer
    per decision (its p lines and every g line), see check.mjs."""
    model, csv = tmp / "model.conf", tmp / "policy.csv"
    model.write_text(policy.model_text, encoding="utf-8")
    csv.write_text(policy.policy_text, encoding="utf-8")
    assert NODE is not None
    flags = ["--per-decision"] if per_decision else []
    done = subprocess.run(
        [NODE, str(SCRIPT), "--prefix", str(PREFIX), *flags, str(model), str(csv)],
        input="".join(json.dumps(r) + "\n" for r in requests),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == len(requests), done.stderr
    assert [a["id"] for a in answers] == [r["id"] for r in requests]
    return answers


def _first(policy: CouncilPolicy, decision: Decision, got: list[Any]) -> Any:
    """Of one request's per-role answers, the one whose deciding line Casbin reaches first
    (priority, then file order), as the reference combines them; a deny when none matched."""
    order = {line.rule: k for k, line in reversed(list(enumerate(decision.lines)))}
    matched = [a for a in got if "error" in a or a["rule"]]
    if not matched:
        return got[0]
    errors = [a for a in matched if "error" in a]
    if errors:
        return errors[0]
    return min(matched, key=lambda a: order[a["rule"]])


def _check_council(policy: CouncilPolicy, tmp: Path, *, per_decision: bool, every: int) -> None:
    """Every ``every``-th boundary request of the council through node: effect and rule
    must be the engine's on each; prints the count."""
    corpus = list(boundary_corpus(policy))[::every]
    # each boundary as Casbin is asked it (the reference's documented derivation from the
    # wire request: held functions as roles, the recorded sets widened, the actor's own
    # agreement, an all-areas post's one area): one node row per Casbin role
    requests: list[dict[str, Any]] = []
    rows: list[list[int]] = []
    for b in corpus:
        asked = casbin_requests(policy, _wire_request(policy, b))
        rows.append([])
        for role in asked.roles:
            rows[-1].append(len(requests))
            requests.append(
                {
                    "id": len(requests),
                    "decision": asked.decision,
                    "role": role,
                    "area": asked.area,
                    "ctx": _json(dict(asked.ctx)),
                }
            )
    answers = run_node(policy, requests, tmp, per_decision=per_decision)
    disagree = []
    allowed = 0
    for b, ids in zip(corpus, rows, strict=True):
        got = _first(policy, b[0], [answers[i] for i in ids])
        req = requests[ids[0]]
        want_allowed, want_rule = engine_answer(policy, b)
        allowed += want_allowed
        if "error" in got or (got["effect"] == "allow", got["rule"]) != (want_allowed, want_rule):
            disagree.append((req, got, ("allow" if want_allowed else "deny", want_rule)))
    agreeing = len(corpus) - len(disagree)
    how = "per decision" if per_decision else "whole file"
    print(
        f"\n{policy.council}: node-casbin ({how}) agrees with the engine on {agreeing} of "
        f"{len(corpus)} boundary requests ({allowed} allowed)"
    )
    assert not disagree, disagree[:5]
    assert len(corpus) > len(policy.decisions)
    assert 0 < allowed < len(corpus)  # both effects occur, so agreement means something


@pytest.mark.parametrize("council", _councils())
def test_node_casbin_agrees_on_every_boundary_request(
    policies: PolicySet, council: str, tmp_path: Path
) -> None:
    """All of them (66,856 today), with one enforcer per decision."""
    _check_council(policies.councils[council], tmp_path, per_decision=True, every=1)


@pytest.mark.slow
@pytest.mark.parametrize("council", _councils())
def test_node_casbin_agrees_on_the_whole_files(
    policies: PolicySet, council: str, tmp_path: Path
) -> None:
    """As a security team would run it, one enforcer on the whole policy.csv (every line
    scanned per request, ~2 ms each on Torbay): every 9th boundary request."""
    _check_council(policies.councils[council], tmp_path, per_decision=False, every=9)


@pytest.mark.parametrize("per_decision", [False, True])
def test_node_cond_fails_closed(policies: PolicySet, tmp_path: Path, per_decision: bool) -> None:
    """A request the condition cannot be evaluated on is an error, never an allow; a
    well-formed one is answered (the same process goes on after an error)."""
    policy = policies.councils["torbay"]
    ok = {"amount_pence": 100, "cumulative_amount_pence": 100, "emergency": False}
    requests: list[dict[str, Any]] = [
        {"id": 0, "decision": "s17_payment", "role": "team_manager", "area": "", "ctx": {}},
        {  # a money fact sent as text
            "id": 1,
            "decision": "s17_payment",
            "role": "team_manager",
            "area": "",
            "ctx": {**ok, "amount_pence": "100"},
        },
        {  # a role set that is not a list
            "id": 2,
            "decision": "write_off",
            "role": "director",
            "area": "",
            "ctx": {"amount_pence": 300000, "concurring_roles": "head_of_finance"},
        },
        {"id": 3, "decision": "s17_payment", "role": "team_manager", "area": "", "ctx": "x"},
        {"id": 4, "decision": "s17_payment", "role": "team_manager", "area": "", "ctx": ok},
        {  # the Director with the Head of Finance's agreement (Torbay 2.5)
            "id": 5,
            "decision": "write_off",
            "role": "director",
            "area": "",
            "ctx": {"amount_pence": 300000, "concurring_roles": ["head_of_finance"]},
        },
    ]
    answers = run_node(policy, requests, tmp_path, per_decision=per_decision)
    assert [("error" in a) for a in answers] == [True, True, True, True, False, False]
    assert "amount_pence" in answers[0]["error"]
    assert (answers[4]["effect"], answers[4]["rule"]) == ("allow", "2.4-tm")
    assert (answers[5]["effect"], answers[5]["rule"]) == ("allow", "2.5-director")
