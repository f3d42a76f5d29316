"""``remit coverage``: every numbered row of a council's source document, and what covers it.

The rows come from parsing the source text (``policies/sources/<seed>``) as the scheme's
``source_rows`` declares its structure: blocks of lines read as

* ``paragraphs``: numbered paragraphs (``1.1 …``, ``- 2.3** …``); a line ``2. Heading``
  ends one; with ``bullets: true`` each bullet line (``-``, ``·``, ``•``) is a row of its own
  (``2.1 bullet 3``) and the paragraph's lead-in is the row ``2.1``;
* ``table``: tab-separated rows; a line continues the row above when it starts with
  whitespace, when its first cell starts with a lower-case letter or ``Note``, or when its
  other cells are empty or open with ``*``; ``headings`` end a row (a group sets
  ``{section}``), ``skip`` lines are ignored; ids from the template (``{section}``, ``{n}``,
  ``{cell}``);
* ``accountabilities``: a numbered table (Torbay's): ``N`` heads a part, ``N.N`` is a row,
  a letter is a lettered sub-row (``6.13a``), an unnumbered line with an officer is a
  sub-row named by its first cell (``1.3 (Appeal)``).

A row is covered by a decision, rule, notification or the deviation clause of the compiled
rule table whose quote (each ``...`` fragment) lies in it, or by an exclusion the scheme
declares (``exclusions:``, quote and reason; it covers every row from its first fragment's to
its last's). When a quote occurs more than once, the occurrence in a row its ``section``
names is taken, else the first (as the compiler checks). What is neither is *uncovered*.

``render_markdown`` is committed per council as ``policies/coverage/<council>.md``
(``remit coverage --write``; ``--check`` and a test compare it byte for byte);
``render_html`` is for an auditor (every value escaped by one function, :func:`_h`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remit.compiler import build as _compiler
from remit.model.errors import CompileError, Problem
from remit.model.policy import CouncilPolicy

COVERAGE_DIR = "coverage"


@dataclass(frozen=True)
class Row:
    """One numbered row / paragraph / table row of the source."""

    id: str
    lines: tuple[int, ...]  # 0-based line numbers of the source text
    text: str  # the row's text, markup removed and spacing folded

    @property
    def line(self) -> int:
        """The row's first line, 1-based (as an editor shows it)."""
        return self.lines[0] + 1


@dataclass(frozen=True)
class Citation:
    """Something that quotes the source: a decision, rule, notification, the deviation
    clause, or an exclusion (with its reason)."""

    kind: str
    id: str
    section: str
    quote: str
    reason: str = ""


@dataclass
class RowCoverage:
    row: Row
    citations: list[Citation] = field(default_factory=list)

    @property
    def covered(self) -> bool:
        return bool(self.citations)

    @property
    def excluded(self) -> bool:
        return bool(self.citations) and all(c.kind == "exclusion" for c in self.citations)


@dataclass
class Report:
    council: str
    name: str
    title: str
    seed: str
    rows: list[RowCoverage]
    unplaced: list[Citation]  # quotes that lie in no row (headings, preambles)

    @property
    def uncovered(self) -> list[RowCoverage]:
        return [r for r in self.rows if not r.covered]

    @property
    def excluded(self) -> list[RowCoverage]:
        return [r for r in self.rows if r.excluded]


# -- the source's rows ----------------------------------------------------------------

_TAG = re.compile(r"<[^>]*>")
_NUMBERED = re.compile(r"^[\s\-\u00b7\u2022]*(\d+(?:\.\d+)+)\**(?=[\s*]|$)")
_PART_HEADING = re.compile(r"^\s*\d+\.\s")
_BULLET = re.compile(r"^\s*[-\u00b7\u2022]\s+")


def _fold(text: str) -> str:
    text = _TAG.sub(" ", text).replace("**", " ")
    return re.sub(r"[\s\u00a0]+", " ", text).strip()


def _cell(text: str, width: int = 48) -> str:
    """A first cell as a row name: markup removed, cut at a word boundary."""
    folded = _fold(text).rstrip(" .:;")
    if len(folded) <= width:
        return folded
    cut = folded[:width].rsplit(" ", 1)[0]
    return cut.rstrip(" ,.;:-") + "…"


def _starts(line: str, marker: str) -> bool:
    return _compiler.normalise_text(line).startswith(_compiler.normalise_text(marker))


