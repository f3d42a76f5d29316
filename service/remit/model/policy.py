"""The rule table's in-memory types and its one loader (never scheme YAML).

``remit compile`` writes one typed rule table per council, ``<council>/rules.json`` (JSON
Schema ``remit/model/schema/rules.schema.json``): roles with their closure, areas, facts,
decisions with their lines in priority order, rules, notifications, the deviation clause.
This module reads only that table into immutable, indexed form. ``policy.csv`` and the
shared ``model.conf`` are exports of it (:mod:`remit.model.export`); they are never parsed
here, only checked to be the table's export. ``manifest.json`` hashes every file; a file
whose hash does not match is refused.

The loader does not validate the JSON Schema (the compiler validates its own output; at load
that costs more than the whole load, see :func:`council_policy`); it checks every field it
reads, by type, and every cross-reference, and refuses a table whose role closure is not
the closure of its edges. Whatever is wrong, the error is a :class:`PolicyError` naming the
council and the field, never a crash and never an allow.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from remit.model.conditions import OPERATORS_FOR_TYPE, Condition, FactValue, Term, parse, render
from remit.model.errors import PolicyError
from remit.model.export import MODEL_CONF, casbin_policy, priority_of
from remit.model.facts import WELL_KNOWN, FactSpec, FactType
from remit.model.words import summarise

if TYPE_CHECKING:  # the adapters read the model; the model only names their table set
    from adapters._tables import TableSet

# the shape of every id a request may name (council, decision, role, area, fact)
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# the shape of a rule id (cited in answers and written into policy.csv: no commas, no spaces)
RULE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")


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
    holds: tuple[str, ...] = ()  # functions the post holds (an AD as Agency Decision Maker)

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
class SchemeSource:
    """The scheme files a rule table was compiled from (named in the policy.csv header)."""

    scheme: str = ""
    parts: tuple[str, ...] = ()
    sha256: str = ""


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
    deviation: DeviationClause | None = None
    events: Mapping[str, Event] = field(default_factory=lambda: MappingProxyType({}))
    # what an omitted bool / role-set fact defaults to (false / empty), precomputed at load
    fact_defaults: Mapping[str, FactValue] = field(default_factory=lambda: MappingProxyType({}))
    source: SchemeSource = SchemeSource()
    # decision ids in the scheme's order (``decisions`` is keyed in id order)
    scheme_order: tuple[str, ...] = ()
    # function -> the posts holding it (``Role.holds`` inverted), precomputed at load
    held_by: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    # the posts of the line hierarchy (a post in an edge, not independent): an actor in one
    # needs no one's record of its own agreement (``concurring_roles``), see engine.trace
    line_posts: frozenset[str] = frozenset()

    def functions_of(self, posts: Iterable[str]) -> frozenset[str]:
        """The functions ``posts`` hold (not their seniors': holding is not inherited)."""
        roles = self.roles
        return frozenset(f for p in posts if p in roles for f in roles[p].holds)

    def recorded(self, fact: str, posts: frozenset[str]) -> frozenset[str]:
        """A recorded role set with the functions its posts hold: ``absent_roles`` gains a
        function every holder of which is absent; ``concurring_roles`` one a holder of which
        agrees. Other facts, and posts holding nothing, come back as they are."""
        if not self.held_by or not posts:
            return posts
        if fact == "absent_roles":
            extra = {f for f, by in self.held_by.items() if all(p in posts for p in by)}
        else:
            extra = {f for f, by in self.held_by.items() if any(p in posts for p in by)}
        return posts | extra if extra - posts else posts

    @property
    def policy_text(self) -> str:
        """The table's Casbin export (``policy.csv``), made when asked for (the reference
        evaluator, the compiler): the serving set does not keep the text."""
        return casbin_policy(self)


@dataclass(frozen=True)
class PolicySet:
    """One version of the policy in force: every council's rule table and, from a policy
    bundle, the adapters' mapping tables of that same version (``None``: the packaged
    tables, as with the compiled files on disk). A request reads one PolicySet and uses
    both from it, so a swap never mixes one version's policy with another's mappings."""

    version: str
    councils: Mapping[str, CouncilPolicy]
    mappings: TableSet | None = None


# the compiled format this loader reads: manifest.json "format" (rules.json has its own)
MANIFEST_FORMAT = 2
TABLE_FORMAT = 1
RULES_FILE = "rules.json"
POLICY_FILE = "policy.csv"
MODEL_FILE = "model.conf"
SCHEMA_RESOURCE = "model/schema/rules.schema.json"


def rules_schema() -> dict[str, Any]:
    """The JSON Schema of ``rules.json`` (package data)."""
    from importlib import resources

    text = resources.files("remit").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


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
        listed = manifest["files"]
        if not isinstance(listed, dict):
            raise TypeError("files is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PolicyError(f"{root}/manifest.json: cannot load ({exc})") from exc
    # one council's files at a time: each read and verified when the loader asks for it, and
    # dropped once its council is built (a 500-council directory is never in memory whole)
    files = _VerifiedFiles(root, listed)
    policies = load_files(files, manifest)
    for rel in listed:  # the files the loader did not ask for are verified all the same
        if rel not in files.read:
            _read_verified(root, rel, listed)
    return policies


class _VerifiedFiles(Mapping[str, bytes]):
    """The listed files of a compiled directory, each read and checked against its manifest
    hash when asked for (a file not listed is absent); nothing is kept."""

    def __init__(self, root: Path, listed: Mapping[str, str]) -> None:
        self.root, self.listed, self.read = root, listed, set[str]()

    def __getitem__(self, rel: str) -> bytes:
        if rel not in self.listed:
            raise KeyError(rel)
        self.read.add(rel)
        return _read_verified(self.root, rel, self.listed)

    def __iter__(self) -> Iterator[str]:
        return iter(self.listed)

    def __len__(self) -> int:
        return len(self.listed)


def load_files(files: Mapping[str, bytes], manifest: Mapping[str, Any]) -> PolicySet:
    """Build a PolicySet from compiled file contents (already verified against the manifest).

    Reads each council's ``rules.json``; its ``policy.csv`` and the shared ``model.conf``
    must be present and be exactly the table's export (a bundle whose export disagrees with
    its table is refused, so the Casbin reference always judges the policy that is served).
    """
    fmt = manifest.get("format")
    if fmt != MANIFEST_FORMAT:
        raise PolicyError(
            f"manifest.json: format {fmt!r}, this remit reads format {MANIFEST_FORMAT}"
            " (rules.json tables); run `remit compile`"
        )
    if files.get(MODEL_FILE) != MODEL_CONF.encode():
        raise PolicyError(f"{MODEL_FILE}: missing or not remit's Casbin model")
    names = manifest.get("councils")
    if not isinstance(names, list):
        raise PolicyError("manifest.json: councils is not a list")
    councils: dict[str, CouncilPolicy] = {}
    for council in names:
        if not isinstance(council, str) or not NAME_PATTERN.fullmatch(council):
            raise PolicyError(f"manifest.json: council id {council!r} is not a valid name")
        raw = files.get(f"{council}/{RULES_FILE}")
        csv = files.get(f"{council}/{POLICY_FILE}")
        if raw is None or csv is None:
            raise PolicyError(f"{council}: missing compiled file {council}/{RULES_FILE} or .csv")
        try:
            table = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise PolicyError(f"{council}/{RULES_FILE}: not JSON ({exc})") from exc
        policy = council_policy(council, table)
        if csv != policy.policy_text.encode():
            raise PolicyError(f"{council}/{POLICY_FILE}: not the export of {council}/{RULES_FILE}")
        councils[council] = policy
    return PolicySet(str(manifest.get("version", "")), MappingProxyType(councils))


# -- typed reading of one table ---------------------------------------------------------


_MISSING = object()
_STR = {str}


class _Obj:
    """One JSON object of the table, read field by field with its path for errors."""

    __slots__ = ("d", "where")

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"{where or 'the table'}: expected an object")
        self.d: dict[str, Any] = value
        self.where = where

    def at(self, key: str) -> str:
        """The path of a field of this object, for errors."""
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str) -> Any:
        try:
            return self.d[key]
        except KeyError:
            raise ValueError(f"{self.at(key)}: missing") from None

    # each reader looks the key up itself: these run ~10,000 times per load
    def text(self, key: str) -> str:
        value = self.d.get(key, _MISSING)
        if type(value) is not str:
            raise self._wrong(key, "a string")
        return value

    def flag(self, key: str) -> bool:
        value = self.d.get(key, _MISSING)
        if type(value) is not bool:
            raise self._wrong(key, "true or false")
        return value

    def number(self, key: str) -> int:
        value = self.d.get(key, _MISSING)
        if type(value) is not int:
            raise self._wrong(key, "an integer")
        return value

    def items(self, key: str) -> list[Any]:
        value = self.d.get(key, _MISSING)
        if type(value) is not list:
            raise self._wrong(key, "a list")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        values = self.d.get(key, _MISSING)
        if type(values) is not list or (values and set(map(type, values)) != _STR):
            raise self._wrong(key, "a list of strings")
        # interned: the same ids recur on every line and in every council
        return tuple(map(sys.intern, values))

    def strings(self, *keys: str) -> tuple[str, ...]:
        """Several string fields at once: the common case checked in one pass, any miss
        reported as :meth:`text` would report it."""
        try:
            values = tuple(map(self.d.__getitem__, keys))
        except KeyError:
            values = ()
        if len(values) != len(keys) or set(map(type, values)) != _STR:
            for key in keys:
                self.text(key)
        return values

    def _wrong(self, key: str, expected: str) -> ValueError:
        if key not in self.d:
            return ValueError(f"{self.at(key)}: missing")
        return ValueError(f"{self.at(key)}: expected {expected}")

    def obj(self, key: str) -> _Obj:
        return _Obj(self.get(key), self.at(key))

    def members(self, key: str) -> list[tuple[str, _Obj]]:
        """The entries of an object keyed by id, in id order, each id a valid name."""
        table = self.obj(key)
        out: list[tuple[str, _Obj]] = []
        for name in sorted(table.d):
            if not NAME_PATTERN.fullmatch(name):
                raise ValueError(f"{table.where}: id {name!r} is not a valid name")
            out.append((sys.intern(name), _Obj(table.d[name], f"{table.where}.{name}")))
        return out


