"""The engine's memos change no answer: a request of a shape seen before gets exactly the
answer it would get computed afresh (but for its own decision id), whatever the order of
requests; an answer never crosses from one loaded policy to another, even under one
version string; and a refused request stays refused."""

from __future__ import annotations

import json
import random

import pytest
from remit.engine import memo
from remit.engine.evaluate import decide
from remit.model.errors import RequestError
from remit.model.policy import PolicySet, load_files
from remit.model.request import Actor, Request

from tests.support import GENERATED
from tests.support.boundaries import contexts


def _requests(policies: PolicySet, council: str, limit: int) -> list[Request]:
    policy = policies.councils[council]
    out: list[Request] = []
    for decision in policy.decisions.values():
        for ctx in contexts(policy, decision):
            facts = {
                f: v
                for f, v in ctx.items()
                if not policy.facts[f].derived and not f.startswith("actor_")
            }
            for role in policy.roles:
                out.append(Request(council, decision.id, Actor("w-1", (role,)), facts))
    random.Random(17).shuffle(out)
    return out[:limit]


def _fresh(policies: PolicySet, req: Request) -> object:
    memo.clear()
    try:
        return decide(policies, req).with_decision_id("")
    except RequestError as exc:
        return (type(exc), exc.field, exc.message)


def _warm(policies: PolicySet, req: Request) -> object:
    try:
        return decide(policies, req).with_decision_id("")
    except RequestError as exc:
        return (type(exc), exc.field, exc.message)


@pytest.mark.parametrize("council", ["torbay", "gloucestershire", "halton"])
def test_a_memoised_answer_is_the_answer_computed_afresh(policies: PolicySet, council: str) -> None:
    reqs = _requests(policies, council, 600)
    want = [_fresh(policies, r) for r in reqs]
    memo.clear()
    for _ in range(2):  # the second round is answered from the memos
        got = [_warm(policies, r) for r in reqs]
        assert got == want
    assert any(isinstance(w, tuple) for w in want) or council != "torbay"  # refusals too


def test_answers_carry_their_own_decision_ids(policies: PolicySet) -> None:
    req = _requests(policies, "torbay", 1)[0]
    ids = {decide(policies, req).decision_id for _ in range(50)}
    assert len(ids) == 50


def test_an_answer_never_crosses_to_another_policy_of_the_same_version() -> None:
    manifest = json.loads((GENERATED / "manifest.json").read_text(encoding="utf-8"))
    files = {rel: (GENERATED / rel).read_bytes() for rel in manifest["files"]}
    first = load_files(files, manifest)
    cited = None
    for req in _requests(first, "torbay", 2000):
        try:
            ans = decide(first, req)
        except RequestError:
            continue
        if ans.citation is not None and ans.rule:
            cited = (req, ans.rule)
            break
    assert cited is not None
    req, rule = cited
    table = json.loads(files["torbay/rules.json"])
    table["rules"][rule]["quote"] = "another quote"
    second = load_files({**files, "torbay/rules.json": json.dumps(table).encode()}, manifest)
    assert first.version == second.version
    for policies, quote in ((first, first.councils["torbay"].rules[rule].quote),
                            (second, "another quote")) * 2:  # fmt: skip
        ans = decide(policies, req)
        assert ans.citation is not None
        assert ans.citation.quote == quote