class _Rows:
    """Accumulates rows; duplicate ids get `` (2)``, `` (3)``…"""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = lines
        self.rows: list[Row] = []
        self.seen: dict[str, int] = {}
        self.open_id = ""
        self.open_lines: list[int] = []

    def open(self, row_id: str, index: int) -> None:
        self.close()
        count = self.seen.get(row_id, 0) + 1
        self.seen[row_id] = count
        self.open_id = row_id if count == 1 else f"{row_id} ({count})"
        self.open_lines = [index]

    def add(self, index: int) -> bool:
        """Add a line to the open row; False when none is open."""
        if not self.open_id:
            return False
        self.open_lines.append(index)
        return True

    def close(self) -> None:
        if self.open_id:
            text = _fold(" ".join(self.lines[i] for i in self.open_lines))
            self.rows.append(Row(self.open_id, tuple(self.open_lines), text))
        self.open_id = ""
        self.open_lines = []


def _block_ranges(lines: Sequence[str], blocks: Sequence[Mapping[str, Any]]) -> list[range]:
    def find(marker: str, start: int, key: str, k: int) -> int:
        for i in range(start, len(lines)):
            if _starts(lines[i], marker):
                return i
        raise ValueError(f"source_rows[{k}].{key}: no line starts with {marker!r}")

    ranges: list[range] = []
    cursor = 0
    for k, block in enumerate(blocks):
        start = find(block["from"], cursor, "from", k) if "from" in block else cursor
        body = start + 1 if "from" in block else start
        if "to" in block:
            end = find(block["to"], body, "to", k)
        elif k + 1 < len(blocks) and "from" in blocks[k + 1]:
            end = find(blocks[k + 1]["from"], body, "from", k + 1)
        else:
            end = len(lines)
        ranges.append(range(start, end))
        cursor = end
    return ranges


def source_rows(text: str, blocks: Sequence[Mapping[str, Any]]) -> list[Row]:
    """The rows of a source document, as its scheme's ``source_rows`` declares them.

    Raises ValueError (naming the block) when a declared marker is not in the text.
    """
    lines = text.split("\n")
    rows: list[Row] = []
    for block, span in zip(blocks, _block_ranges(lines, blocks), strict=True):
        acc = _Rows(lines)
        kind = block["block"]
        if kind == "paragraphs":
            _paragraphs(acc, span, block)
        elif kind == "table":
            _table(acc, span, block)
        else:
            _accountabilities(acc, span, block)
        acc.close()
        rows.extend(acc.rows)
    return rows


def _skipped(line: str, block: Mapping[str, Any]) -> bool:
    return any(re.search(p, line) for p in block.get("skip", ()))


def _paragraphs(acc: _Rows, span: range, block: Mapping[str, Any]) -> None:
    template = str(block.get("id", "{number}"))
    bullets = bool(block.get("bullets", False))
    number = ""
    bullet = 0
    for i in span:
        line = acc.lines[i]
        if (i == span.start and "from" in block) or not line.strip() or _skipped(line, block):
            continue
        numbered = _NUMBERED.match(line)
        if numbered:
            number, bullet = numbered.group(1), 0
            acc.open(template.format(number=number), i)
        elif _PART_HEADING.match(line):
            acc.close()
            number = ""
        elif bullets and number and _BULLET.match(line):
            bullet += 1
            acc.open(f"{template.format(number=number)} bullet {bullet}", i)
        else:
            acc.add(i)


def _table(acc: _Rows, span: range, block: Mapping[str, Any]) -> None:
    template = str(block.get("id", "{n}"))
    headings = [re.compile(p) for p in block.get("headings", ())]
    section = ""
    n = 0
    for i in span:
        line = acc.lines[i]
        heading = next((m for p in headings if (m := p.search(line.strip()))), None)
        if heading:
            acc.close()
            if heading.groups():
                section, n = heading.group(1), 0
            continue
        if (i == span.start and "from" in block) or not line.strip() or _skipped(line, block):
            continue
        cells = [c.strip() for c in line.split("\t")]
        first, rest = cells[0], [c for c in cells[1:] if c]
        continues = (
            line[:1].isspace()
            or not first
            or not rest
            or first[:1].islower()
            or first.lower().startswith("note")
            or rest[0].startswith("*")
        )
        if continues and acc.add(i):
            continue
        n += 1
        acc.open(template.format(section=section, n=n, cell=_cell(first)), i)


def _accountabilities(acc: _Rows, span: range, block: Mapping[str, Any]) -> None:
    last = ""
    for i in span:
        line = acc.lines[i]
        if (i == span.start and "from" in block) or not line.strip() or _skipped(line, block):
            continue
        cells = [c.strip() for c in line.split("\t")] + ["", ""]
        first, text, officer = cells[0], cells[1], any(cells[2:])
        if re.fullmatch(r"\d+", first):  # a part: "6\tChildren's Social Care Practice …"
            acc.close()
            last = first
        elif re.fullmatch(r"\d+\.\d+", first):
            last = first
            if text:
                acc.open(first, i)
            else:  # "6.13\t\t\tNCP Procedures": its lettered rows follow
                acc.close()
        elif re.fullmatch(r"[a-z]", first):
            acc.open(f"{last}{first}", i)
        elif (not first and text and officer) or (not acc.add(i) and _fold(text)):
            # a sub-row named by its first cell ("\tAppeal\tLine Manager …"), or text under a
            # part's heading with no row open ("\tAll payments must be made …"); any other
            # line (page breaks, the officer column running on) continued the open row
            acc.open(f"{last} ({_cell(text)})", i)


