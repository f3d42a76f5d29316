"""The benchmark's synthetic councils load through the verified path and decide like the
councils they copy (so scaling figures measure the real policies, renamed), each with texts
of its own (so no two councils share a quote, and de-duplication cannot flatter memory)."""

from __future__ import annotations

from pathlib import Path

from remit.engine.evaluate import decide
from remit.model.policy import PolicySet, load_dir
from remit.model.request import Actor, Request

from benchmarks._synthetic import bump_version, write_councils
from tests.support import GENERATED


def test_synthetic_councils_are_renamed_copies(tmp_path: Path, policies: PolicySet) -> None:
    names = write_councils(GENERATED, tmp_path, 7)
    copies = load_dir(tmp_path)  # verifies every file against the manifest hashes
    assert sorted(copies.councils) == sorted(names)
    assert len(names) == 7
    for name in names:
        real = name.rsplit("_", 1)[0]
        assert copies.councils[name].decisions.keys() == policies.councils[real].decisions.keys()
    facts = {"amount_pence": 150000, "cumulative_amount_pence": 150000}
    actor = Actor("tm-1", ("team_manager",))
    want = decide(policies, Request("torbay", "s17_payment", actor, facts))
    got = decide(copies, Request("torbay_0004", "s17_payment", actor, facts))
    assert (got.allowed, got.rule) == (want.allowed, want.rule)
    assert got.reason != want.reason  # the decision's wording is the copy's own
    assert got.reason.replace(" [torbay_0004]", "") == want.reason
    quotes = {name: {r.quote for r in copies.councils[name].rules.values()} for name in names}
    assert all(not quotes[a] & quotes[b] for a in names for b in names if a < b)
    bump_version(tmp_path, "next")
    assert load_dir(tmp_path).version == "next"
