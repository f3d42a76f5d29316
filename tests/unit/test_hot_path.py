"""What the hot-path optimisations rely on: ids checked at load, decision ids, precomputed
words. Answers themselves are guarded by the policy suites and the differential test."""

from __future__ import annotations

import json
import uuid

import pytest
from remit.engine.evaluate import new_decision_id
from remit.model.errors import PolicyError
from remit.model.policy import PolicySet, load_files
from remit.model.words import describe

from tests.support import GENERATED


def _files() -> tuple[dict[str, bytes], dict[str, object]]:
    manifest = json.loads((GENERATED / "manifest.json").read_text(encoding="utf-8"))
    files = {rel: (GENERATED / rel).read_bytes() for rel in manifest["files"]}
    return files, manifest


def test_decision_ids_are_random_version_4_uuids() -> None:
    ids = {new_decision_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert len(value) == 32
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_a_catalogue_id_outside_the_name_pattern_is_refused_at_load() -> None:
    # the engine checks request names against the catalogue first, so every catalogue id
    # must itself be a valid name
    files, manifest = _files()
    table = json.loads(files["kirklees/rules.json"])
    role = next(iter(table["roles"]))
    table["roles"][f"{role}\n"] = table["roles"][role]
    files["kirklees/rules.json"] = json.dumps(table).encode()
    with pytest.raises(PolicyError, match="not a valid name"):
        load_files(files, manifest)
    files, manifest = _files()
    manifest["councils"] = [*manifest["councils"], "Bad Council"]  # type: ignore[list-item]
    with pytest.raises(PolicyError, match="not a valid name"):
        load_files(files, manifest)


def test_precomputed_summaries_are_the_words_of_each_term(policies: PolicySet) -> None:
    checked = 0
    for policy in policies.councils.values():
        titles = {r: role.title for r, role in policy.roles.items()}
        for decision in policy.decisions.values():
            for line in decision.lines:
                words = [describe(policy.facts, titles.__getitem__, t) for t in line.cond]
                assert line.summary == "; ".join(words)
                checked += bool(line.cond)
    assert checked > 100


def test_fact_defaults_are_false_and_empty(policies: PolicySet) -> None:
    torbay = policies.councils["torbay"]
    assert torbay.fact_defaults["emergency"] is False
    assert torbay.fact_defaults["absent_roles"] == frozenset()
    assert "amount_pence" not in torbay.fact_defaults  # required when tested, never defaulted
    assert "grant_unexpired" not in torbay.fact_defaults  # derived, set per request