# -- what covers them -----------------------------------------------------------------


def citations(policy: CouncilPolicy) -> list[Citation]:
    """Every quote of the compiled rule table, in scheme order."""
    out: list[Citation] = []
    for did in policy.scheme_order:
        dec = policy.decisions[did]
        out.append(Citation("decision", dec.id, dec.section, dec.quote))
        for rid in dec.rules:
            rule = policy.rules[rid]
            out.append(Citation("rule", rule.id, rule.section, rule.quote))
    for event in policy.events.values():
        out.append(Citation("notification", event.id, event.section, event.quote))
    if policy.deviation is not None:
        dev = policy.deviation
        out.append(Citation("deviation", "deviation", dev.section, dev.quote))
    return out


class _Located:
    """The source normalised as the compiler normalises it, with each line's offsets."""

    def __init__(self, text: str) -> None:
        parts: list[str] = []
        self.owner: list[tuple[int, int, int]] = []  # (start, end, line)
        pos = 0
        for index, line in enumerate(text.split("\n")):
            folded = _compiler.normalise_text(line)
            if not folded:
                continue
            if parts:
                pos += 1
            parts.append(folded)
            self.owner.append((pos, pos + len(folded), index))
            pos += len(folded)
        self.text = " ".join(parts)
        if self.text != _compiler.normalise_text(text):
            raise ValueError("the source does not normalise line by line")  # pragma: no cover

    def occurrences(self, quote: str) -> Iterable[list[tuple[int, int]]]:
        """Every placement of the quote's fragments, in order (first fragment anywhere)."""
        fragments = [f for f in (_compiler.normalise_text(p) for p in quote.split("...")) if f]
        if not fragments:
            return
        start = self.text.find(fragments[0])
        while start >= 0:
            spans = [(start, start + len(fragments[0]))]
            pos = spans[0][1]
            for fragment in fragments[1:]:
                found = self.text.find(fragment, pos)
                if found < 0:
                    return
                spans.append((found, found + len(fragment)))
                pos = found + len(fragment)
            yield spans
            start = self.text.find(fragments[0], start + 1)

    def lines_of(self, a: int, b: int) -> list[int]:
        return [line for s, e, line in self.owner if s < b and a < e]


def _number(label: str) -> str:
    match = re.search(r"\d+(?:\.\d+)*[a-z]?", label)
    return match.group(0) if match else label


def _related(section: str, row_id: str) -> int:
    """How well a citation's section names a row: 2 by name, 1 by number, 0 not."""
    a, b = section.lower(), row_id.lower()
    for long, short in ((a, b), (b, a)):
        if long == short or (
            long.startswith(short) and not re.match(r"[0-9a-z.]", long[len(short) :])
        ):
            return 2
    return 1 if _number(a) == _number(b) and re.search(r"\d", a) else 0


def cover(
    council: str,
    name: str,
    title: str,
    seed: str,
    text: str,
    rows: list[Row],
    cited: Sequence[Citation],
) -> Report:
    """Place each citation in the rows its quote lies in (exclusions: the rows it spans)."""
    located = _Located(text)
    row_of: dict[int, int] = {line: k for k, row in enumerate(rows) for line in row.lines}
    coverage = [RowCoverage(row) for row in rows]
    unplaced: list[Citation] = []
    for citation in cited:
        best: list[int] = []
        best_score = -1
        for spans in located.occurrences(citation.quote):
            hit = sorted(
                {row_of[ln] for a, b in spans for ln in located.lines_of(a, b) if ln in row_of}
            )
            if citation.kind == "exclusion" and hit:
                hit = list(range(hit[0], hit[-1] + 1))  # every row it spans
            score = max((_related(citation.section, rows[k].id) for k in hit), default=-1)
            if score > best_score:
                best, best_score = hit, score
        if not best:
            unplaced.append(citation)
        for k in best:
            coverage[k].citations.append(citation)
    return Report(council, name, title, seed, coverage, unplaced)


# -- per council ----------------------------------------------------------------------


def exclusions(doc: Any) -> list[Citation]:
    return [
        Citation(
            "exclusion", f"exclusion {k + 1}", str(e["section"]), str(e["quote"]), str(e["reason"])
        )
        for k, e in enumerate(doc.get("exclusions", []) if isinstance(doc, dict) else [])
    ]


