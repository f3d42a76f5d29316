"""Compile scheme YAML into the typed rule table, and export it to Casbin.

``compile_all(schemes_dir, sources_dir)`` validates every ``<council>.yaml`` (JSON Schema
first, then cross-references, then every quote against the source document) and collects
*all* problems, each with file and line, before raising one :class:`CompileError`.

Per council it writes ``<council>/rules.json``, the rule table (roles with their closure,
computed here once; decisions with their lines in priority order; rules, notifications),
checks it against its own JSON Schema and reads it back through the one loader
(:func:`remit.model.policy.council_policy`), then exports ``<council>/policy.csv`` from what
was loaded (:func:`remit.model.export.casbin_policy`). ``model.conf`` is one file for every
council, and ``manifest.json`` hashes every file. Output is deterministic: the same sources
give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from remit.model import yamldoc as _yaml
from remit.model.conditions import OPERATORS_FOR_TYPE, YAML_OPERATORS, Condition, Term, render
from remit.model.errors import CompileError, PolicyError, Problem
from remit.model.export import MODEL_CONF, priority_of
from remit.model.facts import DERIVED_FROM, WELL_KNOWN, FactSpec, FactType
from remit.model.policy import (
    MANIFEST_FORMAT,
    MODEL_FILE,
    POLICY_FILE,
    RULES_FILE,
    TABLE_FORMAT,
    CouncilPolicy,
    council_policy,
    rules_schema,
)

_SCHEMA: dict[str, Any] = json.loads(
    resources.files("remit")
    .joinpath("compiler/schema/scheme.schema.json")
    .read_text(encoding="utf-8")
)
_RULES_VALIDATOR = Draft202012Validator(rules_schema())


@dataclass
class Output:
    """Compiled files of one council: relative path -> bytes."""

    council: str
    files: dict[str, bytes] = field(default_factory=dict)


class _Collector:
    def __init__(self, doc: _yaml.Located) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def add(self, path: Iterable[str | int], message: str) -> None:
        p = tuple(path)
        self.problems.append(Problem(self.doc.file_of(p), self.doc.line(p), _dotted(p), message))


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


_TAG = re.compile(r"<[^>]*>")


def normalise_text(text: str) -> str:
    """Fold a source or a quote for comparison: case, markup, quotes, spacing."""
    text = _TAG.sub(" ", text)
    text = text.replace("**", " ").replace("\u2019", "'").replace("\u2018", "'")
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2013", "-")
    text = text.replace("\u2014", "-")
    text = re.sub(r"[\s\u00a0]+", " ", text)
    return text.strip().lower()


def quote_found(quote: str, source: str) -> bool:
    """True when every ``...``-separated part of ``quote`` occurs in ``source`` in order."""
    pos = 0
    for part in (normalise_text(p) for p in quote.split("...")):
        if not part:
            continue
        found = source.find(part, pos)
        if found < 0:
            return False
        pos = found + len(part)
    return True


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PART_KEYS = (
    "roles",
    "areas",
    "facts",
    "decisions",
    "notifications",
    "exclusions",
    "source_rows",
)


def load_scheme(
    path: Path, display: str | None = None, parts: Iterable[Path] = ()
) -> tuple[_yaml.Located, list[Problem]]:
    """Load one scheme file and merge its parts, keeping every value's file and line.

    Returns the merged document (``data`` is None when the main file cannot be read) and
    the YAML and merge problems found. The compiler and ``remit lint`` both start here.
    """
    parts = tuple(parts)
    doc, yaml_problems = _yaml.load(path, display)
    problems = [Problem(doc.file, line, "", message) for line, message in yaml_problems]
    if doc.data is None:
        return doc, problems
    for part_path in parts:
        shown = (
            f"{Path(display).parent}/{path.stem}.d/{part_path.name}" if display else str(part_path)
        )
        part, part_problems = _yaml.load(part_path, shown)
        problems.extend(Problem(part.file, ln, "", msg) for ln, msg in part_problems)
        if part.data is None:
            continue
        if not isinstance(doc.data, dict):
            break
        for key in doc.merge_lists(part, PART_KEYS):
            problems.append(
                Problem(
                    part.file,
                    part.line((key,)),
                    key,
                    f"a part may only hold {', '.join(PART_KEYS)}",
                )
            )
    return doc, problems


def scheme_paths(schemes_dir: Path, council: str) -> tuple[Path, list[Path]]:
    """The scheme file of ``council`` and its parts (``<council>.d/*.yaml``), sorted."""
    return schemes_dir / f"{council}.yaml", sorted((schemes_dir / f"{council}.d").glob("*.yaml"))


def compile_scheme(
    path: Path, sources_dir: Path, display: str | None = None, parts: Iterable[Path] = ()
) -> tuple[Output | None, list[Problem]]:
    """Compile one scheme file plus its parts. Returns (output or None, problems).

    Parts (``<council>.d/*.yaml``) hold further roles, areas, facts, decisions and
    notifications of the same scheme, so a long scheme can be kept one section per file.
    """
    parts = tuple(parts)
    doc, problems = load_scheme(path, display, parts)
    col = _Collector(doc)
    col.problems.extend(problems)
    if doc.data is None:
        return None, col.problems
    for err in Draft202012Validator(_SCHEMA).iter_errors(doc.data):
        col.add(tuple(err.absolute_path), f"schema: {err.message}")
    if col.problems:
        return None, col.problems
    return _Compiler(doc, col, path, sources_dir, tuple(parts)).run()


class _Compiler:
    def __init__(
        self,
        doc: _yaml.Located,
        col: _Collector,
        path: Path,
        sources_dir: Path,
        parts: tuple[Path, ...],
    ) -> None:
        self.doc = doc
        self.parts = parts
        self.data: dict[str, Any] = doc.data
        self.col = col
        self.path = path
        self.sources_dir = sources_dir
        self.roles: dict[str, dict[str, Any]] = {}
        self.areas: dict[str, dict[str, Any]] = {}
        self.facts: dict[str, FactSpec] = dict(WELL_KNOWN)
        self.declared: dict[str, dict[str, Any]] = {}
        self.rule_ids: set[str] = set()
        self.source_text = ""

    # -- checks -----------------------------------------------------------------------
    def run(self) -> tuple[Output | None, list[Problem]]:
        document = self.data["document"]
        council = document["council"]
        if council != self.path.stem:
            self.col.add(
                ("document", "council"),
                f"council {council!r} must match the file name {self.path.stem!r}",
            )
        seed = self.sources_dir / document["seed"]
        if seed.is_file():
            self.source_text = normalise_text(seed.read_text(encoding="utf-8"))
        else:
            self.col.add(
                ("document", "seed"),
                f"source document {document['seed']} not found in {self.sources_dir}",
            )
        self._check_areas()
        self._check_roles()
        self._check_facts()
        self._check_deviation()
        decisions = self._check_decisions()
        events = self._check_events()
        self._check_coverage_keys()
        if self.col.problems:
            return None, self.col.problems
        return self._emit(council, decisions, events), []

    def _check_areas(self) -> None:
        for i, area in enumerate(self.data.get("areas", [])):
            if area["id"] in self.areas:
                self.col.add(("areas", i, "id"), f"duplicate area {area['id']!r}")
            self.areas[area["id"]] = area

    def _check_roles(self) -> None:
        for i, role in enumerate(self.data["roles"]):
            if role["id"] in self.roles:
                self.col.add(("roles", i, "id"), f"duplicate role {role['id']!r}")
            self.roles[role["id"]] = role
        for i, role in enumerate(self.data["roles"]):
            for key in ("reports_to", "includes"):
                for ref in _as_list(role.get(key)):
                    if ref not in self.roles:
                        self.col.add(("roles", i, key), f"unknown role {ref!r}")
                    elif ref == role["id"]:
                        self.col.add(("roles", i, key), "a role cannot refer to itself")
            for k, ref in enumerate(_as_list(role.get("holds"))):
                held = self.roles.get(ref)
                if held is None:
                    self.col.add(("roles", i, "holds", k), f"unknown role {ref!r}")
                elif ref == role["id"]:
                    self.col.add(("roles", i, "holds", k), "a role cannot hold itself")
                elif held.get("kind", "post") != "post" or role.get("kind", "post") != "post":
                    self.col.add(
                        ("roles", i, "holds", k), "only a post holds a function, and only a post's"
                    )
                elif _as_list(held.get("holds")):
                    self.col.add(
                        ("roles", i, "holds", k), f"{ref!r} holds functions itself (one level only)"
                    )
            for ref in _as_list(role.get("areas")):
                if ref not in self.areas:
                    self.col.add(("roles", i, "areas"), f"unknown area {ref!r}")
            if role.get("kind", "post") != "post" and role.get("reports_to"):
                self.col.add(("roles", i, "reports_to"), "only posts sit in the line hierarchy")
        # cycles in the inheritance graph
        for rid in self.roles:
            if rid in self._juniors(rid, strict=True):
                i = list(self.roles).index(rid)
                self.col.add(("roles", i, "reports_to"), f"role {rid!r} is its own senior (cycle)")

    def _edges(self) -> list[tuple[str, str]]:
        """(senior, junior) pairs: the senior inherits the junior's permissions."""
        edges: list[tuple[str, str]] = []
        for role in self.data["roles"]:
            if role.get("kind", "post") == "post" and not role.get("independent"):
                for boss in _as_list(role.get("reports_to")):
                    if boss in self.roles:
                        edges.append((boss, role["id"]))
            for inc in _as_list(role.get("includes")):
                if inc in self.roles:
                    edges.append((role["id"], inc))
        return edges

    def _juniors(self, rid: str, strict: bool = False) -> set[str]:
        edges = self._edges()
        seen: set[str] = set()
        stack = [j for s, j in edges if s == rid]
        while stack:
            r = stack.pop()
            if r in seen:
                continue
            seen.add(r)
            stack.extend(j for s, j in edges if s == r)
        if not strict:
            seen.add(rid)
        return seen

    def _check_facts(self) -> None:
        for i, fact in enumerate(self.data.get("facts", [])):
            fid = fact["id"]
            if fid in self.facts:
                what = "a well-known fact" if fid in WELL_KNOWN else "declared twice"
                self.col.add(("facts", i, "id"), f"fact {fid!r} is {what}")
                continue
            ftype = FactType(fact["type"])
            values = tuple(fact.get("values", ()))
            if ftype is FactType.ENUM and not values:
                self.col.add(("facts", i, "values"), "an enum fact needs values")
            if ftype is not FactType.ENUM and values:
                self.col.add(("facts", i, "values"), "only enum facts take values")
            self.facts[fid] = FactSpec(fid, ftype, fact["label"], values)
            self.declared[fid] = fact

    def _check_deviation(self) -> None:
        dev = self.data.get("deviation")
        if dev is None:
            return
        for k, rid in enumerate(dev["roles"]):
            if rid not in self.roles:
                self.col.add(("deviation", "roles", k), f"unknown role {rid!r}")
        self._check_quote(("deviation", "quote"), dev["quote"])

    def _check_coverage_keys(self) -> None:
        """``exclusions`` quote the source; ``source_rows`` patterns are regular expressions.

        Neither is compiled into the rule table: they describe the source for
        ``remit coverage`` (:mod:`remit.tools.coverage`), not what the engine decides.
        """
        for i, exclusion in enumerate(self.data.get("exclusions", [])):
            self._check_quote(("exclusions", i, "quote"), exclusion["quote"])
        for i, block in enumerate(self.data.get("source_rows", [])):
            for key in ("headings", "skip"):
                for k, pattern in enumerate(block.get(key, [])):
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        self.col.add(("source_rows", i, key, k), f"not a regular expression: {exc}")

    def _check_quote(self, path: tuple[str | int, ...], quote: str) -> None:
        if self.source_text and not quote_found(quote, self.source_text):
            self.col.add(path, "quote not found in the source document (use ... to join fragments)")

    def _check_decisions(self) -> list[dict[str, Any]]:
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for i, dec in enumerate(self.data["decisions"]):
            base = ("decisions", i)
            if dec["id"] in seen:
                self.col.add((*base, "id"), f"duplicate decision {dec['id']!r}")
            seen.add(dec["id"])
            self._check_quote((*base, "quote"), dec["quote"])
            rules = [
                self._check_rule(dec, (*base, "rules", j), r) for j, r in enumerate(dec["rules"])
            ]
            rule_ids = {r["id"]: r for r in dec["rules"]}
            for j, rule in enumerate(dec["rules"]):
                target = rule.get("exception_to")
                if target is None:
                    continue
                if target not in rule_ids:
                    self.col.add(
                        (*base, "rules", j, "exception_to"), f"no rule {target!r} in this decision"
                    )
                elif rule_ids[target].get("effect", "allow") != "deny":
                    self.col.add(
                        (*base, "rules", j, "exception_to"),
                        "exceptions are to prohibitions (effect: deny)",
                    )
                if rule.get("effect", "allow") != "allow":
                    self.col.add((*base, "rules", j, "effect"), "an exception must be an allow")
            out.append({"decision": dec, "rules": rules})
        return out

    def _people(self, path: tuple[str | int, ...], people: list[Any]) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for k, person in enumerate(people):
            if isinstance(person, dict):
                out.append({"party": str(person["party"])})
            elif person not in self.roles:
                self.col.add((*path, k), f"unknown role {person!r} (write {{party: ...}})")
            else:
                out.append({"role": str(person)})
        return out

    def _check_events(self) -> dict[str, Any]:
        """Notifications (reportable events): quotes, people, conditions, implied-by links."""
        out: dict[str, Any] = {}
        for i, event in enumerate(self.data.get("notifications", [])):
            base: tuple[str | int, ...] = ("notifications", i)
            if event["id"] in out:
                self.col.add((*base, "id"), f"duplicate notification {event['id']!r}")
            self._check_quote((*base, "quote"), event["quote"])
            if "when" in event and "when_any" in event:
                self.col.add(base, "use when or when_any, not both")
            alternatives: list[dict[str, Any]] = event.get("when_any", [event.get("when", {})])
            paths: list[tuple[str | int, ...]] = (
                [(*base, "when_any", k) for k in range(len(alternatives))]
                if "when_any" in event
                else [(*base, "when")]
            )
            conditions = [
                tuple(self._terms(alt, path)) for alt, path in zip(alternatives, paths, strict=True)
            ]
            out[event["id"]] = {
                "section": event["section"],
                "heading": event.get("heading", ""),
                "wording": event["wording"],
                "quote": event["quote"],
                "reading": event.get("reading", ""),
                "audience": self._people((*base, "audience"), event["audience"]),
                "by": self._people((*base, "by"), event["by"]),
                "timescale": event["timescale"],
                "conditions": [_condition(c) for c in conditions if c],
                "facts": sorted({t.fact for c in conditions for t in c}),
            }
        for i, dec in enumerate(self.data["decisions"]):
            for k, eid in enumerate(dec.get("implies", [])):
                if eid not in out:
                    self.col.add(("decisions", i, "implies", k), f"unknown notification {eid!r}")
        return out

    def _check_rule(
        self, dec: dict[str, Any], path: tuple[str | int, ...], rule: dict[str, Any]
    ) -> dict[str, Any]:
        if rule["id"] in self.rule_ids:
            self.col.add((*path, "id"), f"duplicate rule id {rule['id']!r}")
        self.rule_ids.add(rule["id"])
        effect = rule.get("effect", "allow")
        who = rule["who"]
        if who == "anyone":
            if effect != "deny":
                self.col.add((*path, "who"), "'anyone' is only for prohibitions (effect: deny)")
        else:
            for k, rid in enumerate(who):
                if rid not in self.roles:
                    self.col.add((*path, "who", k), f"unknown role {rid!r}")
        for k, aid in enumerate(rule.get("areas", [])):
            if aid not in self.areas:
                self.col.add((*path, "areas", k), f"unknown area {aid!r}")
        if "decided_outside" in rule and effect != "deny":
            self.col.add((*path, "decided_outside"), "only a prohibition names who decides outside")
        if "quote" in rule:
            self._check_quote((*path, "quote"), rule["quote"])
        if "when" in rule and "when_any" in rule:
            self.col.add(path, "use when or when_any, not both")
        alternatives: list[dict[str, Any]] = (
            rule["when_any"] if "when_any" in rule else [rule.get("when", {})]
        )
        alt_paths: list[tuple[str | int, ...]] = (
            [(*path, "when_any", k) for k in range(len(alternatives))]
            if "when_any" in rule
            else [(*path, "when")]
        )
        preconditions: list[Term] = []
        obligations = []
        for k, obl in enumerate(rule.get("obligations", [])):
            opath = (*path, "obligations", k)
            if "role" in obl and obl["role"] not in self.roles:
                self.col.add((*opath, "role"), f"unknown role {obl['role']!r}")
            if obl["kind"] == "precondition":
                fid = obl.get("fact")
                spec = self.facts.get(fid) if fid else None
                if spec is None or spec.type is not FactType.BOOL:
                    self.col.add(
                        opath, "a precondition names a bool fact (fact:) that records it was met"
                    )
                else:
                    preconditions.append(Term(spec.id, "==", True))
            elif "fact" in obl:
                self.col.add((*opath, "fact"), "only preconditions name a fact")
            if obl["kind"] == "record" and "casenote" not in obl:
                self.col.add(opath, "a record obligation names its casenote type")
            obligations.append(dict(obl))
        conditions: list[Condition] = []
        for alt, apath in zip(alternatives, alt_paths, strict=True):
            terms = [*self._terms(alt, apath)]
            for pre in preconditions:
                if pre not in terms:
                    terms.append(pre)
            conditions.append(tuple(terms))
        return {
            "rule": rule,
            "effect": effect,
            "conditions": conditions,
            "obligations": obligations,
        }

    def _terms(self, when: Mapping[str, Any], path: tuple[str | int, ...]) -> Iterable[Term]:
        for fid, spec_value in when.items():
            fpath = (*path, fid)
            spec = self.facts.get(fid)
            if spec is None:
                self.col.add(fpath, f"unknown fact {fid!r} (declare it under facts:)")
                continue
            tests: dict[str, Any] = (
                dict(spec_value) if isinstance(spec_value, dict) else {"is": spec_value}
            )
            for key, raw in tests.items():
                if key == "has_all":  # every one of these posts: one `has` term each
                    if spec.type is not FactType.ROLES:
                        self.col.add(
                            fpath, f"'has_all' does not apply to {spec.type.value} fact {fid!r}"
                        )
                        continue
                    for role in raw:
                        value = self._value(spec, "has", role, fpath)
                        if value is not None:
                            yield Term(fid, "has", value)
                    continue
                op = YAML_OPERATORS[key]
                if op not in OPERATORS_FOR_TYPE[spec.type]:
                    self.col.add(fpath, f"{key!r} does not apply to {spec.type.value} fact {fid!r}")
                    continue
                value = self._value(spec, op, raw, fpath)
                if value is not None:
                    yield Term(fid, op, value)

    def _value(
        self, spec: FactSpec, op: str, raw: Any, path: tuple[str | int, ...]
    ) -> bool | int | str | frozenset[str] | None:
        t = spec.type
        if t is FactType.BOOL:
            if not isinstance(raw, bool):
                self.col.add(path, f"{spec.id} is a bool: write true or false")
                return None
            return raw
        if t in (FactType.INT, FactType.MONEY):
            if isinstance(raw, bool) or not isinstance(raw, int):
                unit = "an integer number of pence" if t is FactType.MONEY else "an integer"
                self.col.add(path, f"{spec.id} takes {unit}")
                return None
            return raw
        if t is FactType.ROLES:
            if raw not in self.roles:
                self.col.add(path, f"unknown role {raw!r}")
                return None
            return str(raw)
        values = list(raw) if op in ("in", "not_in") else [raw]
        bad = [v for v in values if v not in spec.values]
        if bad:
            self.col.add(
                path, f"{spec.id} has no value {bad[0]!r} (values: {', '.join(spec.values)})"
            )
            return None
        return frozenset(values) if op in ("in", "not_in") else str(raw)

    # -- output -----------------------------------------------------------------------
    def _rank(self) -> dict[str, int]:
        """Depth below the top of the line: higher is more junior. Panels/external: 0."""
        edges = self._edges()
        rank: dict[str, int] = {}

        def depth(rid: str, trail: frozenset[str]) -> int:
            if rid in rank:
                return rank[rid]
            bosses = [s for s, j in edges if j == rid and s not in trail]
            d = 0 if not bosses else 1 + max(depth(b, trail | {rid}) for b in bosses)
            rank[rid] = d
            return d

        for rid in self.roles:
            depth(rid, frozenset())
        return rank

    def _closure(self) -> dict[str, list[str]]:
        """The role closure, computed once here: role -> every role that inherits it."""
        return {
            rid: sorted(s for s in self.roles if rid in self._juniors(s, strict=True))
            for rid in self.roles
        }

    def _emit(
        self, council: str, decisions: list[dict[str, Any]], events: dict[str, Any]
    ) -> Output:
        """Write the rule table, check it (schema, then the loader), and export it."""
        document = self.data["document"]
        source_bytes = b"".join(p.read_bytes() for p in (self.path, *self.parts))
        rank = self._rank()
        closure = self._closure()
        table_decisions: list[dict[str, Any]] = []
        table_rules: dict[str, Any] = {}
        position = 0
        for entry in decisions:
            dec = entry["decision"]
            used: set[str] = set()
            lines: list[dict[str, Any]] = []
            for compiled in entry["rules"]:
                rule = compiled["rule"]
                effect = compiled["effect"]
                priority = priority_of(effect, rule.get("exception_to", ""))
                who = ["*"] if rule["who"] == "anyone" else rule["who"]
                for cond in compiled["conditions"]:
                    used.update(t.fact for t in cond)
                    for role in who:
                        for area in rule.get("areas", ["*"]):
                            lines.append(
                                {
                                    "position": position,
                                    "role": role,
                                    "area": area,
                                    "condition": _condition(cond),
                                    "effect": effect,
                                    "priority": priority,
                                    "rule": rule["id"],
                                }
                            )
                            position += 1
                table_rules[rule["id"]] = {
                    "decision": dec["id"],
                    "effect": effect,
                    "who": who,
                    "areas": rule.get("areas", []),
                    "conditions": [render(c) for c in compiled["conditions"]],
                    "section": rule.get("section", dec["section"]),
                    "quote": rule.get("quote", dec["quote"]),
                    "reading": rule.get("reading", ""),
                    "exception_to": rule.get("exception_to", ""),
                    "decided_outside": rule.get("decided_outside", ""),
                    "obligations": compiled["obligations"],
                }
            required = sorted(
                DERIVED_FROM.get(f, f)
                for f in used
                if not self.facts[f].defaults_when_absent and f not in ("grant_remaining",)
            )
            # Casbin's priority effect: a stable sort by priority keeps file order within one
            lines.sort(key=lambda line: (line["priority"], line["position"]))
            table_decisions.append(
                {
                    "id": dec["id"],
                    "section": dec["section"],
                    "heading": dec.get("heading", ""),
                    "wording": dec["wording"],
                    "quote": dec["quote"],
                    "procedure": dec.get("procedure", ""),
                    "reading": dec.get("reading", ""),
                    "facts": sorted(used),
                    "required_facts": sorted(set(required)),
                    "implies": list(dec.get("implies", [])),
                    "rules": [c["rule"]["id"] for c in entry["rules"]],
                    "lines": lines,
                }
            )
        scheme = f"policies/schemes/{self.path.name}"
        table = {
            "format": TABLE_FORMAT,
            "council": council,
            "document": {
                "name": document["name"],
                "title": document["title"],
                "effective": document["effective"],
                "seed": document["seed"],
                "reading": document.get("reading", ""),
            },
            "source": {
                "scheme": scheme,
                "parts": [f"policies/schemes/{self.path.stem}.d/{p.name}" for p in self.parts],
                "sha256": _sha256(source_bytes),
            },
            "roles": {
                rid: {
                    "titles": role["titles"],
                    "kind": role.get("kind", "post"),
                    "independent": bool(role.get("independent", False)),
                    "all_areas": bool(role.get("all_areas", False)),
                    "areas": _as_list(role.get("areas")),
                    "holds": sorted(set(_as_list(role.get("holds")))),
                    "rank": rank[rid],
                    "reading": role.get("reading", ""),
                    "inherited_by": closure[rid],
                }
                for rid, role in self.roles.items()
            },
            "edges": [list(e) for e in sorted(set(self._edges()))],
            "areas": {
                aid: {
                    "name": a["name"],
                    "titles": a.get("titles", []),
                    "reading": a.get("reading", ""),
                }
                for aid, a in self.areas.items()
            },
            "facts": {
                fid: {
                    "type": spec.type.value,
                    "label": spec.label,
                    "values": list(spec.values),
                    "reading": self.declared[fid].get("reading", ""),
                }
                for fid, spec in self.facts.items()
                if fid in self.declared
            },
            "decisions": table_decisions,
            "rules": table_rules,
            "notifications": events,
            "deviation": _deviation(self.data.get("deviation")),
        }
        table_bytes = (
            json.dumps(table, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        ).encode()
        policy = self._check_table(council, table_bytes)
        out = Output(council)
        out.files[f"{council}/{RULES_FILE}"] = table_bytes
        out.files[f"{council}/{POLICY_FILE}"] = policy.policy_text.encode()
        return out

    def _check_table(self, council: str, table_bytes: bytes) -> CouncilPolicy:
        """The compiler checks its own output as a replica will read it: the JSON Schema
        of rules.json, then the one loader. A failure here is a compiler fault."""
        table = json.loads(table_bytes)
        found = [
            f"{council}/{RULES_FILE} fails its schema at"
            f" /{'/'.join(str(p) for p in err.absolute_path)}: {err.message}"
            for err in _RULES_VALIDATOR.iter_errors(table)
        ]
        if not found:
            try:
                return council_policy(council, table)
            except PolicyError as exc:
                found.append(str(exc))
        raise CompileError(
            [Problem(self.doc.file, 1, "", f"compiler fault: {msg}") for msg in found]
        )


def _condition(cond: Condition) -> dict[str, Any]:
    """A condition as the table holds it: its compiled text and its parsed terms."""
    terms = [
        {
            "fact": t.fact,
            "op": t.op,
            "value": sorted(t.value) if isinstance(t.value, frozenset) else t.value,
        }
        for t in cond
    ]
    return {"text": render(cond), "terms": terms}


def _deviation(dev: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if dev is None:
        return None
    return {
        "roles": list(dev["roles"]),
        "section": dev["section"],
        "quote": dev["quote"],
        "reading": dev.get("reading", ""),
    }


def compile_all(
    schemes_dir: Path, sources_dir: Path, councils: set[str] | None = None
) -> dict[str, bytes]:
    """Compile every scheme (or only ``councils``).

    Returns relative path -> bytes, including ``manifest.json``.
    """
    files: dict[str, bytes] = {}
    problems: list[Problem] = []
    sources: dict[str, str] = {}
    schemes = sorted(
        p for p in schemes_dir.glob("*.yaml") if councils is None or p.stem in councils
    )
    if not schemes:
        problems.append(Problem(str(schemes_dir), 1, "", "no scheme files (*.yaml)"))
    for path in schemes:
        display = f"policies/schemes/{path.name}"
        parts = sorted((schemes_dir / f"{path.stem}.d").glob("*.yaml"))
        out, found = compile_scheme(path, sources_dir, display, parts)
        problems.extend(found)
        sources[display] = _sha256(path.read_bytes())
        for part in parts:
            sources[f"policies/schemes/{path.stem}.d/{part.name}"] = _sha256(part.read_bytes())
        if out is not None:
            files.update(out.files)
    if problems:
        raise CompileError(problems)
    councils_out = sorted({p.split("/")[0] for p in files})
    files[MODEL_FILE] = MODEL_CONF.encode()  # one model for every council
    manifest = {
        "format": MANIFEST_FORMAT,
        "councils": councils_out,
        "files": {p: _sha256(b) for p, b in sorted(files.items())},
        "sources": sources,
    }
    manifest["version"] = _sha256(json.dumps(manifest["files"], sort_keys=True).encode())[:16]
    files["manifest.json"] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    return files


def write(files: Mapping[str, bytes], out_dir: Path) -> None:
    """Replace ``out_dir`` contents with ``files`` (stale councils removed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = {out_dir / p for p in files}
    for old in sorted(out_dir.rglob("*"), reverse=True):
        if old.is_file() and old not in wanted:
            old.unlink()
        elif old.is_dir() and not any(old.iterdir()):
            old.rmdir()
    for rel, data in files.items():
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)


def stale(files: Mapping[str, bytes], out_dir: Path) -> list[str]:
    """Paths under ``out_dir`` that differ from ``files`` (missing, changed or extra)."""
    diffs = [
        rel
        for rel, data in files.items()
        if not (out_dir / rel).is_file() or (out_dir / rel).read_bytes() != data
    ]
    if out_dir.is_dir():
        have = {str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file()}
        diffs.extend(sorted(have - set(files)))
    return sorted(diffs)
