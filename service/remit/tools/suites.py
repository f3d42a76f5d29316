"""Policy test suites: YAML cases beside the policies, run by ``remit test`` and pytest.

Layout (per council)::

    policies/tests/<council>/fixtures*.yaml   shared actors and cases (names unique)
    policies/tests/<council>/*_test.yaml      suites of cases

A case names a decision, an actor (fixture name or inline), optional case fixtures and
inline context, and an ``expect`` block. A case without an expectation fails. A council
whose suites leave a decision without at least one allow and one deny case fails too.

A notification case names an ``event:`` instead of a decision (no actor) and expects
``notifications:`` — the exact list owed (``[]`` when the event's conditions do not hold),
each ``{event, audience, by, timescale, due}`` (the keys given are compared) — or an
``error``. A council whose suites leave a notification without a passing case fails.
A decision case may also expect ``notifications:`` (event ids, or entries as above) that
its allow implies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from remit.engine.authorise import Outcome, authorise
from remit.engine.evaluate import Answer
from remit.engine.notify import Notice, notifications
from remit.model import yamldoc as _yaml
from remit.model.conditions import FactValue
from remit.model.errors import InvalidArgument, NotFound, RequestError
from remit.model.facts import FactType
from remit.model.policy import PolicySet
from remit.model.request import Actor, Deviation, Grant, Request

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
    "notifications",
}
_CASE_KEYS = {"name", "decision", "event", "actor", "case", "context", "expect", "council"}


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
        if "message_contains" in want and str(want["message_contains"]) not in str(error):
            problems.append(f"error message lacks {want['message_contains']!r}: {error}")
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


def _notice_view(n: Notice) -> dict[str, Any]:
    return {
        "event": n.event,
        "audience": list(n.audience),
        "by": list(n.by),
        "timescale": n.timescale,
        "due": n.due.isoformat() if n.due is not None else None,
    }


def _check_notices(want: Any, got: list[Notice], exact: bool) -> list[str]:
    views = [_notice_view(n) for n in got]
    if not isinstance(want, list):
        return ["expect.notifications must be a list"]
    problems: list[str] = []
    for item in want:
        entry = {"event": item} if isinstance(item, str) else dict(item)
        if "due" in entry and entry["due"] is not None:
            entry["due"] = datetime.fromisoformat(str(entry["due"])).astimezone(UTC).isoformat()
        if not any(all(v.get(k) == val for k, val in entry.items()) for v in views):
            problems.append(f"expected notification {entry}, got {views}")
    if exact and len(want) != len(views):
        problems.append(f"expected {len(want)} notification(s), got {views}")
    if not want and views:
        problems.append(f"expected no notifications, got {views}")
    return problems


def _when(raw: Any) -> datetime | None:
    if raw is None:
        return None
    when = datetime.fromisoformat(str(raw))
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def run_event_case(
    policies: PolicySet, council: str, case: Mapping[str, Any], context: dict[str, Any]
) -> tuple[list[str], list[Notice] | None]:
    expect = case["expect"]
    when = _when(context.pop("decision_time", None))
    try:
        found = notifications(
            policies, council, str(case["event"]), _facts(policies, council, context), when
        )
    except (InvalidArgument, NotFound) as exc:
        if "error" in expect:
            return _check(expect, None, exc), None
        return [f"unexpected error: {exc}"], None
    if "error" in expect:
        return [f"expected error {expect['error']}, got {len(found)} notification(s)"], None
    return _check_notices(expect["notifications"], found, exact=True), found


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
    is_event = "event" in case
    if is_event and ("decision" in case or "actor" in case):
        return ["a notification case names an event, not a decision or an actor"], None
    outcome = "notifications" if is_event else "effect"
    if not isinstance(expect, dict) or not ((outcome in expect) ^ ("error" in expect)):
        return [f"case has no expectation (expect: with {outcome} or error)"], None
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
    if is_event:
        problems, _ = run_event_case(policies, council, case, context)
        return problems, None
    decided: Outcome | None = None
    err: RequestError | None = None
    try:
        req = build_request(policies, council, str(case.get("decision", "")), actor, context)
        decided = authorise(policies, req)  # the same use case as gRPC and `remit check`
    except (InvalidArgument, NotFound) as exc:
        err = exc
    ans = decided.answer if decided is not None else None
    problems = _check(expect, ans, err)
    if "notifications" in expect and decided is not None:
        problems += _check_notices(expect["notifications"], list(decided.notices), exact=False)
    return problems, ans


def run(policies: PolicySet, tests_dir: Path, councils: set[str] | None = None) -> Report:
    report = Report()
    coverage: dict[str, dict[str, set[str]]] = {}
    events_seen: dict[str, set[str]] = {}
    for council, suite, line, case, fixtures in iter_cases(tests_dir):
        if councils and council not in councils:
            continue
        name = str(case.get("name", f"case at line {line}"))
        problems, ans = run_case(policies, council, case, fixtures)
        report.results.append(
            CaseResult(council, suite, line, name, not problems, "; ".join(problems))
        )
        if "event" in case and not problems:
            events_seen.setdefault(str(case.get("council", council)), set()).add(str(case["event"]))
        if ans is not None and not problems:
            coverage.setdefault(council, {}).setdefault(ans.decision, set()).add(
                "allow" if ans.allowed else "deny"
            )
    for council, policy in policies.councils.items():
        if councils and council not in councils:
            continue
        for eid in policy.events:
            if eid not in events_seen.get(council, set()):
                report.results.append(
                    CaseResult(
                        council,
                        f"{council}/(coverage)",
                        0,
                        eid,
                        False,
                        f"notification {eid} has no passing case",
                    )
                )
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
