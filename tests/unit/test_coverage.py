"""``remit coverage``: the rows come from the source text; every row is covered or excluded;
the committed Markdown is reproduced byte for byte; the HTML escapes what it shows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from remit.cli.main import main
from remit.compiler import build as _compiler
from remit.model.errors import CompileError
from remit.model.policy import PolicySet, load_dir
from remit.tools import coverage as _coverage

from tests.support import ROOT

SCHEMES = ROOT / "policies" / "schemes"
SOURCES = ROOT / "policies" / "sources"
GENERATED = ROOT / "policies" / "generated"
COMMITTED = ROOT / "policies" / "coverage"


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load_dir(GENERATED)


@pytest.fixture(scope="module")
def reports(policies: PolicySet) -> dict[str, _coverage.Report]:
    return {c: _coverage.council_report(p, SCHEMES, SOURCES) for c, p in policies.councils.items()}


def test_committed_coverage_is_what_remit_coverage_writes(
    reports: dict[str, _coverage.Report],
) -> None:
    assert sorted(p.stem for p in COMMITTED.glob("*.md")) == sorted(reports)
    for council, report in reports.items():
        committed = (COMMITTED / f"{council}.md").read_text(encoding="utf-8")
        assert committed == _coverage.render_markdown(report), (
            f"run `remit coverage --write` and commit policies/coverage/{council}.md"
        )


def test_every_numbered_row_of_every_council_is_covered(
    reports: dict[str, _coverage.Report],
) -> None:
    for council, report in reports.items():
        assert [r.row.id for r in report.uncovered] == [], council
        assert report.unplaced == [], council


def test_row_counts_follow_the_documents(reports: dict[str, _coverage.Report]) -> None:
    # Halton's 60 rows and the AP scheme's 13 are the audit's counts; the others count
    # bullets (Kirklees, Gloucestershire) and Torbay's group headings as rows too
    counts = {c: len(r.rows) for c, r in reports.items()}
    assert counts["halton"] == 60 and counts["ap_scheme"] == 13
    ids = [r.row.id for r in reports["torbay"].rows]
    for expected in ("Para 3.1", "1.3 (Appeal)", "6.13a", "6.33b", "App2 Specialist: ICPC"):
        assert expected in ids
    assert "App2 Early Help: Decision making re Edge of Care" in ids
    assert [r.row.id for r in reports["halton"].rows][:2] == ["1.1", "1.2"]


TABLE = "\n".join(
    [
        "Preamble\tnot a row",
        "Rows start here",
        "1. Decisions in relation to Cats",
        "Decision to feed\tPost title: Keeper",
        "\t*Subject to review",
        "Note, feed twice\tKeeper again",
        "Decision to groom\tPost title: Groomer",
        "continues in lower case\t",
        "Header\tskipped",
        "2. Decisions in relation to Dogs",
        "Decision to walk\tPost title: Walker",
    ]
)


def test_table_rows_continuations_headings_and_skips() -> None:
    blocks = [
        {
            "block": "table",
            "from": "Rows start here",
            "id": "{section}.{n}",
            "headings": [r"^(\d)\. Decisions in relation to"],
            "skip": ["^Header\t"],
        }
    ]
    rows = _coverage.source_rows(TABLE, blocks)
    assert [(r.id, r.lines) for r in rows] == [
        ("1.1", (3, 4, 5)),
        ("1.2", (6, 7)),
        ("2.1", (10,)),
    ]


def test_paragraphs_with_bullets_and_duplicate_numbers() -> None:
    text = "1. Intro\n1.1 First para\n- a bullet\n  more of it\n1.1 Again\n2. Next\nloose"
    rows = _coverage.source_rows(text, [{"block": "paragraphs", "bullets": True}])
    assert [(r.id, r.lines) for r in rows] == [
        ("1.1", (1,)),
        ("1.1 bullet 1", (2, 3)),
        ("1.1 (2)", (4,)),
    ]


def test_accountabilities_numbers_letters_and_named_sub_rows() -> None:
    text = "\n".join(
        [
            "Top",
            "6\tPractice",
            "6.12\tMonitoring\tTeam Manager",
            "b\tOther monitoring\tCaseholder",
            "6.13\t\t\tProcedures",
            "a\tSearch\tSocial Worker",
            "\tAppeal\tLine Manager",
            "\tonly)\t\t",
        ]
    )
    rows = _coverage.source_rows(text, [{"block": "accountabilities", "from": "Top"}])
    assert [(r.id, r.lines) for r in rows] == [
        ("6.12", (2,)),
        ("6.12b", (3,)),
        ("6.13a", (5,)),
        ("6.13 (Appeal)", (6, 7)),
    ]


def test_quotes_place_in_rows_and_exclusions_span() -> None:
    text = "T\nA\tone alpha\nB\ttwo beta\nC\tthree gamma\nD\tfour alpha"
    rows = _coverage.source_rows(text, [{"block": "table", "from": "T", "id": "{cell}"}])
    cited = [
        _coverage.Citation("rule", "r1", "D", "alpha"),  # twice: the row its section names
        _coverage.Citation("exclusion", "x", "A", "one alpha ... three", "why"),
        _coverage.Citation("rule", "r2", "", "not in the text at all"),
    ]
    report = _coverage.cover("c", "n", "t", "s", text, rows, cited)
    by_row = {r.row.id: [c.id for c in r.citations] for r in report.rows}
    assert by_row == {"A": ["x"], "B": ["x"], "C": ["x"], "D": ["r1"]}
    assert [c.id for c in report.unplaced] == ["r2"]


def test_html_escapes_row_text_and_reasons() -> None:
    text = 'T\n<script>alert(1)</script> "x"\tofficer & co'
    rows = _coverage.source_rows(text, [{"block": "table", "from": "T"}])
    cited = [_coverage.Citation("exclusion", "e", "1", "officer & co", "<b>why</b>")]
    page = _coverage.render_html([_coverage.cover("c", "N<", "T&", "s", text, rows, cited)])
    assert "<script>" not in page and "<b>why" not in page
    assert "&lt;b&gt;why&lt;/b&gt;" in page and "officer &amp; co" in page and "N&lt;" in page


def _copy_tree(tmp_path: Path) -> Path:
    schemes = tmp_path / "schemes"
    shutil.copytree(SCHEMES, schemes)
    return schemes


def test_an_exclusion_must_quote_the_source(tmp_path: Path) -> None:
    schemes = _copy_tree(tmp_path)
    part = schemes / "kirklees.d" / "70_coverage.yaml"
    part.write_text(
        part.read_text(encoding="utf-8")
        + '  - {section: "9.9", quote: "words the protocol never says", reason: "r"}\n',
        encoding="utf-8",
    )
    with pytest.raises(CompileError) as err:
        _compiler.compile_all(schemes, SOURCES, {"kirklees"})
    assert any(
        "exclusions" in p.path and "quote not found" in p.message for p in err.value.problems
    )


def test_an_exclusion_needs_a_reason(tmp_path: Path) -> None:
    schemes = _copy_tree(tmp_path)
    part = schemes / "kirklees.d" / "70_coverage.yaml"
    part.write_text(
        part.read_text(encoding="utf-8") + '  - {section: "3.9", quote: "A monthly meeting"}\n',
        encoding="utf-8",
    )
    with pytest.raises(CompileError) as err:
        _compiler.compile_all(schemes, SOURCES, {"kirklees"})
    assert any("reason" in p.message for p in err.value.problems)


def test_a_marker_not_in_the_source_is_an_error_naming_source_rows(
    tmp_path: Path, policies: PolicySet
) -> None:
    schemes = _copy_tree(tmp_path)
    part = schemes / "ap_scheme.d" / "70_coverage.yaml"
    part.write_text(
        part.read_text(encoding="utf-8").replace("Service area\\tRole", "No such line"),
        encoding="utf-8",
    )
    with pytest.raises(CompileError) as err:
        _coverage.council_report(policies.councils["ap_scheme"], schemes, SOURCES)
    assert "source_rows[0].from" in str(err.value.problems[0])


def test_cli_check_passes_and_an_uncovered_row_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["coverage", "--check"]) == 0
    schemes = _copy_tree(tmp_path)
    part = schemes / "kirklees.d" / "70_coverage.yaml"
    text = part.read_text(encoding="utf-8")
    start = text.index('  - section: "3.9"')
    part.write_text(text[:start], encoding="utf-8")
    code = main(["coverage", "--council", "kirklees", "--schemes", str(schemes)])
    out = capsys.readouterr().out
    assert code == 1
    assert "uncovered 3.9 (line 87)" in out


def test_cli_check_reports_a_stale_report(tmp_path: Path) -> None:
    out_dir = tmp_path / "coverage"
    shutil.copytree(COMMITTED, out_dir)
    (out_dir / "halton.md").write_text("stale\n", encoding="utf-8")
    assert main(["coverage", "--check", "--out-dir", str(out_dir)]) == 4
    assert main(["coverage", "--write", "--out-dir", str(out_dir)]) == 0
    assert main(["coverage", "--check", "--out-dir", str(out_dir)]) == 0


def test_cli_unknown_council_is_a_usage_error() -> None:
    assert main(["coverage", "--council", "nowhere"]) == 2
