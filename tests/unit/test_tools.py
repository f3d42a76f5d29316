"""Scheme owners' tools on the real seed schemes: ``remit lint``, ``remit test --junit``,
``remit diff`` (real edits of the schemes, git revisions, bundles) and ``remit matrix``
(checked against the engine; its rendering in headless Chromium is in
tests/integration/test_matrix_browser.py)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from remit.cli.main import main
from remit.engine.evaluate import decide
from remit.model.policy import PolicySet
from remit.model.request import Actor, Request
from remit.tools import matrix as _matrix

from tests.support import ROOT

Edit = Callable[[str, str, str], int]


@pytest.fixture
def schemes(tmp_path: Path) -> tuple[Path, Edit]:
    """A scratch copy of policies/schemes and sources, and an editor returning the 1-based
    line of the replacement."""
    shutil.copytree(ROOT / "policies" / "schemes", tmp_path / "schemes")
    shutil.copytree(ROOT / "policies" / "sources", tmp_path / "sources")

    def edit(rel: str, old: str, new: str) -> int:
        path = tmp_path / "schemes" / rel
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} must occur once in {rel}"
        path.write_text(text.replace(old, new), encoding="utf-8")
        return text[: text.index(old)].count("\n") + 1

    return tmp_path / "schemes", edit


def _lint(schemes: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(
        ["lint", "--schemes", str(schemes), "--sources", str(schemes.parent / "sources"), *extra]
    )
    out = capsys.readouterr()
    return code, out.out + out.err


# -- lint -----------------------------------------------------------------------------------


def test_lint_real_schemes_have_no_errors_and_name_file_and_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = _lint(ROOT / "policies" / "schemes", capsys)
    assert code == 0, out
    assert re.search(r"remit lint: 0 error\(s\), \d+ warning\(s\)", out)
    # Halton 3.4's deputy is keyed to the ADM for Fostering, the post the row names (the
    # AD's post holds it): the [deputy] warning it once drew is gone
    assert "[deputy] fostering_limit_exemption" not in out
    assert "policies/schemes/torbay.d/" in out  # parts are named as their own files
    strict, _ = _lint(ROOT / "policies" / "schemes", capsys, "--strict")
    assert strict == 5


def _when_line(text_before: int, schemes: Path, rel: str) -> int:
    """The line of the first ``when:`` at or after ``text_before``."""
    lines = (schemes / rel).read_text(encoding="utf-8").splitlines()
    return next(i for i in range(text_before, len(lines) + 1) if "when" in lines[i - 1])


def test_lint_tier_gap(schemes: tuple[Path, Edit], capsys: pytest.CaptureFixture[str]) -> None:
    path, edit = schemes
    line = edit(
        "torbay.yaml",
        "amount_pence: {above: 100000, max: 500000}",
        "amount_pence: {above: 100100, max: 500000}",
    )
    code, out = _lint(path, capsys, "--quiet")
    assert code == 5
    want = f"policies/schemes/torbay.yaml:{_when_line(line - 2, path, 'torbay.yaml')}: error: "
    assert (
        want + "[tier-gap] write_off: no rule covers the amount from £1,000.01 to £1,001.00" in out
    )


def test_lint_tier_overlap(schemes: tuple[Path, Edit], capsys: pytest.CaptureFixture[str]) -> None:
    path, edit = schemes
    edit(
        "torbay.yaml",
        "amount_pence: {above: 100000, max: 500000}",
        "amount_pence: {min: 100000, max: 500000}",
    )
    code, out = _lint(path, capsys, "--quiet")
    assert code == 5
    assert "[tier-overlap] write_off: £1,000.00 (the amount) is in two tiers: rule 2.5-ad" in out


def test_lint_unreachable_and_unsatisfiable(
    schemes: tuple[Path, Edit], capsys: pytest.CaptureFixture[str]
) -> None:
    path, edit = schemes
    # the AD inherits the Head of Service's unconditional 6.8 permission: the row is dead
    edit(
        "torbay.yaml",
        '      - id: "6.8-tm-exceptional"\n        who: [team_manager]',
        '      - id: "6.8-tm-exceptional"\n        who: [assistant_director]',
    )
    edit(
        "torbay.yaml",
        "when: {amount_pence: {max: 100000}}",
        "when: {amount_pence: {max: 100000, above: 200000}}",
    )
    code, out = _lint(path, capsys, "--quiet")
    assert code == 5
    assert (
        "[unreachable] instigate_care_proceedings: rule 6.8-tm-exceptional can never decide: "
        "rule 6.8-hos (allow) always decides first" in out
    )
    assert "[unsatisfiable] write_off: rule 2.5-ad can never decide" in out


def test_lint_decision_without_allow_path(
    schemes: tuple[Path, Edit], capsys: pytest.CaptureFixture[str]
) -> None:
    path, edit = schemes
    edit(
        "torbay.yaml",
        '    rules:\n      - id: "6.7-hos"',
        '    rules:\n      - {id: "6.7-nobody", effect: deny, who: anyone}\n      - id: "6.7-hos"',
    )
    code, out = _lint(path, capsys, "--quiet")
    assert code == 5
    assert "[no-allow-path] apply_epo (6.7): no post can ever be allowed to take it" in out
    assert "rule 6.7-hos can never decide: rule 6.7-nobody (deny) always decides first" in out


def test_lint_unused_role_and_deputy(
    schemes: tuple[Path, Edit], capsys: pytest.CaptureFixture[str]
) -> None:
    path, edit = schemes
    line = edit(
        "torbay.yaml",
        "  - id: head_of_finance\n",
        "  - id: spare_post\n    titles: [Spare Post]\n  - id: head_of_finance\n",
    )
    edit(
        "torbay.yaml",
        "when: {exceptional_circumstances: true}\n\n  - id: instigate",
        "when: {exceptional_circumstances: true, absent_roles: {has: secure_panel}}\n\n"
        "  - id: instigate",
    )
    code, out = _lint(path, capsys)
    assert code == 0  # warnings only
    assert (
        f"policies/schemes/torbay.yaml:{line}: warning: [unused-role] role spare_post (Spare Post)"
        in out
    )
    assert "[deputy] apply_epo: rule 6.7-tm-exceptional deputises for the Secure Panel" in out


def test_lint_exit_code_for_compile_errors(
    schemes: tuple[Path, Edit], capsys: pytest.CaptureFixture[str]
) -> None:
    path, edit = schemes
    edit(
        "torbay.yaml",
        "when: {exceptional_circumstances: true}\n\n  - id: instigate",
        "when: {exceptional_circumstances: true, absent_roles: {has: no_such_post}}\n\n"
        "  - id: instigate",
    )
    code, out = _lint(path, capsys)
    assert code == 3
    assert re.search(r"policies/schemes/torbay\.yaml:\d+: unknown role 'no_such_post'", out)


# -- remit test --junit ---------------------------------------------------------------------


def test_remit_test_junit_and_summary_per_council(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = tmp_path / "tests"
    shutil.copytree(ROOT / "policies" / "tests" / "kirklees", tests / "kirklees")
    shutil.copytree(ROOT / "policies" / "tests" / "ap_scheme", tests / "ap_scheme")
    suite = next((tests / "kirklees").glob("*_test.yaml"))
    text = suite.read_text(encoding="utf-8")
    flipped = text.replace("effect: allow", "effect: deny", 1)
    assert flipped != text
    suite.write_text(flipped, encoding="utf-8")
    junit = tmp_path / "junit.xml"
    code = main(
        [
            "test",
            "--tests",
            str(tests),
            "--council",
            "kirklees",
            "--council",
            "ap_scheme",
            "--junit",
            str(junit),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"^kirklees: \d+ passed, 1 failed$", out, re.M)
    assert re.search(r"^ap_scheme: \d+ passed, 0 failed$", out, re.M)
    root = ET.parse(junit).getroot()
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"kirklees", "ap_scheme"}
    assert suites["kirklees"].get("failures") == "1"
    failures = [c for c in suites["kirklees"].iter("testcase") if c.find("failure") is not None]
    assert len(failures) == 1
    assert "expected deny, got allow" in (failures[0].find("failure").text or "")  # type: ignore[union-attr]
    assert int(root.get("tests", "0")) == sum(int(s.get("tests", "0")) for s in suites.values())


# -- diff -----------------------------------------------------------------------------------


def _diff(old: str, new: str, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert main(["diff", old, new, *extra]) == 0
    return capsys.readouterr().out


def test_diff_raised_ceiling_removed_deputy_and_obligation(
    schemes: tuple[Path, Edit], capsys: pytest.CaptureFixture[str]
) -> None:
    path, edit = schemes
    edit(
        "torbay.yaml",
        "          amount_pence: {max: 200000}\n          cumulative_amount_pence: {max: 200000}",
        "          amount_pence: {max: 300000}\n          cumulative_amount_pence: {max: 250000}",
    )
    edit(
        "torbay.yaml",
        "        obligations:\n          - kind: consult\n            party: finance officer\n"
        "            text: Head of Service with finance officer\n",
        "",
    )
    halton = (path / "halton.yaml").read_text(encoding="utf-8")
    start = halton.index('      - id: "3.4-hos-sqa-absence"')
    end = halton.index("  - id: long_term_fostering_match")
    (path / "halton.yaml").write_text(halton[:start] + "\n" + halton[end:], encoding="utf-8")
    out = _diff(str(ROOT / "policies" / "schemes"), str(path), capsys)
    assert "# Schedule of changes: Torbay Council" in out
    assert "## 2.4 — s.17 payment (one-off or cumulative expenditure)" in out
    assert (
        "- **Ceiling raised**: Team Manager — the amount: up to £2,000.00 → up to £3,000.00 (2.4)"
        in out
    )
    assert "the cumulative amount: up to £2,000.00 → up to £2,500.00" in out
    assert (
        "- **Obligation removed**: Head of Service — consult (finance officer): "
        "Head of Service with finance officer" in out
    )
    assert "# Schedule of changes: Halton Borough Council" in out
    assert (
        "- **Deputy removed**: Head of Service for Safeguarding and QA no longer deputises for "
        "the Agency Decision Maker for Fostering" in out
    )
    assert "Unchanged: " in out and "Kirklees Council" in out
    # and back again: the opposite schedule
    back = _diff(
        str(path / "halton.yaml"), str(ROOT / "policies" / "schemes" / "halton.yaml"), capsys
    )
    assert (
        "- **Deputy added**: Head of Service for Safeguarding and QA deputises for the Agency "
        "Decision Maker for Fostering" in back
    )
    assert "Torbay" not in back


def test_diff_authority_gained_lowered_ceiling_and_prohibition(
    schemes: tuple[Path, Edit], capsys: pytest.CaptureFixture[str]
) -> None:
    path, edit = schemes
    edit("torbay.yaml", "when: {amount_pence: {max: 100000}}", "when: {amount_pence: {max: 50000}}")
    edit(
        "torbay.yaml",
        '      - id: "6.8-hos"\n        who: [head_of_service]',
        '      - id: "6.8-hos"\n        who: [head_of_service, sw_consultant]',
    )
    edit(
        "torbay.yaml",
        "        decided_outside: the Elected Mayor, on a joint report from the Director and the"
        " Head of Finance\n",
        "        decided_outside: the Elected Mayor, on a joint report from the Director and the"
        ' Head of Finance\n      - {id: "2.5-no-tm", effect: deny, who: [team_manager]}\n',
    )
    out = _diff(
        str(ROOT / "policies" / "schemes" / "torbay.yaml"), str(path / "torbay.yaml"), capsys
    )
    assert (
        "- **Ceiling lowered**: Assistant Director — the amount: up to £1,000.00 → up to £500.00"
        in out
    )
    assert "- **Authority gained**: SW Consultant may now decide (6.8)" in out
    assert "- **Prohibition added**: Team Manager may not decide (2.5" in out


@pytest.mark.slow
def test_diff_git_revisions_and_bundles(capsys: pytest.CaptureFixture[str]) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = _diff("HEAD", str(ROOT / "policies" / "schemes"), capsys, "--council", "torbay")
    # the working tree may hold uncommitted scheme edits; the schedule is still well formed
    assert out.startswith("# Schedule of changes: Torbay Council")
    same = _diff("HEAD", "HEAD", capsys, "--council", "halton")
    assert "No changes to who may take any decision." in same
    bundle = _diff(str(ROOT / "policies" / "generated"), str(ROOT / "policies" / "schemes"), capsys)
    assert "decision(s) changed" not in bundle  # committed bundle is fresh (compile --check)
    # a side that is neither a path nor a revision is a usage error
    assert main(["diff", "HEAD", "no-such-revision"]) == 2


# -- matrix ---------------------------------------------------------------------------------


def test_matrix_cells_agree_with_the_engine(policies: PolicySet) -> None:
    checked = 0
    for council, policy in policies.councils.items():
        for decision in policy.decisions.values():
            if decision.required_facts or any(line.area != "*" for line in decision.lines):
                continue
            for role in policy.roles:
                c = _matrix.cell(policy, decision, role)
                if c.state == _matrix.CONDITIONAL:
                    continue
                answer = decide(
                    policies, Request(council, decision.id, Actor("matrix-test", (role,)))
                )
                assert answer.allowed == (c.state == _matrix.ALLOW), (council, decision.id, role)
                checked += 1
    assert checked > 1000
    torbay = policies.councils["torbay"]
    assert (
        _matrix.cell(torbay, torbay.decisions["s17_payment"], "team_manager").state == "conditional"
    )
    hos = _matrix.cell(torbay, torbay.decisions["instigate_care_proceedings"], "assistant_director")
    assert hos.state == "allow"
    assert "inherited from the Head of Service" in hos.detail