def _known(names: tuple[str, ...], known: Mapping[str, object], where: str, what: str) -> None:
    for name in names:
        if name not in known:
            raise ValueError(f"{where}: unknown {what} {name!r}")


def _term(raw: Any, where: str, facts: Mapping[str, FactSpec], roles: Mapping[str, Any]) -> Term:
    t = _Obj(raw, where)
    fact, op, value = t.text("fact"), t.text("op"), t.get("value")
    spec = facts.get(fact)
    if spec is None:
        raise ValueError(f"{where}.fact: unknown fact {fact!r}")
    if op not in OPERATORS_FOR_TYPE[spec.type]:
        raise ValueError(f"{where}.op: {op!r} does not apply to {spec.type.value} fact {fact!r}")
    typed: FactValue
    if spec.type is FactType.BOOL:
        if not isinstance(value, bool):
            raise ValueError(f"{where}.value: {fact} is a bool")
        typed = value
    elif spec.type in (FactType.INT, FactType.MONEY):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}.value: {fact} takes an integer")
        typed = value
    elif spec.type is FactType.ROLES:
        if not isinstance(value, str) or value not in roles:
            raise ValueError(f"{where}.value: unknown role {value!r}")
        typed = sys.intern(value)
    elif op in ("in", "not_in"):
        if not isinstance(value, list) or not value or any(v not in spec.values for v in value):
            raise ValueError(f"{where}.value: a non-empty list of values of {fact}")
        typed = frozenset(value)
    else:
        if not isinstance(value, str) or value not in spec.values:
            raise ValueError(f"{where}.value: {value!r} is not a value of {fact}")
        typed = value
    return Term(sys.intern(fact), op, typed)


