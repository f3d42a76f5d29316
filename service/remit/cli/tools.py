"""Commands for the people who own the schemes: ``remit lint``, ``diff``, ``matrix``, ``coverage``.

Registered by :data:`remit.cli.COMMAND_MODULES`. Exit codes follow :mod:`remit.cli`; lint
errors exit 5 (``EXIT_LINT``), distinct from compile errors (3).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from remit.model import paths as _paths
from remit.model.errors import CompileError, PolicyError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_COMPILE = 3
EXIT_POLICY = 4
EXIT_LINT = 5


def _cmd_lint(args: argparse.Namespace) -> int:
    from remit.tools import lint as _lint

    try:
        findings = _lint.lint(
            Path(args.schemes), Path(args.sources), set(args.council) if args.council else None
        )
    except CompileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"remit lint: {len(exc.problems)} compile problem(s)", file=sys.stderr)
        return EXIT_COMPILE
    for finding in findings:
        if args.quiet and finding.severity != "error":
            continue
        print(finding)
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    print(f"remit lint: {errors} error(s), {warnings} warning(s)")
    failed = errors or (args.strict and warnings)
    return EXIT_LINT if failed else 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from remit.tools import diff as _diff

    try:
        old = _diff.load_side(args.old, Path(args.schemes), args.council)
        new = _diff.load_side(args.new, Path(args.schemes), args.council)
    except CompileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_COMPILE
    except PolicyError as exc:
        print(f"remit diff: {exc}", file=sys.stderr)
        return EXIT_POLICY
    except ValueError as exc:
        print(f"remit diff: {exc}", file=sys.stderr)
        return EXIT_USAGE
    text = _diff.render(old, new, args.council or None)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_matrix(args: argparse.Namespace) -> int:
    from remit.model.policy import load_dir
    from remit.tools import matrix as _matrix

    try:
        policies = load_dir(Path(args.policy_dir) if args.policy_dir else _paths.generated_dir())
    except PolicyError as exc:
        print(f"remit matrix: {exc}", file=sys.stderr)
        return EXIT_POLICY
    policy = policies.councils.get(args.council)
    if policy is None:
        print(f"remit matrix: unknown council {args.council!r}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out or f"{args.council}-matrix.html")
    out.write_text(_matrix.render(policy, policies.version), encoding="utf-8")
    print(f"wrote {out}")
    return 0


def _cmd_coverage(args: argparse.Namespace) -> int:
    from remit.model.policy import load_dir
    from remit.tools import coverage as _coverage

    try:
        policies = load_dir(Path(args.policy_dir) if args.policy_dir else _paths.generated_dir())
    except PolicyError as exc:
        print(f"remit coverage: {exc}", file=sys.stderr)
        return EXIT_POLICY
    unknown = sorted(set(args.council) - set(policies.councils))
    if unknown:
        print(
            f"remit coverage: unknown council {unknown[0]!r}"
            f" (councils: {', '.join(sorted(policies.councils))})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    councils = sorted(args.council) or sorted(policies.councils)
    try:
        reports = [
            _coverage.council_report(policies.councils[c], Path(args.schemes), Path(args.sources))
            for c in councils
        ]
    except CompileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_COMPILE
    out_dir = Path(args.out_dir)
    stale: list[str] = []
    for report in reports:
        text = _coverage.render_markdown(report)
        target = out_dir / f"{report.council}.md"
        if args.write:
            out_dir.mkdir(parents=True, exist_ok=True)
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                target.write_text(text, encoding="utf-8")
        elif args.check and (not target.is_file() or target.read_text(encoding="utf-8") != text):
            stale.append(str(target))
        print(_coverage.summary(report))
        for row in report.uncovered:
            print(f"  uncovered {row.row.id} (line {row.row.line}): {row.row.text[:100]}")
    if args.html:
        Path(args.html).write_text(_coverage.render_html(reports), encoding="utf-8")
        print(f"wrote {args.html}")
    if stale:
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        print("remit coverage --check: run `remit coverage --write`", file=sys.stderr)
        return EXIT_POLICY
    return EXIT_FAILED if any(r.uncovered for r in reports) else 0


def register(sub: Any) -> None:
    """Add lint, diff and matrix to the ``remit`` subcommands."""
    root = _paths.project_root()
    schemes = str(root / "policies" / "schemes")

    lint = sub.add_parser("lint", help="check the schemes' meaning (tiers, reachability, ...)")
    lint.add_argument("--schemes", default=schemes)
    lint.add_argument("--sources", default=str(root / "policies" / "sources"))
    lint.add_argument("--council", action="append", default=[])
    lint.add_argument("--quiet", action="store_true", help="print errors only")
    lint.add_argument("--strict", action="store_true", help="warnings fail too (exit 5)")
    lint.set_defaults(func=_cmd_lint)

    diff = sub.add_parser(
        "diff", help="schedule of changes between two schemes, git revisions or bundles"
    )
    diff.add_argument("old", help="scheme file, schemes dir, compiled bundle dir or git revision")
    diff.add_argument("new", help="same kinds as OLD")
    diff.add_argument("--council", default="", help="only this council")
    diff.add_argument("--schemes", default=schemes, help="schemes dir inside a git revision")
    diff.add_argument("--out", default="", help="write the Markdown here")
    diff.set_defaults(func=_cmd_diff)

    matrix = sub.add_parser("matrix", help="HTML delegation matrix of one council")
    matrix.add_argument("council")
    matrix.add_argument("--out", default="", help="HTML file (default COUNCIL-matrix.html)")
    matrix.add_argument("--policy-dir", default="")
    matrix.set_defaults(func=_cmd_matrix)

    cov = sub.add_parser(
        "coverage",
        help="map every numbered row of the source documents to what covers it (exit 1: uncovered)",
    )
    cov.add_argument("--council", action="append", default=[], help="only this council")
    cov.add_argument("--schemes", default=schemes)
    cov.add_argument("--sources", default=str(root / "policies" / "sources"))
    cov.add_argument(
        "--policy-dir", default="", help="compiled policy (default policies/generated)"
    )
    cov.add_argument(
        "--out-dir", default=str(root / "policies" / "coverage"), help="where the Markdown lives"
    )
    mode = cov.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write <out-dir>/<council>.md")
    mode.add_argument(
        "--check", action="store_true", help="exit 4 when a committed report is stale"
    )
    cov.add_argument("--html", default="", help="also write one HTML page for an auditor")
    cov.set_defaults(func=_cmd_coverage)