def council_report(policy: CouncilPolicy, schemes_dir: Path, sources_dir: Path) -> Report:
    """The coverage of one council: its scheme (rows, exclusions) against its rule table."""
    path, parts = _compiler.scheme_paths(schemes_dir, policy.council)
    shown = f"policies/schemes/{path.name}"
    doc, problems = _compiler.load_scheme(path, shown, parts)
    if problems or not isinstance(doc.data, dict):
        raise CompileError(problems or [Problem(shown, 1, "", "not a mapping")])
    blocks = doc.data.get("source_rows")
    if not blocks:
        raise CompileError(
            [Problem(shown, 1, "source_rows", "declare source_rows: how coverage finds the rows")]
        )
    text = (sources_dir / policy.seed).read_text(encoding="utf-8")
    try:
        rows = source_rows(text, blocks)
    except ValueError as exc:
        raise CompileError([Problem(shown, doc.line(("source_rows",)), "", str(exc))]) from None
    cited = [*citations(policy), *exclusions(doc.data)]
    return cover(policy.council, policy.name, policy.title, policy.seed, text, rows, cited)


# -- output ---------------------------------------------------------------------------


def _brief(text: str, width: int = 110) -> str:
    return text if len(text) <= width else text[:width].rsplit(" ", 1)[0] + " …"


def _label(c: Citation) -> str:
    if c.kind == "deviation":
        return "deviation clause"
    if c.kind == "exclusion":
        return f"excluded: {c.reason}"
    return f"{c.kind} {c.id}"


def _by(citations_: Sequence[Citation]) -> list[str]:
    """What covers a row, in scheme order."""
    return [_label(c) for c in citations_]


def summary(report: Report) -> str:
    total = len(report.rows)
    excluded = len(report.excluded)
    uncovered = len(report.uncovered)
    return (
        f"{report.council}: {total} rows, {total - excluded - uncovered} covered by rules,"
        f" {excluded} excluded, {uncovered} uncovered"
    )


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    """The committed report of one council (deterministic: same inputs, same bytes)."""
    out = [
        f"# Coverage: {report.name}",
        "",
        f"{report.title} (`policies/sources/{report.seed}`). Generated by"
        f" `remit coverage --write`; do not edit.",
        "",
        f"**{summary(report)}.**",
        "",
    ]
    if report.uncovered:
        out += ["## Uncovered rows", ""]
        out += [
            f"- {_md(r.row.id)} (line {r.row.line}): {_md(_brief(r.row.text))}"
            for r in report.uncovered
        ]
        out.append("")
    out += ["## Rows", "", "| row | line | text | covered by |", "|---|---|---|---|"]
    for r in report.rows:
        by = "; ".join(_by(r.citations)) or "**UNCOVERED**"
        out.append(f"| {_md(r.row.id)} | {r.row.line} | {_md(_brief(r.row.text))} | {_md(by)} |")
    out.append("")
    if report.unplaced:
        out += ["## Quotes in no row (headings, preamble)", ""]
        out += [
            f"- {c.kind} {_md(c.id)} ({_md(c.section)}): “{_md(_brief(c.quote))}”"
            for c in report.unplaced
        ]
        out.append("")
    return "\n".join(out)


def _h(value: object) -> str:
    """The one way text enters the HTML: escaped (quotes too)."""
    return html.escape(str(value), quote=True)


_CSS = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.3em .5em;vertical-align:top;text-align:left}"
    "tr.uncovered td{background:#fdd}tr.excluded td{background:#f4f4f4}.q{color:#555}"
)


def render_html(reports: Sequence[Report]) -> str:
    """One page for an auditor: every council's rows, what covers each, and the quotes."""
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>remit coverage</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>Source coverage</h1>",
    ]
    for report in reports:
        out.append(f'<h2 id="{_h(report.council)}">{_h(report.name)}</h2>')
        out.append(f"<p>{_h(report.title)} ({_h(report.seed)}): {_h(summary(report))}.</p>")
        out.append("<table><tr><th>row</th><th>line</th><th>text</th><th>covered by</th></tr>")
        for r in report.rows:
            cls = "uncovered" if not r.covered else "excluded" if r.excluded else "covered"
            items = "".join(
                f'<li>{_h(label)}<div class="q">{_h(_brief(c.quote, 200))}</div></li>'
                for label, c in zip(_by(r.citations), r.citations, strict=True)
            )
            out.append(
                f'<tr class="{cls}"><td>{_h(r.row.id)}</td><td>{r.row.line}</td>'
                f"<td>{_h(r.row.text)}</td><td><ul>{items or '<li>UNCOVERED</li>'}</ul></td></tr>"
            )
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
