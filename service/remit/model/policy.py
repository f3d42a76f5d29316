"""Load compiled policy (never scheme YAML) into immutable, indexed form.

The index is built from the Casbin ``policy.csv`` itself (its ``p`` and ``g`` lines);
``index.json`` supplies only words: titles, citations, obligations. ``manifest.json`` hashes
every file; a file whose hash does not match is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from remit.model.conditions import Condition, FactValue, parse
from remit.model.errors import PolicyError
from remit.model.facts import WELL_KNOWN, FactSpec, FactType
from remit.model.words import summarise

# the shape of every id a request may name (council, decision, role, area, fact)
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Line:
    """One compiled ``p`` line, in evaluation order."""

    position: int
    decision: str
    role: str
    area: str
    cond_text: str
    cond: Condition
    effect: str
    priority: int
    rule: str
    # actor roles this line matches (None: anyone). Allows: the role and every senior.
    matching_roles: frozenset[str] | None
    summary: str = ""  # the condition in plain words, precomputed at load


@dataclass(frozen=True)
class Role:
    id: str
    titles: tuple[str, ...]
    kind: str
    independent: bool
    all_areas: bool
    rank: int
    seniors: frozenset[str]  # roles that inherit this role's permissions (not itself)

    @property
    def title(self) -> str:
        return self.titles[0]


@dataclass(frozen=True)
class Obligation:
    kind: str
    text: str
    role: str = ""
    party: str = ""
    timescale: str = ""
    casenote: str = ""
    fact: str = ""


@dataclass(frozen=True)
class Rule:
    id: str
    decision: str
    effect: str
    who: tuple[str, ...]
    areas: tuple[str, ...]
    conditions: tuple[str, ...]
    section: str
    quote: str
    reading: str
    exception_to: str
    decided_outside: str
    obligations: tuple[Obligation, ...]


@dataclass(frozen=True)
class Decision:
    id: str
    section: str
    heading: str
    wording: str
    quote: str
    procedure: str
    reading: str
    facts: tuple[str, ...]
    required_facts: tuple[str, ...]
    rules: tuple[str, ...]
    lines: tuple[Line, ...]
    implies: tuple[str, ...] = ()  # notifications (event ids) that taking it reports


@dataclass(frozen=True)
class Person:
    """Someone told or telling: a role of the scheme, or a party outside it."""

    role: str = ""
    party: str = ""

    @property
    def name(self) -> str:
        return self.role or self.party


@dataclass(frozen=True)
class Event:
    """A reportable event (a notification row, e.g. Torbay Appendix 1)."""

    id: str
    section: str
    heading: str
    wording: str
    quote: str
    reading: str
    audience: tuple[Person, ...]
    by: tuple[Person, ...]
    timescale: str
    # alternatives: any may hold (each all-of); empty: unconditional
    conditions: tuple[Condition, ...]
    cond_texts: tuple[str, ...]
    facts: tuple[str, ...]


@dataclass(frozen=True)
class DeviationClause:
    """Who may agree a deviation from the scheme, and where the scheme says so."""

    roles: tuple[str, ...]
    section: str
    quote: str
    reading: str


@dataclass(frozen=True)
class Area:
    id: str
    name: str


@dataclass(frozen=True)
class CouncilPolicy:
    council: str
    name: str
    title: str
    effective: str
    seed: str
    roles: Mapping[str, Role]
    areas: Mapping[str, Area]
    facts: Mapping[str, FactSpec]  # well-known and declared
    declared_facts: tuple[str, ...]
    decisions: Mapping[str, Decision]
    rules: Mapping[str, Rule]
    edges: tuple[tuple[str, str], ...]
    model_text: str
    policy_text: str
    deviation: DeviationClause | None = None
    events: Mapping[str, Event] = field(default_factory=lambda: MappingProxyType({}))
    # what an omitted bool / role-set fact defaults to (false / empty), precomputed at load
    fact_defaults: Mapping[str, FactValue] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class PolicySet:
    version: str
    councils: Mapping[str, CouncilPolicy]


def _read_verified(root: Path, rel: str, manifest: Mapping[str, str]) -> bytes:
    path = root / rel
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{rel}: cannot read ({exc.strerror})") from exc
    want = manifest.get(rel)
    if want is None:
        raise PolicyError(f"{rel}: not listed in manifest.json")
    if hashlib.sha256(data).hexdigest() != want:
        raise PolicyError(f"{rel}: content does not match its manifest hash")
    return data


def load_dir(root: Path) -> PolicySet:
    """Load and verify every council under a compiled policy directory."""
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{root}/manifest.json: cannot load ({exc})") from exc
    files = {rel: _read_verified(root, rel, manifest["files"]) for rel in manifest["files"]}
    return load_files(files, manifest)


def load_files(files: Mapping[str, bytes], manifest: Mapping[str, Any]) -> PolicySet:
    """Build a PolicySet from compiled file contents (already verified)."""
    councils: dict[str, CouncilPolicy] = {}
    for council in manifest["councils"]:
        if not isinstance(council, str) or not NAME_PATTERN.fullmatch(council):
            raise PolicyError(f"manifest.json: council id {council!r} is not a valid name")
        try:
            councils[council] = _load_council(
                council,
                files[f"{council}/model.conf"].decode(),
                files[f"{council}/policy.csv"].decode(),
                json.loads(files[f"{council}/index.json"]),
            )
        except KeyError as exc:
            raise PolicyError(f"{council}: missing compiled file or field {exc}") from exc
        except ValueError as exc:
            raise PolicyError(f"{council}: {exc}") from exc
    return PolicySet(str(manifest["version"]), MappingProxyType(councils))


def _load_council(
    council: str, model_text: str, policy_text: str, index: Mapping[str, Any]
) -> CouncilPolicy:
    if index.get("council") != council:
        raise ValueError("index.json names another council")
    edges: list[tuple[str, str]] = []
    raw_lines: list[list[str]] = []
    for n, raw in enumerate(policy_text.splitlines(), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        # interned: the same ids recur on every line and in every council
        tokens = [sys.intern(t.strip()) for t in raw.split(",")]
        if tokens[0] == "g" and len(tokens) == 3:
            edges.append((tokens[1], tokens[2]))
        elif tokens[0] == "p" and len(tokens) == 8:
            raw_lines.append(tokens[1:])
        else:
            raise ValueError(f"policy.csv line {n}: not a g or p line of the model")

    role_ids = set(index["roles"])
    for kind in ("roles", "areas", "decisions", "facts"):
        for name in index[kind]:
            if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
                raise ValueError(f"index.json: {kind} id {name!r} is not a valid name")
    seniors: dict[str, set[str]] = {r: set() for r in role_ids}
    for senior, junior in edges:
        if senior not in role_ids or junior not in role_ids:
            raise ValueError(f"g line names an unknown role: {senior}, {junior}")
    # transitive closure: seniors[j] = everyone who inherits j's permissions
    changed = True
    for senior, junior in edges:
        seniors[junior].add(senior)
    while changed:
        changed = False
        for junior in role_ids:
            extra = set().union(*(seniors[s] for s in seniors[junior])) - seniors[junior]
            if extra:
                seniors[junior] |= extra
                changed = True

    roles = {
        rid: Role(
            rid,
            tuple(r["titles"]),
            r["kind"],
            bool(r["independent"]),
            bool(r["all_areas"]),
            int(r["rank"]),
            frozenset(seniors[rid]),
        )
        for rid, r in index["roles"].items()
    }
    areas = {aid: Area(aid, a["name"]) for aid, a in index["areas"].items()}
    facts: dict[str, FactSpec] = dict(WELL_KNOWN)
    for fid, f in index["facts"].items():
        facts[fid] = FactSpec(fid, FactType(f["type"]), f["label"], tuple(f["values"]))

    rules = {
        rid: Rule(
            rid,
            r["decision"],
            r["effect"],
            tuple(r["who"]),
            tuple(r["areas"]),
            tuple(r["conditions"]),
            r["section"],
            r["quote"],
            r["reading"],
            r["exception_to"],
            r["decided_outside"],
            tuple(Obligation(**o) for o in r["obligations"]),
        )
        for rid, r in index["rules"].items()
    }

    # Casbin's priority effect: stable sort by priority, file order within a priority.
    parsed: list[Line] = []
    for position, (decision, role, area, cond_text, effect, priority, rule) in enumerate(raw_lines):
        if rule not in rules or rules[rule].decision != decision:
            raise ValueError(f"p line names rule {rule!r} not in index.json for {decision}")
        if effect not in ("allow", "deny"):
            raise ValueError(f"p line for {rule}: effect {effect!r}")
        if role != "*" and role not in roles:
            raise ValueError(f"p line for {rule}: unknown role {role!r}")
        if area != "*" and area not in areas:
            raise ValueError(f"p line for {rule}: unknown area {area!r}")
        cond = parse(cond_text)
        for term in cond:
            if term.fact not in facts:
                raise ValueError(f"p line for {rule}: unknown fact {term.fact!r}")
        if role == "*":
            matching: frozenset[str] | None = None
        elif effect == "allow":
            matching = frozenset({role}) | roles[role].seniors
        else:
            matching = frozenset({role})
        summary = summarise(facts, lambda r: roles[r].title, cond)
        parsed.append(
            Line(
                position,
                decision,
                role,
                area,
                cond_text,
                cond,
                effect,
                int(priority),
                rule,
                matching,
                summary,
            )
        )
    parsed.sort(key=lambda line: (line.priority, line.position))

    by_decision: dict[str, list[Line]] = {}
    for line in parsed:  # one pass, priority order kept within each decision
        by_decision.setdefault(line.decision, []).append(line)
    decisions: dict[str, Decision] = {}
    for did, d in index["decisions"].items():
        decisions[did] = Decision(
            did,
            d["section"],
            d["heading"],
            d["wording"],
            d["quote"],
            d["procedure"],
            d["reading"],
            tuple(d["facts"]),
            tuple(d["required_facts"]),
            tuple(d["rules"]),
            tuple(by_decision.get(did, ())),
            tuple(d.get("implies", ())),
        )
    for line in parsed:
        if line.decision not in decisions:
            raise ValueError(f"p line for unknown decision {line.decision!r}")

    events: dict[str, Event] = {}
    for eid, e in index.get("notifications", {}).items():
        conds = tuple(parse(text) for text in e["conditions"])
        for cond in conds:
            for term in cond:
                if term.fact not in facts:
                    raise ValueError(f"notification {eid}: unknown fact {term.fact!r}")
        for person in (*e["audience"], *e["by"]):
            if "role" in person and person["role"] not in roles:
                raise ValueError(f"notification {eid}: unknown role {person['role']!r}")
        events[eid] = Event(
            eid,
            e["section"],
            e["heading"],
            e["wording"],
            e["quote"],
            e["reading"],
            tuple(Person(**p) for p in e["audience"]),
            tuple(Person(**p) for p in e["by"]),
            e["timescale"],
            conds,
            tuple(e["conditions"]),
            tuple(e["facts"]),
        )
    for d in decisions.values():
        for eid in d.implies:
            if eid not in events:
                raise ValueError(f"decision {d.id} implies unknown notification {eid!r}")

    doc = index["document"]
    dev = index.get("deviation")
    deviation = None
    if dev:
        if any(r not in roles for r in dev["roles"]):
            raise ValueError("deviation names an unknown role")
        deviation = DeviationClause(
            tuple(dev["roles"]), dev["section"], dev["quote"], dev.get("reading", "")
        )
    return CouncilPolicy(
        council=council,
        name=doc["name"],
        title=doc["title"],
        effective=doc["effective"],
        seed=doc["seed"],
        roles=MappingProxyType(roles),
        areas=MappingProxyType(areas),
        facts=MappingProxyType(facts),
        declared_facts=tuple(index["facts"]),
        decisions=MappingProxyType(decisions),
        rules=MappingProxyType(rules),
        edges=tuple(edges),
        model_text=model_text,
        policy_text=policy_text,
        deviation=deviation,
        events=MappingProxyType(events),
        fact_defaults=MappingProxyType(
            {
                fid: False if spec.type is FactType.BOOL else frozenset()
                for fid, spec in facts.items()
                if not spec.derived and spec.type in (FactType.BOOL, FactType.ROLES)
            }
        ),
    )