class _Conditions:
    """Reads one council's conditions; a text met again with the same terms (the lines of
    one rule share its condition) is checked once."""

    def __init__(self, facts: Mapping[str, FactSpec], roles: Mapping[str, Any]) -> None:
        self.facts = facts
        self.roles = roles
        self.seen: dict[str, tuple[list[Any], Condition]] = {}

    def read(self, raw: Any, where: str) -> tuple[str, Condition]:
        """A condition's compiled text and terms, checked to be one and the same condition."""
        c = _Obj(raw, where)
        text = sys.intern(c.text("text"))
        raw_terms = c.items("terms")
        known = self.seen.get(text)
        if known is not None and known[0] == raw_terms:
            return text, known[1]
        cond = tuple(
            _term(t, f"{where}.terms[{k}]", self.facts, self.roles) for k, t in enumerate(raw_terms)
        )
        # the text is what the Casbin export carries and the reference parses: it must say
        # exactly what the terms say
        try:
            parsed = parse(text)
        except ValueError as exc:
            raise ValueError(f"{where}.text: {exc}") from None
        if render(cond) != text or parsed != cond:
            raise ValueError(f"{where}: text {text!r} is not its terms")
        self.seen[text] = (raw_terms, cond)
        return text, cond


def _closure(roles: Mapping[str, _Obj], edges: list[tuple[str, str]]) -> dict[str, frozenset[str]]:
    """Each role's seniors as the table states them, checked (not recomputed): names known
    roles, no role its own senior, and each role's seniors are exactly its direct seniors
    plus theirs. With no role its own senior, that one-step equation has one solution, the
    transitive closure of the edges, so the check also proves the hierarchy acyclic."""
    seniors: dict[str, frozenset[str]] = {}
    for rid, r in roles.items():
        stated = r.texts("inherited_by")
        _known(stated, roles, f"{r.where}.inherited_by", "role")
        if rid in stated:
            raise ValueError(f"{r.where}.inherited_by: the role is its own senior (a cycle)")
        if list(stated) != sorted(set(stated)):
            raise ValueError(f"{r.where}.inherited_by: not sorted and unique")
        seniors[rid] = frozenset(stated)
    direct: dict[str, set[str]] = {rid: set() for rid in roles}
    for senior, junior in edges:
        direct[junior].add(senior)
    for rid, above in direct.items():
        expected = set(above).union(*(seniors[s] for s in above))
        if expected != seniors[rid]:
            raise ValueError(
                f"roles.{rid}.inherited_by: not the closure of the edges"
                f" (edges give {sorted(expected)})"
            )
    return seniors


