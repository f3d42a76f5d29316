"""The compiler: every problem reported at once with file and line; output reproducible."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from remit.compiler import build as _compiler
from remit.model.errors import CompileError

from tests.support import ROOT

SCHEMES = ROOT / "policies" / "schemes"
SOURCES = ROOT / "policies" / "sources"
GENERATED = ROOT / "policies" / "generated"


def test_committed_generated_policy_is_what_the_compiler_produces() -> None:
    files = _compiler.compile_all(SCHEMES, SOURCES)
    assert _compiler.stale(files, GENERATED) == [], (
        "run `remit compile` and commit policies/generated"
    )


def test_compile_is_deterministic() -> None:
    assert _compiler.compile_all(SCHEMES, SOURCES) == _compiler.compile_all(SCHEMES, SOURCES)


def test_policy_lines_carry_rule_ids_and_no_commas_in_values() -> None:
    text = (GENERATED / "torbay" / "policy.csv").read_text()
    p_lines = [line for line in text.splitlines() if line.startswith("p, ")]
    assert p_lines
    for line in p_lines:
        assert len(line.split(", ")) == 8, line
    assert (
        "p, apply_epo, team_manager, *, exceptional_circumstances==true, allow, 30, 6.7-tm-exceptional"
        in p_lines
    )


BAD = """\
document:
  council: bad
  name: Bad Council
  title: A scheme with mistakes
  effective: "2020-01-01"
  seed: 001_785836d2d9e70f31.txt
roles:
  - id: team_manager
    titles: [Team Manager]
    reports_to: nobody_here
decisions:
  - id: apply_epo
    section: "6.7"
    wording: Decision to apply for an EPO
    quote: "this sentence is not in the document"
    rules:
      - id: r1
        who: [wizard]
        when: {amount_pence: {max: "lots"}}
      - id: r1
        who: [team_manager]
        when: {moon_phase: full, exceptional_circumstances: {max: 3}}
"""


def _scratch(tmp_path: Path, text: str, name: str = "bad") -> Path:
    schemes = tmp_path / "schemes"
    schemes.mkdir()
    (schemes / f"{name}.yaml").write_text(text)
    return schemes


def test_schema_errors_are_all_reported_with_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(CompileError) as info:
        _compiler.compile_all(_scratch(tmp_path, BAD), SOURCES)
    problems = info.value.problems
    # schema errors come first and stop the semantic pass: here the "lots" amount
    assert any(p.line == 19 and "schema" in p.message for p in problems), problems
    assert all(p.file == "policies/schemes/bad.yaml" for p in problems)


def test_semantic_errors_are_all_reported_with_lines(tmp_path: Path) -> None:
    text = BAD.replace('{max: "lots"}', "{max: 100}")
    with pytest.raises(CompileError) as info:
        _compiler.compile_all(_scratch(tmp_path, text), SOURCES)
    got = {(p.line, p.message.split(" (")[0]) for p in info.value.problems}
    assert (10, "unknown role 'nobody_here'") in got
    assert (15, "quote not found in the source document") in got
    assert (18, "unknown role 'wizard'") in got
    assert (20, "duplicate rule id 'r1'") in got
    assert (22, "unknown fact 'moon_phase'") in got
    assert any(line == 22 and "does not apply to bool" in msg for line, msg in got)
    assert len(info.value.problems) >= 6


def test_duplicate_yaml_keys_are_reported(tmp_path: Path) -> None:
    text = BAD.replace("  name: Bad Council\n", "  name: Bad Council\n  name: Twice\n")
    with pytest.raises(CompileError) as info:
        _compiler.compile_all(_scratch(tmp_path, text), SOURCES)
    assert any("duplicate key 'name'" in p.message and p.line == 4 for p in info.value.problems)


def test_council_must_match_file_name(tmp_path: Path) -> None:
    text = (SCHEMES / "torbay.yaml").read_text()
    schemes = _scratch(tmp_path, text, name="elsewhere")
    with pytest.raises(CompileError) as info:
        _compiler.compile_all(schemes, SOURCES)
    assert any("must match the file name" in p.message for p in info.value.problems)


def test_parts_are_merged_and_located(tmp_path: Path) -> None:
    schemes = tmp_path / "schemes"
    shutil.copytree(SCHEMES, schemes)
    part_dir = schemes / "torbay.d"
    part_dir.mkdir(exist_ok=True)
    (part_dir / "99_broken.yaml").write_text(
        "decisions:\n  - id: zz\n    section: '1'\n    wording: w\n    quote: q not there at all\n"
        "    rules:\n      - {id: zz1, who: [nobody]}\n"
    )
    with pytest.raises(CompileError) as info:
        _compiler.compile_all(schemes, SOURCES)
    mine = [p for p in info.value.problems if p.file.endswith("99_broken.yaml")]
    assert {(p.line, p.message) for p in mine} >= {
        (5, "quote not found in the source document (use ... to join fragments)"),
        (7, "unknown role 'nobody'"),
    }


def test_quote_matching_folds_case_space_and_markup() -> None:
    src = _compiler.normalise_text(
        "**Deviation**  should only be agreed by the <b>Assistant</b>\nDirector"
    )
    assert _compiler.quote_found("deviation should only be agreed by the assistant director", src)
    assert _compiler.quote_found("Deviation ... Director", src)
    assert not _compiler.quote_found("Director ... Deviation", src)


NOTIFY_BAD = """\
notifications:
  - id: n1
    section: App1 X
    wording: w
    quote: "this row is not in Appendix 1"
    audience: [wizard, {party: Somebody Outside}]
    by: [team_manager]
    timescale: immediately
    when: {moon_phase: true}
  - id: n1
    section: App1 X
    wording: w
    quote: "Media enquiries Same day HOS / TM"
    audience: [director]
    by: [team_manager]
    timescale: next_tuesday
