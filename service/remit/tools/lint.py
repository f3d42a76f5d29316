"""``remit lint``: checks of a scheme's meaning, beyond what the compiler refuses.

The compiler refuses what cannot be served (unknown roles, bad quotes, bad types). Lint
compiles the schemes in memory first (a compile problem is reported as such, exit 3), then
reads the compiled lines -- the same lines, in the same order, the engine walks -- and the
merged YAML (:func:`remit.compiler.build.load_scheme`) only to name the file and line of each
finding:

* ``tier-gap`` / ``tier-overlap``: the money tiers of a decision leave amounts no rule
  covers (``up to £2,000`` and ``over £2,001``), or two tiers share a boundary amount
  (``up to £2,000`` and ``£2,000 or more``);
* ``unsatisfiable`` / ``unreachable``: a rule whose condition no request can meet, or
  that an earlier line always decides first (same or wider posts, weaker condition);
* ``no-allow-path``: a decision that no post can ever be allowed to take;
* ``citation``: a rule whose quoted text names none of the posts it delegates to;
* ``unused-role`` / ``unused-area``: declared but never referred to;
* ``deputy``: a rule for a post's absence (``absent_roles has X``) where X holds no
  authority for that decision and is consulted in none of its rules (a deputy for a role
  the scheme does not have at all is a compile error).

Each finding is an ``error`` or a ``warning``; errors fail ``remit lint`` (exit 5).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remit.compiler import build as _compiler
from remit.model import yamldoc as _yaml
from remit.model.conditions import Term, pounds
from remit.model.facts import FactType
from remit.model.policy import CouncilPolicy, Line, load_files

INF = 10**15


@dataclass(frozen=True, order=True)
class Finding:
    file: str
    line: int
    severity: str  # "error" | "warning"
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: [{self.code}] {self.message}"


# -- conditions as sets of requests ---------------------------------------------------------


@dataclass
class _Constraint:
    """What one conjunction of terms allows for one fact."""

    lo: int = 0
    hi: int = INF
    values: frozenset[str] | None = None  # enum: allowed values (None: any)
    boolean: bool | None = None
    has: frozenset[str] = frozenset()
    lacks: frozenset[str] = frozenset()
    contradiction: bool = False

    def empty(self) -> bool:
        return (
            self.contradiction
            or self.lo > self.hi
            or (self.values is not None and not self.values)
            or bool(self.has & self.lacks)
        )


def _num(term: Term) -> int:
    if isinstance(term.value, bool) or not isinstance(term.value, int):
        raise TypeError(f"{term.fact}: not a number")
    return term.value


def _interval(term: Term) -> tuple[int, int]:
    v = _num(term)
    return {
        "<=": (0, v),
        "<": (0, v - 1),
        ">=": (v, INF),
        ">": (v + 1, INF),
        "==": (v, v),
    }.get(term.op, (0, INF))


def _constraints(policy: CouncilPolicy, cond: Iterable[Term]) -> dict[str, _Constraint]:
    out: dict[str, _Constraint] = {}
    for term in cond:
        c = out.setdefault(term.fact, _Constraint())
        spec = policy.facts[term.fact]
        if spec.type in (FactType.INT, FactType.MONEY):
            if term.op == "!=":
                continue  # a single hole: never empties an interval worth linting
            lo, hi = _interval(term)
            c.lo, c.hi = max(c.lo, lo), min(c.hi, hi)
        elif spec.type is FactType.BOOL:
            if c.boolean is not None and c.boolean != term.value:
                c.contradiction = True
            c.boolean = bool(term.value)
        elif spec.type is FactType.ROLES:
            if term.op == "has":
                c.has |= {str(term.value)}
            else:
                c.lacks |= {str(term.value)}
        else:
            allowed = frozenset(spec.values) if c.values is None else c.values
            v = term.value
            if term.op == "==":
                allowed &= {str(v)}
            elif term.op == "!=":
                allowed -= {str(v)}
            elif term.op == "in" and isinstance(v, frozenset):
                allowed &= v
            elif term.op == "not_in" and isinstance(v, frozenset):
                allowed -= v
            c.values = allowed
    return out


def _implies(policy: CouncilPolicy, cond: tuple[Term, ...], other: tuple[Term, ...]) -> bool:
    """True when every request meeting ``cond`` also meets ``other``."""
    mine = _constraints(policy, cond)
    for term in other:
        c = mine.get(term.fact)
        if c is None:
            return False
        spec = policy.facts[term.fact]
        if spec.type in (FactType.INT, FactType.MONEY):
            if term.op == "!=":
                if not (c.lo == c.hi == term.value):
                    v = _num(term)
                    if c.lo <= v <= c.hi:
                        return False
                else:
                    return False
                continue
            lo, hi = _interval(term)
            if not (lo <= c.lo and c.hi <= hi):
                return False
        elif spec.type is FactType.BOOL:
            if c.boolean != term.value:
                return False
        elif spec.type is FactType.ROLES:
            if (term.op == "has" and term.value not in c.has) or (
                term.op == "lacks" and term.value not in c.lacks
            ):
                return False
        else:
            theirs = _constraints(policy, (term,))[term.fact].values
            if c.values is None or theirs is None or not c.values <= theirs:
                return False
    return True


def _covers(earlier: Line, later: Line) -> bool:
    """``earlier`` applies to every actor and area ``later`` applies to."""
    if earlier.area != "*" and earlier.area != later.area:
        return False
    if earlier.matching_roles is None:
        return True
    if later.matching_roles is None:
        return False
    return later.matching_roles <= earlier.matching_roles


# -- locating findings in the YAML ----------------------------------------------------------


class _Where:
    def __init__(self, doc: _yaml.Located) -> None:
        self.doc = doc
        data: dict[str, Any] = doc.data if isinstance(doc.data, dict) else {}
        self.decisions: dict[str, tuple[str | int, ...]] = {}
        self.rules: dict[str, tuple[str | int, ...]] = {}
        self.raw_rules: dict[str, Mapping[str, Any]] = {}
        for i, dec in enumerate(data.get("decisions", [])):
            self.decisions[dec["id"]] = ("decisions", i)
            for j, rule in enumerate(dec.get("rules", [])):
                self.rules[rule["id"]] = ("decisions", i, "rules", j)
                self.raw_rules[rule["id"]] = rule
        self.roles = {r["id"]: ("roles", i) for i, r in enumerate(data.get("roles", []))}
        self.areas = {a["id"]: ("areas", i) for i, a in enumerate(data.get("areas", []))}

    def at(self, path: tuple[str | int, ...]) -> tuple[str, int]:
        return self.doc.file_of(path), self.doc.line(path)

    def rule(self, rule_id: str, *sub: str | int) -> tuple[str, int]:
        return self.at((*self.rules[rule_id], *sub))


# -- the checks -----------------------------------------------------------------------------


class _Linter:
    def __init__(self, policy: CouncilPolicy, where: _Where) -> None:
        self.policy = policy
        self.where = where
        self.findings: list[Finding] = []

    def add(self, at: tuple[str, int], severity: str, code: str, message: str) -> None:
        self.findings.append(Finding(at[0], at[1], severity, code, message))

    def title(self, role: str) -> str:
        return self.policy.roles[role].title

    def run(self) -> list[Finding]:
        for decision in self.policy.decisions.values():
            dead = self._reachability(decision.id)
            self._no_allow_path(decision.id, dead)
            self._tiers(decision.id)
            self._deputies(decision.id)
        self._citations()
        self._unused()
        return self.findings

    def _reachability(self, decision_id: str) -> set[str]:
        """Rules of the decision that can never decide; reports them."""
        policy = self.policy
        lines = policy.decisions[decision_id].lines
        dead_lines: dict[str, list[str]] = {}
        for k, line in enumerate(lines):
            if any(c.empty() for c in _constraints(policy, line.cond).values()):
                dead_lines.setdefault(line.rule, []).append("its condition can never hold")
                continue
            for earlier in lines[:k]:
                if earlier.rule == line.rule or not _covers(earlier, line):
                    continue
                if _implies(policy, line.cond, earlier.cond):
                    dead_lines.setdefault(line.rule, []).append(
                        f"rule {earlier.rule} ({earlier.effect}) always decides first"
                    )
                    break
        dead: set[str] = set()
        for rule_id, reasons in dead_lines.items():
            total = sum(1 for line in lines if line.rule == rule_id)
            if len(reasons) < total:
                continue
            dead.add(rule_id)
            unsat = all(r == "its condition can never hold" for r in reasons)
            self.add(
                self.where.rule(rule_id),
                "error",
                "unsatisfiable" if unsat else "unreachable",
                f"{decision_id}: rule {rule_id} can never decide: "
                + "; ".join(dict.fromkeys(reasons)),
            )
        return dead

    def _no_allow_path(self, decision_id: str, dead: set[str]) -> None:
        decision = self.policy.decisions[decision_id]
        if any(line.effect == "allow" and line.rule not in dead for line in decision.lines):
            return
        outside = [
            self.policy.rules[r].decided_outside
            for r in decision.rules
            if self.policy.rules[r].decided_outside
        ]
        self.add(
            self.where.at(self.where.decisions[decision_id]),
            "warning" if outside else "error",
            "no-allow-path",
            f"{decision_id} ({decision.section}): no post can ever be allowed to take it"
            + (f" (decided outside the department: {outside[0]})" if outside else ""),
        )

    def _tiers(self, decision_id: str) -> None:
        policy = self.policy
        decision = policy.decisions[decision_id]
        money = sorted(
            {t.fact for line in decision.lines for t in line.cond}
            & {f for f, s in policy.facts.items() if s.type is FactType.MONEY}
        )
        for fact in money:
            tiers: list[tuple[int, int, Line]] = []
            unconstrained_allow = False
            for line in decision.lines:
                c = _constraints(policy, line.cond).get(fact)
                if c is None:
                    unconstrained_allow |= line.effect == "allow"
                elif not c.empty():
                    tiers.append((c.lo, c.hi, line))
            if not tiers:
                continue
            label = policy.facts[fact].label
            # gaps: amounts between the lowest and highest tier that no tier covers
            if not unconstrained_allow:
                covered_to = -1
                for lo, hi, line in sorted(tiers, key=lambda t: (t[0], t[1])):
                    if lo > covered_to + 1 and covered_to >= 0:
                        self.add(
                            self.where.rule(line.rule, "when"),
                            "error",
                            "tier-gap",
                            f"{decision_id}: no rule covers {label} from "
                            f"{pounds(covered_to + 1)} to {pounds(lo - 1)} "
                            f"(rule {line.rule} starts at {pounds(lo)})",
                        )
                    covered_to = max(covered_to, hi)
            # overlaps: two tiers of different rules sharing exactly a boundary amount
            seen: set[tuple[str, str]] = set()
            for lo1, hi1, l1 in tiers:
                for lo2, hi2, l2 in tiers:
                    if l1.rule == l2.rule or hi1 != lo2 or lo1 >= lo2 or hi2 <= hi1:
                        continue
                    key = (l1.rule, l2.rule)
                    if key in seen:
                        continue
                    seen.add(key)
                    self.add(
                        self.where.rule(l2.rule, "when"),
                        "error",
                        "tier-overlap",
                        f"{decision_id}: {pounds(hi1)} ({label}) is in two tiers: rule "
                        f"{l1.rule} goes up to it and rule {l2.rule} starts at it",
                    )

    def _deputies(self, decision_id: str) -> None:
        lines = self.policy.decisions[decision_id].lines
        for line in lines:
            for term in line.cond:
                if term.fact != "absent_roles" or term.op != "has":
                    continue
                absent = str(term.value)
                if absent == line.role:
                    continue  # covering a colleague in the same post
                holds = any(
                    other.effect == "allow"
                    and other.rule != line.rule
                    and (other.matching_roles is None or absent in other.matching_roles)
                    for other in lines
                ) or any(
                    o.role == absent
                    for r in self.policy.decisions[decision_id].rules
                    for o in self.policy.rules[r].obligations
                )  # the absence changes who is consulted, not who decides
                if not holds:
                    self.add(
                        self.where.rule(line.rule, "when"),
                        "warning",
                        "deputy",
                        f"{decision_id}: rule {line.rule} deputises for the {self.title(absent)},"
                        " who holds no authority for this decision",
                    )

    def _citations(self) -> None:
        for rule in self.policy.rules.values():
            if not rule.quote.strip() or not rule.section.strip():
                self.add(self.where.rule(rule.id), "error", "citation", f"rule {rule.id}: no quote")
                continue
            if rule.effect != "allow":
                continue
            text = _compiler.normalise_text(rule.quote)
            named = any(
                re.search(rf"(?<!\w){re.escape(_compiler.normalise_text(title))}s?(?!\w)", text)
                for role in rule.who
                for title in self.policy.roles[role].titles
            )
            if not named:
                titles = ", ".join(self.title(r) for r in rule.who)
                own = "quote" in self.where.raw_rules.get(rule.id, {})
                self.add(
                    self.where.rule(rule.id, "quote" if own else "who"),
                    "warning",
                    "citation",
                    f"rule {rule.id} ({rule.decision}) delegates to {titles} but its quoted text"
                    f" ({rule.section}) names none of them"
                    + ("" if own else "; the rule has no quote of its own"),
                )

    def _unused(self) -> None:
        policy = self.policy
        used_roles: set[str] = set()
        used_areas: set[str] = set()
        for rule in policy.rules.values():
            used_roles.update(r for r in rule.who if r != "*")
            used_roles.update(o.role for o in rule.obligations if o.role)
            used_areas.update(rule.areas)
        for decision in policy.decisions.values():
            for line in decision.lines:
                used_roles.update(str(t.value) for t in line.cond if t.op in ("has", "lacks"))
        # a post in the line is used when it inherits a used post's authority
        grew = True
        while grew:
            before = len(used_roles)
            used_roles.update(s for s, j in policy.edges if j in used_roles)
            grew = len(used_roles) > before
        data: dict[str, Any] = self.where.doc.data
        for role in data.get("roles", []):
            used_areas.update(_compiler._as_list(role.get("areas")))
        for rid in policy.roles:
            if rid not in used_roles:
                self.add(
                    self.where.at(self.where.roles[rid]),
                    "warning",
                    "unused-role",
                    f"role {rid} ({self.title(rid)}) is named by no rule, obligation or condition",
                )
        for aid in policy.areas:
            if aid not in used_areas:
                self.add(
                    self.where.at(self.where.areas[aid]),
                    "warning",
                    "unused-area",
                    f"area {aid} ({policy.areas[aid].name}) limits no rule and no role",
                )


def lint(schemes_dir: Path, sources_dir: Path, councils: set[str] | None = None) -> list[Finding]:
    """Compile (raising :class:`CompileError` on problems), then lint every scheme."""
    files = _compiler.compile_all(schemes_dir, sources_dir, councils)
    policies = load_files(files, json.loads(files["manifest.json"]))
    findings: list[Finding] = []
    for council, policy in sorted(policies.councils.items()):
        path, parts = _compiler.scheme_paths(schemes_dir, council)
        doc, _ = _compiler.load_scheme(path, f"policies/schemes/{path.name}", parts)
        findings.extend(_Linter(policy, _Where(doc)).run())
    return sorted(set(findings))