def council_policy(council: str, table: Any) -> CouncilPolicy:
    """Read one council's rule table (parsed ``rules.json``) into a :class:`CouncilPolicy`.

    Raises :class:`PolicyError` naming the council, the field and what is wrong.
    """
    try:
        return _council_policy(council, table)
    except ValueError as exc:
        raise PolicyError(f"{council}/{RULES_FILE}: {exc}") from None


def _council_policy(council: str, table: Any) -> CouncilPolicy:
    t = _Obj(table, "")
    if t.get("format") != TABLE_FORMAT:
        raise ValueError(f"format {t.get('format')!r}, this remit reads {TABLE_FORMAT}")
    if t.text("council") != council:
        raise ValueError(f"council {t.text('council')!r} is another council")
    doc = t.obj("document")
    src = t.obj("source")
    areas = {aid: Area(aid, a.text("name")) for aid, a in t.members("areas")}
    roles, edges = _read_roles(t, areas)
    facts, declared = _read_facts(t)
    rules = _read_rules(t, roles, areas)
    conditions = _Conditions(facts, roles)
    decisions = _read_decisions(t, rules, facts, roles, conditions)
    events = _read_events(t, facts, roles, conditions)
    for decision in decisions.values():
        _known(decision.implies, events, f"decisions.{decision.id}.implies", "notification")
    policy = CouncilPolicy(
        council=council,
        name=doc.text("name"),
        title=doc.text("title"),
        effective=doc.text("effective"),
        seed=doc.text("seed"),
        roles=MappingProxyType(roles),
        areas=MappingProxyType(areas),
        facts=MappingProxyType(facts),
        declared_facts=declared,
        decisions=MappingProxyType(dict(sorted(decisions.items()))),
        rules=MappingProxyType(rules),
        edges=edges,
        model_text=MODEL_CONF,
        deviation=_read_deviation(t, roles),
        events=MappingProxyType(events),
        fact_defaults=MappingProxyType(
            {
                fid: False if spec.type is FactType.BOOL else frozenset()
                for fid, spec in facts.items()
                if not spec.derived and spec.type in (FactType.BOOL, FactType.ROLES)
            }
        ),
        source=SchemeSource(src.text("scheme"), src.texts("parts"), src.text("sha256")),
        scheme_order=tuple(decisions),  # read in the table's (the scheme's) order
        held_by=MappingProxyType(_held_by(roles)),
        line_posts=frozenset(
            r
            for edge in edges
            for r in edge
            if roles[r].kind == "post" and not roles[r].independent
        ),
    )
    return policy


