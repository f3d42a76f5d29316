"""Loading a council's mapping tables for one host system, with the system's profile.

``adapters/mappings/<council>/<system>.yaml`` is validated against
``adapters/schema/mapping.schema.json`` and then checked entry by entry; *every* problem is
reported with file and line before one :class:`MappingFileError` is raised. Two entries
whose keys normalise alike are refused (a title mapped to two roles, or listed twice), as
are unknown codes. The profile (``adapters/profiles/<system>.yaml``) says which host table
and fields hold each concept; the council's ``profile:`` block overrides it concept by
concept.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jsonschema import Draft202012Validator
from remit.model import yamldoc as _yaml
from remit.model.errors import Problem
from remit.model.facts import LEGAL_STATUS_GROUPS, WELL_KNOWN

from adapters._errors import MappingFileError
from adapters._normalise import normalise

PACKAGE = Path(__file__).resolve().parent
MAPPINGS_DIR = PACKAGE / "mappings"
PROFILES_DIR = PACKAGE / "profiles"
SYSTEMS: tuple[str, ...] = ("lcs", "paris")

_SCHEMA: dict[str, Any] = json.loads(
    (PACKAGE / "schema" / "mapping.schema.json").read_text(encoding="utf-8")
)

# concept -> (required fields, optional fields)
CONCEPT_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "worker": (frozenset({"id", "job_title"}), frozenset({"team", "registration", "agency"})),
    "department": (frozenset({"id", "name"}), frozenset()),
    "allocation": (frozenset(), frozenset({"department_id", "team", "start", "end"})),
    "cover": (frozenset({"job_title"}), frozenset({"start", "end"})),
    "person": (frozenset({"dob"}), frozenset()),
    "legal_status": (frozenset({"value"}), frozenset({"start", "end"})),
    "cp_plan": (frozenset(), frozenset({"category", "start", "end"})),
    "looked_after": (frozenset(), frozenset({"start", "end"})),
    "placement": (frozenset(), frozenset({"provider", "distance", "start", "end"})),
    "child_in_need": (frozenset(), frozenset({"start", "end"})),
    "care_leaver": (frozenset({"value"}), frozenset()),
}

CP_CATEGORIES = frozenset(WELL_KNOWN["cp_category"].values)
ELIGIBILITY = frozenset(WELL_KNOWN["care_leaver_eligibility"].values)
PROVIDERS = frozenset(WELL_KNOWN["placement_provider"].values)


@dataclass(frozen=True)
class Entry:
    """One mapping: the canonical value and where it came from (file:line, citation)."""

    canonical: str
    line: int
    source: str = ""
    agency: bool = False


@dataclass(frozen=True)
class Concept:
    table: str
    fields: Mapping[str, str]
    lookup: str = "code"  # "table": mapped by this file; "code": a national code as is
    when: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Tables:
    """A council's mapping for one system: lookups keyed by normalised text, plus profile."""

    council: str
    system: str
    file: str  # repository-relative path, named in every refusal
    abbreviations: Mapping[str, str]
    job_titles: Mapping[str, Entry]
    teams: Mapping[str, Entry]  # canonical "" = a known team outside every scheme area
    legal_statuses: Mapping[str, Entry]
    cp_categories: Mapping[str, Entry]
    eligibility: Mapping[str, Entry]
    casenote_types: Mapping[str, Entry]  # scheme casenote -> host code
    profile: Mapping[str, Concept]

    def key(self, text: str) -> str:
        return normalise(text, self.abbreviations)

    def where(self, entry: Entry) -> str:
        return f"{self.file}:{entry.line}" + (f" ({entry.source})" if entry.source else "")

    @property
    def tables(self) -> frozenset[str]:
        return frozenset(c.table for c in self.profile.values())


def mapping_path(council: str, system: str, root: Path | None = None) -> Path:
    """Where a (council, system) mapping file is, or would be created. Only for council and
    system ids that are already known (from :func:`files` or the catalogue): a request's
    string never becomes a path (see :func:`load`)."""
    return (root or MAPPINGS_DIR) / council / f"{system}.yaml"


def files(root: Path | None = None) -> dict[tuple[str, str], Path]:
    """Every mapping file under ``root``, by (council, system), read from the directory
    listing: the only way a file is found, so that a council or system string from a request
    is only ever a key in this map, never a part of a path."""
    base = root or MAPPINGS_DIR
    return {
        (p.parent.name, p.stem): p
        for p in sorted(base.glob("*/*.yaml"))
        if p.stem in SYSTEMS and p.is_file()
    }


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PACKAGE.parent))
    except ValueError:
        return str(path)