"""


def test_notification_errors_are_reported_with_lines(tmp_path: Path) -> None:
    schemes = tmp_path / "schemes"
    shutil.copytree(SCHEMES, schemes)
    (schemes / "torbay.d" / "99_notify.yaml").write_text(NOTIFY_BAD)
    with pytest.raises(CompileError) as info:
        _compiler.compile_all(schemes, SOURCES)
    mine = [p for p in info.value.problems if p.file.endswith("99_notify.yaml")]
    # the schema refuses an unknown timescale first
    assert any(p.line == 16 and "schema" in p.message for p in mine), mine
    (schemes / "torbay.d" / "99_notify.yaml").write_text(
        NOTIFY_BAD.replace("next_tuesday", "same_day")
    )
    with pytest.raises(CompileError) as info:
        _compiler.compile_all(schemes, SOURCES)
    got = {
        (p.line, p.message.split(" (")[0])
        for p in info.value.problems
        if p.file.endswith("99_notify.yaml")
    }
    assert (5, "quote not found in the source document") in got
    assert (6, "unknown role 'wizard'") in got
    assert (9, "unknown fact 'moon_phase'") in got
    assert (10, "duplicate notification 'n1'") in got


def test_decision_may_only_imply_a_known_notification(tmp_path: Path) -> None:
    schemes = tmp_path / "schemes"
    shutil.copytree(SCHEMES, schemes)
    part = schemes / "torbay.d" / "20_practice.yaml"
    part.write_text(part.read_text().replace("implies: [a1_missing_72h]", "implies: [a1_nope]"))
    with pytest.raises(CompileError) as info:
        _compiler.compile_all(schemes, SOURCES)
    assert any("unknown notification 'a1_nope'" in p.message for p in info.value.problems)


def test_schema_timescales_are_the_ones_due_times_understand() -> None:
    import json

    from remit.engine import due as _due

    schema = json.loads((ROOT / "service/remit/compiler/schema/scheme.schema.json").read_text())
    assert schema["$defs"]["timescale"]["pattern"] == _due.PATTERN


def test_has_all_requires_every_named_post(tmp_path: Path) -> None:
    text = (
        (SCHEMES / "torbay.yaml")
        .read_text()
        .replace(
            "concurring_roles: {has: head_of_finance}",
            "concurring_roles: {has_all: [head_of_finance, assistant_director]}",
        )
    )
    schemes = _scratch(tmp_path, text, name="torbay")
    files = _compiler.compile_all(schemes, SOURCES)
    policy = files["torbay/policy.csv"].decode()
    assert (
        "amount_pence>100000 & amount_pence<=500000 & concurring_roles has head_of_finance"
        " & concurring_roles has assistant_director, allow, 30, 2.5-director"
    ) in policy
    bad = text.replace(
        "{has_all: [head_of_finance, assistant_director]}", "{has_all: [head_of_finance, wizard]}"
    )
    (schemes / "torbay.yaml").write_text(bad)
    with pytest.raises(CompileError, match="unknown role 'wizard'"):
        _compiler.compile_all(schemes, SOURCES)


def test_the_compiler_checks_its_own_table_and_reports_a_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table that fails the rules.json schema is never written: a CompileError naming
    the scheme, not a file a replica would refuse later."""
    from jsonschema import Draft202012Validator

    schemes = _scratch(tmp_path, (SCHEMES / "kirklees.yaml").read_text(), name="kirklees")
    assert set(_compiler.compile_all(schemes, SOURCES)) == {
        "kirklees/rules.json",
        "kirklees/policy.csv",
        "model.conf",
        "manifest.json",
    }
    strict = Draft202012Validator({"properties": {"edges": {"maxItems": 0}}})
    monkeypatch.setattr(_compiler, "_RULES_VALIDATOR", strict)
    with pytest.raises(CompileError) as info:
        _compiler.compile_all(schemes, SOURCES)
    (problem,) = info.value.problems
    assert problem.file == "policies/schemes/kirklees.yaml"
    assert "compiler fault: kirklees/rules.json fails its schema at /edges" in problem.message


def test_the_table_holds_lines_in_priority_order_with_parsed_terms() -> None:
    import json

    table = json.loads((GENERATED / "torbay" / "rules.json").read_text())
    epo = next(d for d in table["decisions"] if d["id"] == "apply_epo")
    assert [ln["priority"] for ln in epo["lines"]] == sorted(ln["priority"] for ln in epo["lines"])
    tm = next(ln for ln in epo["lines"] if ln["rule"] == "6.7-tm-exceptional")
    assert tm["condition"] == {
        "text": "exceptional_circumstances==true",
        "terms": [{"fact": "exceptional_circumstances", "op": "==", "value": True}],
    }
    assert table["roles"]["team_manager"]["inherited_by"] == [
        "assistant_director",
        "director",
        "head_of_service",
    ]