def _held_by(roles: Mapping[str, Role]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for rid in sorted(roles):
        for f in roles[rid].holds:
            out.setdefault(f, []).append(rid)
    return {f: tuple(by) for f, by in sorted(out.items())}


def _read_roles(
    t: _Obj, areas: Mapping[str, Area]
) -> tuple[dict[str, Role], tuple[tuple[str, str], ...]]:
    """Roles with their stated closure (checked against the edges), and the edges."""
    role_objs = dict(t.members("roles"))
    if not role_objs:
        raise ValueError("roles: none")
    edges: list[tuple[str, str]] = []
    for k, pair in enumerate(t.items("edges")):
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(x, str) and x in role_objs for x in pair)
            or pair[0] == pair[1]
        ):
            raise ValueError(f"edges[{k}]: expected [senior, junior], two different known roles")
        edges.append((sys.intern(pair[0]), sys.intern(pair[1])))
    if edges != sorted(set(edges)):
        raise ValueError("edges: not sorted and unique")
    seniors = _closure(role_objs, edges)
    roles: dict[str, Role] = {}
    for rid, r in role_objs.items():
        titles = r.texts("titles")
        if not titles:
            raise ValueError(f"{r.where}.titles: none")
        kind = r.text("kind")
        if kind not in ("post", "panel", "external"):
            raise ValueError(f"{r.where}.kind: {kind!r}")
        rank = r.number("rank")
        if rank < 0:
            raise ValueError(f"{r.where}.rank: negative")
        _known(r.texts("areas"), areas, f"{r.where}.areas", "area")
        holds = r.texts("holds") if "holds" in r.d else ()
        _known(holds, role_objs, f"{r.where}.holds", "role")
        if list(holds) != sorted(set(holds)) or rid in holds:
            raise ValueError(f"{r.where}.holds: not sorted and unique, or the role itself")
        roles[rid] = Role(
            rid,
            titles,
            kind,
            r.flag("independent"),
            r.flag("all_areas"),
            rank,
            seniors[rid],
            tuple(sys.intern(h) for h in holds),
        )
    return roles, tuple(edges)


def _read_facts(t: _Obj) -> tuple[dict[str, FactSpec], tuple[str, ...]]:
    """The well-known facts and the scheme's own; the ids it declares, in id order."""
    facts: dict[str, FactSpec] = dict(WELL_KNOWN)
    declared = t.members("facts")
    for fid, f in declared:
        if fid in WELL_KNOWN:
            raise ValueError(f"{f.where}: {fid!r} is a well-known fact")
        try:
            ftype = FactType(f.text("type"))
        except ValueError:
            raise ValueError(f"{f.where}.type: {f.get('type')!r}") from None
        values = f.texts("values")
        if (ftype is FactType.ENUM) != bool(values):
            raise ValueError(f"{f.where}.values: an enum fact and only an enum fact has values")
        facts[fid] = FactSpec(fid, ftype, f.text("label"), values)
    return facts, tuple(fid for fid, _ in declared)


_OBLIGATION_FIELDS = frozenset({"kind", "text", "role", "party", "timescale", "casenote", "fact"})