def _load_profile(system: str) -> tuple[dict[str, Any], list[Problem]]:
    path = PROFILES_DIR / f"{system}.yaml"
    doc, problems = _yaml.load(path, display_path(path))
    out = [Problem(doc.file, line, "", msg) for line, msg in problems]
    data = doc.data if isinstance(doc.data, dict) else {}
    return data, out


def _concepts(
    raw: Mapping[str, Any], doc: _yaml.Located, base: tuple[str, ...], problems: list[Problem]
) -> dict[str, Concept]:
    out: dict[str, Concept] = {}
    for name, spec in raw.items():
        path = (*base, name)
        if name not in CONCEPT_FIELDS:
            problems.append(
                Problem(doc.file, doc.line(path), ".".join(path), f"unknown concept {name!r}")
            )
            continue
        if not isinstance(spec, Mapping) or not isinstance(spec.get("table"), str):
            problems.append(Problem(doc.file, doc.line(path), ".".join(path), "needs a table name"))
            continue
        fields = dict(spec.get("fields") or {})
        required, optional = CONCEPT_FIELDS[name]
        for f in sorted(required - set(fields)):
            problems.append(Problem(doc.file, doc.line(path), ".".join(path), f"needs field {f!r}"))
        for f in sorted(set(fields) - required - optional):
            problems.append(
                Problem(doc.file, doc.line(path), ".".join(path), f"unknown field {f!r}")
            )
        out[name] = Concept(
            table=spec["table"],
            fields=fields,
            lookup=str(spec.get("lookup", "code")),
            when={k: str(v) for k, v in (spec.get("when") or {}).items()},
        )
    return out


def load(council: str, system: str, root: Path | None = None) -> Tables:
    """Load and check one mapping file. Raises :class:`MappingFileError` with every problem;
    ``KeyError`` when the council has no mapping for the system (looked up by key in the
    directory listing, :func:`files`)."""
    path = files(root).get((council, system))
    if path is None:
        raise KeyError((council, system))
    return load_text(council, system, path.read_text(encoding="utf-8"), display_path(path))


def load_text(council: str, system: str, text: str, shown: str) -> Tables:
    """Check one mapping file's text (``shown`` names it in every problem): the one reader
    of a mapping, for the packaged files and for a policy bundle's copy alike."""
    doc, syntax = _yaml.load_text(text, shown)
    problems = [Problem(shown, line, "", msg) for line, msg in syntax]
    if problems:
        raise MappingFileError(problems)

    def add(p: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(shown, doc.line(p), ".".join(str(x) for x in p), message))

    for err in Draft202012Validator(_SCHEMA).iter_errors(doc.data):
        add(tuple(err.absolute_path), f"schema: {err.message}")
    if problems:
        raise MappingFileError(problems)
    data: dict[str, Any] = doc.data
    if data["council"] != council:
        add(("council",), f"council {data['council']!r} must equal the directory {council!r}")
    if data["system"] != system:
        add(("system",), f"system {data['system']!r} must equal the file name {system!r}")
    abbreviations = {k: str(v).casefold() for k, v in (data.get("abbreviations") or {}).items()}

    def table(
        name: str, key_field: str, value_field: str, allowed: frozenset[str] | None
    ) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        for i, item in enumerate(data.get(name) or []):
            raw_key = str(item[key_field])
            key = normalise(raw_key, abbreviations)
            value = item[value_field]
            canonical = "" if value is None else str(value)
            line = doc.line((name, i))
            if allowed is not None and canonical not in allowed:
                add((name, i, value_field), f"{canonical!r} is not one of {sorted(allowed)}")
            if not key:
                add((name, i, key_field), f"{raw_key!r} is empty once normalised")
                continue
            if key in out:
                first = out[key]
                if first.canonical != canonical:
                    add(
                        (name, i),
                        f"{raw_key!r} maps to {canonical or 'no area'!r} here but to "
                        f"{first.canonical or 'no area'!r} at line {first.line} "
                        f"(both read as {key!r}): one {key_field} cannot map to two values",
                    )
                else:
                    add((name, i), f"{raw_key!r} repeats line {first.line} (read as {key!r})")
                continue
            out[key] = Entry(
                canonical, line, str(item.get("source", "")), bool(item.get("agency", False))
            )
        return out

    job_titles = table("job_titles", "title", "role", None)
    teams = table("teams", "name", "area", None)
    legal = table("legal_statuses", "description", "code", frozenset(LEGAL_STATUS_GROUPS))
    cp = table("cp_categories", "description", "code", CP_CATEGORIES)
    elig = table("eligibility", "description", "code", ELIGIBILITY)
    casenotes: dict[str, Entry] = {}
    for i, item in enumerate(data.get("casenote_types") or []):
        casenote = str(item["casenote"])
        if casenote in casenotes:
            add(
                ("casenote_types", i),
                f"casenote {casenote!r} already has code at line {casenotes[casenote].line}",
            )
            continue
        casenotes[casenote] = Entry(
            str(item["code"]), doc.line(("casenote_types", i)), str(item.get("source", ""))
        )

    base, base_problems = _load_profile(system)
    problems.extend(base_problems)
    profile_doc = _yaml.Located(shown, data, doc.lines)
    concepts = _concepts(base, _yaml.Located(f"profiles/{system}.yaml", base), (), problems)
    concepts.update(_concepts(data.get("profile") or {}, profile_doc, ("profile",), problems))
    for name, concept in concepts.items():
        if concept.lookup == "table" and name not in ("legal_status", "cp_plan", "care_leaver"):
            add(("profile", name), f"{name} has no description table: use lookup: code")
    if problems:
        raise MappingFileError(problems)
    return Tables(
        council=council,
        system=system,
        file=shown,
        abbreviations=abbreviations,
        job_titles=job_titles,
        teams=teams,
        legal_statuses=legal,
        cp_categories=cp,
        eligibility=elig,
        casenote_types=casenotes,
        profile=concepts,
    )


