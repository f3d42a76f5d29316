"""Policy test suites: YAML cases beside the policies, run by ``remit test`` and pytest.

Layout (per council)::

    policies/tests/<council>/fixtures*.yaml   shared actors and cases (names unique)
    policies/tests/<council>/*_test.yaml      suites of cases

A case names a decision, an actor (fixture name or inline), optional case fixtures and
inline context, and an ``expect`` block. A case without an expectation fails. A council
whose suites leave a decision without at least one allow and one deny case fails too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from remit import _yaml
from remit._conditions import FactValue
from remit._engine import Actor, Answer, Deviation, Grant, Request, decide
from remit._errors import InvalidArgument, NotFound, RequestError
from remit._facts import FactType
from remit._policy import PolicySet

_EXPECT_KEYS = {
    "effect",
    "rule",
    "obligations",
    "authorisers",
    "reason_contains",
    "failed_contains",
    "decided_outside",
    "error",
    "deviation",
}
_CASE_KEYS = {"name", "decision", "actor", "case", "context", "expect", "council"}


@dataclass(frozen=True)
class CaseResult:
    council: str
    suite: str
    line: int
    name: str
    ok: bool
    message: str = ""

    @property
    def id(self) -> str:
        return f"{self.suite}:{self.line}:{self.name}"


@dataclass
class Report:
    results: list[CaseResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]

    def by_council(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for r in self.results:
            ok, bad = out.get(r.council, (0, 0))
            out[r.council] = (ok + r.ok, bad + (not r.ok))
        return out


def junit_xml(report: Report) -> bytes:
    """The report as JUnit XML: one ``testsuite`` per council, one ``testcase`` per case
    (``classname`` the suite file), a ``failure`` carrying the message of each failed case."""
    from xml.etree import ElementTree as ET

    root = ET.Element("testsuites", name="remit policy suites")
    root.set("tests", str(len(report.results)))
    root.set("failures", str(len(report.failed)))
    for council, (ok, bad) in sorted(report.by_council().items()):
        suite = ET.SubElement(
            root, "testsuite", name=council, tests=str(ok + bad), failures=str(bad), errors="0"
        )
        for r in (r for r in report.results if r.council == council):
            case = ET.SubElement(
                suite, "testcase", classname=r.suite, name=r.name, file=r.suite, line=str(r.line)
            )
            if not r.ok:
                ET.SubElement(case, "failure", message=r.message[:200]).text = r.message
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _facts(policies: PolicySet, council: str, raw: Mapping[str, Any]) -> dict[str, FactValue]:
    policy = policies.councils.get(council)
    out: dict[str, FactValue] = {}
    for key, value in raw.items():
        spec = policy.facts.get(key) if policy else None
        if spec is not None and spec.type is FactType.ROLES and isinstance(value, list):
            out[key] = frozenset(value)
        else:
            out[key] = value
    return out


def build_request(
    policies: PolicySet,
    council: str,
    decision: str,
    actor: Mapping[str, Any],
    context: Mapping[str, Any],
) -> Request:
    """A Request from plain data (test cases, ``remit check``)."""
    ctx = dict(context)
    service_area = str(ctx.pop("service_area", ""))
    grant_raw = ctx.pop("grant", None)
    deviation_raw = ctx.pop("deviation", None)
    when_raw = ctx.pop("decision_time", None)
    grant = None
    if grant_raw is not None:
        grant = Grant(
            str(grant_raw["decision"]),
            int(grant_raw["remaining"]),
            date.fromisoformat(str(grant_raw["expires"])),
        )
    when = None
    if when_raw is not None:
        when = datetime.fromisoformat(str(when_raw))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    roles = actor.get("roles", [])
    return Request(
        council=council,
        decision=decision,
        actor=Actor(
            id=str(actor.get("id", "")),
            roles=tuple(roles if isinstance(roles, list) else [roles]),
            service_areas=tuple(actor.get("service_areas", [])),
            agency=bool(actor.get("agency", False)),
            registered_social_worker=bool(actor.get("registered_social_worker", False)),
            acting_for=tuple(actor.get("acting_for", [])),
        ),
        facts=_facts(policies, council, ctx),
        service_area=service_area,
        grant=grant,
        decision_time=when,
        deviation=(
            Deviation(
                str(deviation_raw.get("agreed_by_id", "")),
                str(deviation_raw.get("agreed_by_role", "")),
                str(deviation_raw.get("reason_code", "")),
            )
            if deviation_raw is not None
            else None
        ),
    )


def _check(
    expect: Mapping[str, Any], answer: Answer | None, error: RequestError | None
) -> list[str]:
    problems: list[str] = []
    if "error" in expect:
        want = expect["error"]
        if error is None:
            assert answer is not None
            return [f"expected error {want}, got {'ALLOW' if answer.allowed else 'DENY'}"]
        code = "NOT_FOUND" if isinstance(error, NotFound) else "INVALID_ARGUMENT"
        if want.get("code", code) != code:
            problems.append(f"expected error code {want['code']}, got {code} ({error})")
        if "field" in want and want["field"] != error.field:
            problems.append(f"expected error on {want['field']}, got {error.field} ({error})")
        return problems
    if error is not None:
        return [f"unexpected error: {error}"]
    assert answer is not None
    effect = "allow" if answer.allowed else "deny"
    if expect["effect"] != effect:
        problems.append(f"expected {expect['effect']}, got {effect}: {answer.reason}")
    if "rule" in expect and str(expect["rule"] or "") != answer.rule:
        problems.append(f"expected rule {expect['rule']!r}, got {answer.rule!r}")
    if "obligations" in expect:
        got = [(o.kind, o.role or o.party or o.casenote or o.fact) for o in answer.obligations]
        for want in expect["obligations"]:
            if isinstance(want, str):
                if not any(k == want for k, _ in got):
                    problems.append(f"expected a {want} obligation, got {got}")
            else:
                target = (
                    want["kind"],
                    want.get("role")
                    or want.get("party")
                    or want.get("casenote")
                    or want.get("fact"),
                )
                if target not in got:
                    problems.append(f"expected obligation {target}, got {got}")
        if not expect["obligations"] and got:
            problems.append(f"expected no obligations, got {got}")
    if "authorisers" in expect:
        got_roles = [a.role for a in answer.authorisers]
        if list(expect["authorisers"]) != got_roles:
            problems.append(f"expected authorisers {expect['authorisers']}, got {got_roles}")
    if "reason_contains" in expect and str(expect["reason_contains"]) not in answer.reason:
        problems.append(f"reason lacks {expect['reason_contains']!r}: {answer.reason}")
    if "failed_contains" in expect and not any(
        str(expect["failed_contains"]) in f for f in answer.failed_conditions
    ):
        problems.append(
            f"failed conditions lack {expect['failed_contains']!r}: {answer.failed_conditions}"
        )
    if "deviation" in expect and bool(expect["deviation"]) != answer.deviation:
        problems.append(f"expected deviation {expect['deviation']}, got {answer.deviation}")
    if "decided_outside" in expect and str(expect["decided_outside"]) not in answer.decided_outside:
        problems.append(
            f"decided_outside lacks {expect['decided_outside']!r}: {answer.decided_outside!r}"
        )
    return problems


def iter_cases(tests_dir: Path) -> Iterator[tuple[str, str, int, dict[str, Any], dict[str, Any]]]:
    """Yield (council, suite file, line, case, fixtures) for every case; raise on bad files."""
    for council_dir in sorted(p for p in tests_dir.iterdir() if p.is_dir()):
        fixtures: dict[str, dict[str, Any]] = {"actors": {}, "cases": {}}
        for fx_path in sorted(council_dir.glob("fixtures*.yaml")):
            fx, problems = _yaml.load(fx_path)
            if problems:
                raise ValueError("; ".join(f"{fx.file}:{ln}: {m}" for ln, m in problems))
            for kind, entries in (fx.data or {}).items():
                if kind not in fixtures:
                    raise ValueError(f"{fx.file}: unknown fixture kind {kind!r}")
                for name, value in (entries or {}).items():
                    if name in fixtures[kind]:
                        raise ValueError(f"{fx.file}: {kind} fixture {name!r} defined twice")
                    fixtures[kind][name] = value
        for suite in sorted(council_dir.glob("*_test.yaml")):
            doc, problems = _yaml.load(suite, f"{council_dir.name}/{suite.name}")
            if problems:
                raise ValueError("; ".join(f"{doc.file}:{ln}: {m}" for ln, m in problems))
            data = doc.data or {}
            council = data.get("council", council_dir.name)
            for i, case in enumerate(data.get("cases", [])):
                yield council, doc.file, doc.line(("cases", i)), case, fixtures


def run_case(
    policies: PolicySet, council: str, case: Mapping[str, Any], fixtures: Mapping[str, Any]
) -> tuple[list[str], Answer | None]:
    unknown = set(case) - _CASE_KEYS
    if unknown:
        return [f"unknown case keys {sorted(unknown)}"], None
    expect = case.get("expect")
    if not isinstance(expect, dict) or not (("effect" in expect) ^ ("error" in expect)):
        return ["case has no expectation (expect: with effect or error)"], None
    if set(expect) - _EXPECT_KEYS:
        return [f"unknown expect keys {sorted(set(expect) - _EXPECT_KEYS)}"], None
    actor = case.get("actor", {})
    if isinstance(actor, str):
        if actor not in fixtures["actors"]:
            return [f"no actor fixture {actor!r}"], None
        actor = fixtures["actors"][actor]
    context: dict[str, Any] = {}
    names = case.get("case", [])
    for name in [names] if isinstance(names, str) else names:
        if name not in fixtures["cases"]:
            return [f"no case fixture {name!r}"], None
        context.update(fixtures["cases"][name])
    context.update(case.get("context", {}))
    council = str(case.get("council", council))
    try:
        req = build_request(policies, council, str(case.get("decision", "")), actor, context)
        ans: Answer | None = decide(policies, req)
        err: RequestError | None = None
    except (InvalidArgument, NotFound) as exc:
        ans, err = None, exc
    return _check(expect, ans, err), ans


def run(policies: PolicySet, tests_dir: Path, councils: set[str] | None = None) -> Report:
    report = Report()
    coverage: dict[str, dict[str, set[str]]] = {}
    for council, suite, line, case, fixtures in iter_cases(tests_dir):
        if councils and council not in councils:
            continue
        name = str(case.get("name", f"case at line {line}"))
        problems, ans = run_case(policies, council, case, fixtures)
        report.results.append(
            CaseResult(council, suite, line, name, not problems, "; ".join(problems))
        )
        if ans is not None and not problems:
            coverage.setdefault(council, {}).setdefault(ans.decision, set()).add(
                "allow" if ans.allowed else "deny"
            )
    for council, policy in policies.councils.items():
        if councils and council not in councils:
            continue
        seen = coverage.get(council, {})
        for did in policy.decisions:
            missing = {"allow", "deny"} - seen.get(did, set())
            if missing:
                report.results.append(
                    CaseResult(
                        council,
                        f"{council}/(coverage)",
                        0,
                        did,
                        False,
                        f"decision {did} has no passing {' or '.join(sorted(missing))} case",
                    )
                )
    return report