def _read_rules(t: _Obj, roles: Mapping[str, Role], areas: Mapping[str, Area]) -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    rule_objs = t.obj("rules")
    for rid in sorted(rule_objs.d):
        if not RULE_ID_PATTERN.fullmatch(rid):
            raise ValueError(f"rules: rule id {rid!r} is not a valid rule id")
        r = _Obj(rule_objs.d[rid], f"rules.{rid}")
        effect, decision, section, quote, reading, exception_to, decided_outside = r.strings(
            "effect", "decision", "section", "quote", "reading", "exception_to", "decided_outside"
        )
        if effect not in ("allow", "deny"):
            raise ValueError(f"{r.where}.effect: {effect!r}")
        who = r.texts("who")
        if not who or (who != ("*",) and any(w not in roles for w in who)):
            raise ValueError(f"{r.where}.who: role ids, or ['*'] (anyone)")
        if who == ("*",) and effect != "deny":
            raise ValueError(f"{r.where}.who: anyone is only for prohibitions")
        rule_areas = r.texts("areas")
        _known(rule_areas, areas, f"{r.where}.areas", "area")
        conditions = r.texts("conditions")
        if not conditions:
            raise ValueError(f"{r.where}.conditions: none")
        obligations: list[Obligation] = []
        for k, raw in enumerate(r.items("obligations")):
            o = _Obj(raw, f"{r.where}.obligations[{k}]")
            extra = set(o.d) - _OBLIGATION_FIELDS
            if extra:
                raise ValueError(f"{o.where}: unknown field {sorted(extra)[0]!r}")
            fields = {key: o.text(key) for key in o.d}
            if "kind" not in fields or "text" not in fields:
                raise ValueError(f"{o.where}: needs kind and text")
            if fields.get("role", "") and fields["role"] not in roles:
                raise ValueError(f"{o.where}.role: unknown role {fields['role']!r}")
            obligations.append(Obligation(**fields))
        rules[rid] = Rule(
            rid,
            decision,
            effect,
            who,
            rule_areas,
            conditions,
            section,
            quote,
            reading,
            exception_to,
            decided_outside,
            tuple(obligations),
        )
    for rule in rules.values():
        if rule.exception_to:
            target = rules.get(rule.exception_to)
            if target is None or target.decision != rule.decision or target.effect != "deny":
                raise ValueError(f"rules.{rule.id}.exception_to: not a prohibition of its decision")
    return rules


def _read_decisions(
    t: _Obj,
    rules: Mapping[str, Rule],
    facts: Mapping[str, FactSpec],
    roles: Mapping[str, Role],
    conditions: _Conditions,
) -> dict[str, Decision]:
    """Decisions in the table's order, each with its lines: exactly the cross product of its
    rules' roles, areas and conditions, in priority order."""
    decisions: dict[str, Decision] = {}
    positions: set[int] = set()
    matching: dict[tuple[str, str], frozenset[str]] = {}  # one set per (role, effect)
    for i, raw in enumerate(t.items("decisions")):
        d = _Obj(raw, f"decisions[{i}]")
        did = d.text("id")
        if not NAME_PATTERN.fullmatch(did):
            raise ValueError(f"{d.where}.id: {did!r} is not a valid name")
        did = sys.intern(did)
        if did in decisions:
            raise ValueError(f"{d.where}.id: decision {did!r} twice")
        d.where = f"decisions.{did}"
        rule_ids = d.texts("rules")
        for rid in rule_ids:
            if rid not in rules or rules[rid].decision != did:
                raise ValueError(f"{d.where}.rules: {rid!r} is not a rule of {did}")
        want = {
            (rid, role, area, cond)
            for rid in rule_ids
            for role in rules[rid].who
            for area in rules[rid].areas or ("*",)
            for cond in rules[rid].conditions
        }
        lines: list[Line] = []
        for k, raw_line in enumerate(d.items("lines")):
            line = _read_line(
                _Obj(raw_line, f"{d.where}.lines[{k}]"),
                did,
                rules,
                facts,
                roles,
                conditions,
                matching,
            )
            entry = (line.rule, line.role, line.area, line.cond_text)
            if line.rule not in rule_ids or entry not in want:
                raise ValueError(
                    f"{d.where}.lines[{k}]: not one of the lines of rule {line.rule} (or twice)"
                )
            want.discard(entry)
            if line.position in positions:
                raise ValueError(f"{d.where}.lines[{k}].position: {line.position} twice")
            positions.add(line.position)
            if lines and (lines[-1].priority, lines[-1].position) >= (line.priority, line.position):
                raise ValueError(f"{d.where}.lines[{k}]: lines are not in priority order")
            lines.append(line)
        if want:
            missing = sorted(want)[0]
            raise ValueError(f"{d.where}.lines: no line for rule {missing[0]} {missing[1:]}")
        section, heading, wording, quote, procedure, reading = d.strings(
            "section", "heading", "wording", "quote", "procedure", "reading"
        )
        dfacts, required = d.texts("facts"), d.texts("required_facts")
        _known(dfacts, facts, f"{d.where}.facts", "fact")
        _known(required, facts, f"{d.where}.required_facts", "fact")
        decisions[did] = Decision(
            did,
            section,
            heading,
            wording,
            quote,
            procedure,
            reading,
            dfacts,
            required,
            rule_ids,
            tuple(lines),
            d.texts("implies"),
        )
    for rule in rules.values():
        if rule.decision not in decisions or rule.id not in decisions[rule.decision].rules:
            raise ValueError(f"rules.{rule.id}: not listed by decision {rule.decision!r}")
    return decisions