_CACHE: dict[tuple[str, str, str], Tables] = {}
_LOCK = threading.Lock()


def cached(council: str, system: str, root: Path | None = None) -> Tables:
    """``load`` once per (council, system, root) for the life of the process."""
    key = (council, system, str(root or MAPPINGS_DIR))
    with _LOCK:
        found = _CACHE.get(key)
    if found is not None:
        return found
    tables = load(council, system, root)
    with _LOCK:
        _CACHE[key] = tables
    return tables


def available(root: Path | None = None) -> list[tuple[str, str]]:
    """Every (council, system) with a mapping file."""
    return sorted(files(root))


# -- the tables in a policy bundle -------------------------------------------------------

BUNDLE_PREFIX = "adapters/mappings/"
# a bundle's name for a mapping file: adapters/mappings/<council>/<system>.yaml (the
# repository path); council ids follow the request's name pattern, systems are SYSTEMS
_BUNDLE_NAME = re.compile(
    r"adapters/mappings/([a-z][a-z0-9_]{0,63})/(" + "|".join(SYSTEMS) + r")\.yaml"
)


@dataclass(frozen=True)
class TableSet:
    """Every council's mapping tables as one policy bundle carries them, checked whole when
    the bundle is built: a replica serves these with the bundle's policy (one version),
    never the packaged files. ``None`` in its place means the packaged tables."""

    tables: Mapping[tuple[str, str], Tables]

    def get(self, council: str, system: str) -> Tables | None:
        return self.tables.get((council, system))


def is_bundle_name(rel: str) -> bool:
    """Whether a bundle file name is a mapping file's (``adapters/mappings/...``)."""
    return rel.startswith(BUNDLE_PREFIX)


def bundle_files(root: Path | None = None) -> dict[str, bytes]:
    """The mapping files under ``root`` (default: the packaged tables) by their bundle names,
    for ``remit publish`` to put into the signed bundle beside the compiled policy."""
    return {
        f"{BUNDLE_PREFIX}{council}/{system}.yaml": path.read_bytes()
        for (council, system), path in files(root).items()
    }


def from_bundle(contents: Mapping[str, bytes]) -> TableSet:
    """Check every mapping file of a bundle (name -> bytes, never read from a path): a name
    outside ``adapters/mappings/<council>/<system>.yaml`` or any problem in any file raises
    one :class:`MappingFileError` listing them all."""
    problems: list[Problem] = []
    out: dict[tuple[str, str], Tables] = {}
    for rel in sorted(contents):
        name = _BUNDLE_NAME.fullmatch(rel)
        if name is None:
            problems.append(Problem(rel, 1, "", "not a mapping file name"))
            continue
        try:
            text = contents[rel].decode("utf-8")
        except UnicodeDecodeError:
            problems.append(Problem(rel, 1, "", "not UTF-8"))
            continue
        key = (rel, hashlib.sha256(contents[rel]).hexdigest())
        with _LOCK:
            found = _CHECKED.get(key)
        if found is None:
            try:
                found = load_text(name[1], name[2], text, rel)
            except MappingFileError as exc:
                problems.extend(exc.problems)
                continue
            with _LOCK:
                if len(_CHECKED) >= _CHECKED_MAX:
                    _CHECKED.clear()
                _CHECKED[key] = found
        out[(name[1], name[2])] = found
    if problems:
        raise MappingFileError(problems)
    return TableSet(MappingProxyType(out))


# files already checked, by (bundle name, sha256 of the bytes): the tables are immutable and
# a file's name and content fix them wholly, so a swap re-reads only the files it changes
_CHECKED: dict[tuple[str, str], Tables] = {}
_CHECKED_MAX = 256