def _read_line(
    ln: _Obj,
    did: str,
    rules: Mapping[str, Rule],
    facts: Mapping[str, FactSpec],
    roles: Mapping[str, Role],
    conditions: _Conditions,
    shared: dict[tuple[str, str], frozenset[str]],
) -> Line:
    rid, role, area, effect = ln.strings("rule", "role", "area", "effect")
    rule = rules.get(rid)
    if rule is None:
        raise ValueError(f"{ln.where}.rule: unknown rule {rid!r}")
    role, area = sys.intern(role), sys.intern(area)
    text, cond = conditions.read(ln.get("condition"), f"{ln.where}.condition")
    priority, position = ln.number("priority"), ln.number("position")
    if effect != rule.effect or priority != priority_of(rule.effect, rule.exception_to):
        raise ValueError(f"{ln.where}: effect or priority is not its rule's")
    if position < 0:
        raise ValueError(f"{ln.where}.position: negative")
    if role == "*":
        matching: frozenset[str] | None = None
    elif role not in roles:
        raise ValueError(f"{ln.where}.role: unknown role {role!r}")
    else:  # allows: the role and every senior; prohibitions: the role alone
        matching = shared.get((role, effect))
        if matching is None:
            own = frozenset({role})
            matching = own | roles[role].seniors if effect == "allow" else own
            shared[(role, effect)] = matching
    summary = summarise(facts, lambda r: roles[r].title, cond)
    return Line(position, did, role, area, text, cond, effect, priority, rid, matching, summary)


def _read_events(
    t: _Obj, facts: Mapping[str, FactSpec], roles: Mapping[str, Role], conditions: _Conditions
) -> dict[str, Event]:
    events: dict[str, Event] = {}
    for eid, e in t.members("notifications"):
        alternatives = [
            conditions.read(c, f"{e.where}.conditions[{k}]")
            for k, c in enumerate(e.items("conditions"))
        ]
        people: dict[str, tuple[Person, ...]] = {}
        for group_name in ("audience", "by"):
            group: list[Person] = []
            for k, raw in enumerate(e.items(group_name)):
                p = _Obj(raw, f"{e.where}.{group_name}[{k}]")
                if set(p.d) == {"role"} and p.text("role") in roles:
                    group.append(Person(role=sys.intern(p.text("role"))))
                elif set(p.d) == {"party"}:
                    group.append(Person(party=p.text("party")))
                else:
                    raise ValueError(f"{p.where}: a known role {{role}} or a {{party}}")
            people[group_name] = tuple(group)
        section, heading, wording, quote, reading = e.strings(
            "section", "heading", "wording", "quote", "reading"
        )
        efacts = e.texts("facts")
        _known(efacts, facts, f"{e.where}.facts", "fact")
        events[eid] = Event(
            eid,
            section,
            heading,
            wording,
            quote,
            reading,
            people["audience"],
            people["by"],
            e.text("timescale"),
            tuple(cond for _, cond in alternatives),
            tuple(text for text, _ in alternatives),
            efacts,
        )
    return events


def _read_deviation(t: _Obj, roles: Mapping[str, Role]) -> DeviationClause | None:
    raw = t.get("deviation")
    if raw is None:
        return None
    dev = _Obj(raw, "deviation")
    dev_roles = dev.texts("roles")
    if not dev_roles:
        raise ValueError("deviation.roles: none")
    _known(dev_roles, roles, "deviation.roles", "role")
    return DeviationClause(dev_roles, dev.text("section"), dev.text("quote"), dev.text("reading"))
