"""Mapping host records onto the canonical actor and case, and merging with a request.

``map_records`` reads records shaped as the host holds them (``(table, fields)`` pairs),
finds each concept through the system's profile, maps local values through the council's
tables and returns a :class:`HostMapping`: what the records *settle*, and each value used
(:class:`Mapped`), citing the mapping file and line. ``merge`` combines it with the
canonical fields of a request.

Precedence (documented in README, "Integrating LCS and PARIS"): the records settle what
they carry; canonical fields fill the rest (decision facts such as amounts, emergency,
out of hours and absences only ever come from canonical fields). A canonical field that
disagrees with a value the records settle is refused, never resolved by preference: the
case flags of ``Context`` carry presence, so a canonical ``false`` that was sent disagrees
with a record's ``true``. The actor's flags (``Actor.agency``, ...) do not: a proto3 false
there is indistinguishable from unset, so a record's ``true`` wins over it, and a record's
``false`` against a canonical ``true`` is refused.

Dates of birth are used to compute the child's age at the decision time and are never
returned, logged or put in an error message; a mapped DOB shows ``raw`` as withheld.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from remit.model.conditions import FactValue
from remit.model.errors import InvalidArgument
from remit.model.facts import LEGAL_STATUS_GROUPS
from remit.model.request import Actor, Request, check_name

from adapters import _tables
from adapters._tables import Concept, Entry, Tables, TableSet

Record = tuple[str, Mapping[str, Any]]

DOB_WITHHELD = "[date of birth withheld]"
SWE_NUMBER = re.compile(r"^SW\d{1,10}$")
_TRUE = {"1", "y", "yes", "true", "t"}
_FALSE = {"0", "n", "no", "false", "f"}


@dataclass(frozen=True)
class Mapped:
    """One canonical value derived from a host value (the response's MappedValue)."""

    field: str
    raw: str
    canonical: str
    source: str


@dataclass
class HostMapping:
    """What the records settle. ``None`` / absent means the records do not say."""

    tables: Tables
    actor_id: str | None = None
    roles: tuple[str, ...] | None = None
    service_areas: tuple[str, ...] | None = None
    agency: bool | None = None
    registered_social_worker: bool | None = None
    acting_for: tuple[str, ...] | None = None
    service_area: str | None = None
    facts: dict[str, FactValue] = field(default_factory=dict)
    mapped: list[Mapped] = field(default_factory=list)
    # source of each settled field, for conflict messages
    sources: dict[str, str] = field(default_factory=dict)


def load_tables(
    council: str, system: str, root: Any = None, mappings: TableSet | None = None
) -> Tables:
    """The council's tables for ``system``: from ``mappings`` (the tables of the policy
    bundle in force) when given, else the packaged files (under ``root``); an unknown system
    or missing file is refused."""
    if system not in _tables.SYSTEMS:
        raise InvalidArgument(
            "host.system",
            f"unknown host system {system!r}: use one of {', '.join(_tables.SYSTEMS)}",
        )
    check_name("council", council)  # before the tables: the id is a key, never a path
    if mappings is not None:
        found = mappings.get(council, system)
        if found is not None:
            return found
        raise InvalidArgument(
            "host.system",
            f"council {council!r} has no {system} mapping in the policy bundle in force: "
            f"add {_tables.BUNDLE_PREFIX}{council}/{system}.yaml and publish again",
        )
    try:
        return _tables.cached(council, system, root)
    except KeyError:
        path = _tables.display_path(_tables.mapping_path(council, system, root))
        raise InvalidArgument(
            "host.system",
            f"council {council!r} has no {system} mapping: create {path}",
        ) from None


class _Reader:
    def __init__(self, tables: Tables, records: Sequence[Record], when: datetime) -> None:
        self.t = tables
        self.records = records
        self.when = when
        self.out = HostMapping(tables)

    # -- helpers ------------------------------------------------------------------------

    def _where(self, i: int, column: str = "") -> str:
        return f"host.records[{i}]" + (f".fields.{column}" if column else "")

    def rows(self, concept: Concept) -> list[tuple[int, Mapping[str, Any]]]:
        out = []
        for i, (table, fields) in enumerate(self.records):
            if table != concept.table:
                continue
            if all(_text(fields.get(k)) == v for k, v in concept.when.items()):
                out.append((i, fields))
        return out

    def present(self, concept: Concept) -> bool:
        return any(table == concept.table for table, _ in self.records)

    def text(self, i: int, fields: Mapping[str, Any], column: str, required: bool) -> str:
        value = fields.get(column)
        if value is None or value == "":
            if required:
                raise InvalidArgument(
                    self._where(i, column), f"required by the {self.t.system} profile"
                )
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidArgument(self._where(i, column), "must be text or a number")
        return _text(value)

    def moment(self, i: int, fields: Mapping[str, Any], column: str | None) -> datetime | None:
        if column is None:
            return None
        value = fields.get(column)
        if value is None or value == "":
            return None
        parsed = _parse_time(value)
        if parsed is None:
            # the value is never echoed: it may be a date of birth
            raise InvalidArgument(self._where(i, column), "must be an ISO 8601 date or date-time")
        return parsed

    def open_rows(self, concept: Concept) -> list[tuple[int, Mapping[str, Any]]]:
        out = []
        for i, fields in self.rows(concept):
            start = self.moment(i, fields, concept.fields.get("start"))
            end = self.moment(i, fields, concept.fields.get("end"))
            if (start is None or start <= self.when) and (end is None or self.when < end):
                out.append((i, fields))
        return out

    def one(
        self, concept: Concept, rows: list[tuple[int, Mapping[str, Any]]], what: str
    ) -> tuple[int, Mapping[str, Any]] | None:
        if len(rows) > 1:
            raise InvalidArgument(
                self._where(rows[1][0]),
                f"{len(rows)} {concept.table} records give {what} at the decision time; "
                "send the one that applies (remit never picks)",
            )
        return rows[0] if rows else None

    def lookup(
        self,
        table: Mapping[str, Entry],
        table_name: str,
        raw: str,
        i: int,
        column: str,
        what: str,
    ) -> Entry:
        entry = table.get(self.t.key(raw))
        if entry is None:
            raise InvalidArgument(
                self._where(i, column),
                f"{what} {raw!r} is not mapped for council {self.t.council!r}: "
                f"add it to {table_name} in {self.t.file}",
            )
        return entry

    def code(self, raw: str, allowed: Iterable[str], i: int, column: str, what: str) -> str:
        code = raw.strip().upper()
        if code not in allowed:
            raise InvalidArgument(
                self._where(i, column),
                f"{what} {raw!r} is not a code remit knows ({', '.join(sorted(allowed))}) "
                f"for council {self.t.council!r}: correct the record, or map descriptions "
                f"with lookup: table in {self.t.file}",
            )
        return code

    def settle(self, fid: str, value: FactValue, mapped: Mapped) -> None:
        self.out.facts[fid] = value
        self.out.sources[f"context.{fid}"] = mapped.source
        self.out.mapped.append(mapped)

    def src(self, i: int, column: str) -> str:
        return f"{self.records[i][0]}.{column} ({self.t.system} profile)"

    # -- concepts -----------------------------------------------------------------------

    def run(self) -> HostMapping:
        known = self.t.tables
        for i, (table, _) in enumerate(self.records):
            if table not in known:
                raise InvalidArgument(
                    f"host.records[{i}].table",
                    f"the {self.t.system} profile reads no table {table!r} "
                    f"(it reads {', '.join(sorted(known))}); adjust profile: in {self.t.file}",
                )
        p = self.t.profile
        for name, method in (
            ("worker", self.worker),
            ("cover", self.cover),
            ("allocation", self.allocation),
            ("person", self.person),
            ("legal_status", self.legal_status),
            ("cp_plan", self.cp_plan),
            ("looked_after", self.looked_after),
            ("placement", self.placement),
            ("child_in_need", self.child_in_need),
            ("care_leaver", self.care_leaver),
        ):
            if name in p:
                method(p[name])
        return self.out

    def worker(self, c: Concept) -> None:
        row = self.one(c, self.rows(c), "a worker")
        if row is None:
            return
        i, f = row
        out = self.out
        col = c.fields
        out.actor_id = self.text(i, f, col["id"], required=True)
        out.sources["actor.id"] = self.src(i, col["id"])
        out.mapped.append(Mapped("actor.id", out.actor_id, out.actor_id, out.sources["actor.id"]))
        title = self.text(i, f, col["job_title"], required=True)
        entry = self.lookup(
            self.t.job_titles, "job_titles", title, i, col["job_title"], "job title"
        )
        out.roles = (entry.canonical,)
        out.sources["actor.roles"] = self.t.where(entry)
        out.mapped.append(Mapped("actor.roles", title, entry.canonical, self.t.where(entry)))
        if entry.agency:
            out.agency = True
            out.sources["actor.agency"] = self.t.where(entry)
            out.mapped.append(Mapped("actor.agency", title, "true", self.t.where(entry)))
        if "team" in col:
            team = self.text(i, f, col["team"], required=False)
            if team:
                t = self.lookup(self.t.teams, "teams", team, i, col["team"], "team")
                out.service_areas = (t.canonical,) if t.canonical else ()
                out.sources["actor.service_areas"] = self.t.where(t)
                out.mapped.append(
                    Mapped("actor.service_areas", team, t.canonical or "(none)", self.t.where(t))
                )
        if "registration" in col:
            number = self.text(i, f, col["registration"], required=False)
            if number:
                if not SWE_NUMBER.match(number.replace(" ", "").upper()):
                    raise InvalidArgument(
                        self._where(i, col["registration"]),
                        "is not a Social Work England number (SW followed by digits)",
                    )
                out.registered_social_worker = True
                source = self.src(i, col["registration"])
                out.sources["actor.registered_social_worker"] = source
                # the number itself is not echoed
                out.mapped.append(
                    Mapped("actor.registered_social_worker", "SWE number entered", "true", source)
                )
        if "agency" in col and col["agency"] in f:
            raw = self.text(i, f, col["agency"], required=False).casefold()
            if raw in _TRUE or raw in _FALSE:
                flag = raw in _TRUE
                if out.agency and not flag:
                    raise InvalidArgument(
                        self._where(i, col["agency"]),
                        f"says not an agency worker, but job title {title!r} is mapped as "
                        f"agency ({self.t.where(entry)})",
                    )
                out.agency = flag
                out.sources["actor.agency"] = self.src(i, col["agency"])
                out.mapped.append(
                    Mapped("actor.agency", raw, str(flag).lower(), self.src(i, col["agency"]))
                )
            elif raw:
                raise InvalidArgument(
                    self._where(i, col["agency"]), "must be 0/1, Y/N or true/false"
                )

    def cover(self, c: Concept) -> None:
        roles: list[str] = []
        for i, f in self.open_rows(c):
            title = self.text(i, f, c.fields["job_title"], required=True)
            entry = self.lookup(
                self.t.job_titles, "job_titles", title, i, c.fields["job_title"], "job title"
            )
            if entry.canonical not in roles:
                roles.append(entry.canonical)
            self.out.mapped.append(
                Mapped("actor.acting_for", title, entry.canonical, self.t.where(entry))
            )
            self.out.sources["actor.acting_for"] = self.t.where(entry)
        if self.present(c):
            self.out.acting_for = tuple(roles)

    def allocation(self, c: Concept) -> None:
        rows = self.open_rows(c)
        departments: dict[str, tuple[int, str]] = {}
        dept = self.t.profile.get("department")
        if dept is not None:
            for i, f in self.rows(dept):
                key = self.text(i, f, dept.fields["id"], required=True)
                departments[key] = (i, self.text(i, f, dept.fields["name"], required=True))
        areas: dict[str, tuple[str, Entry]] = {}
        for i, f in rows:
            if "department_id" in c.fields:
                column = c.fields["department_id"]
                dept_id = self.text(i, f, column, required=True)
                if dept_id not in departments:
                    raise InvalidArgument(
                        self._where(i, column),
                        f"department {dept_id!r} has no {dept.table if dept else 'department'} "
                        "record among the records sent",
                    )
                at, team = departments[dept_id]
                name_column = dept.fields["name"] if dept else column
                entry = self.lookup(self.t.teams, "teams", team, at, name_column, "team")
            else:
                column = c.fields.get("team", "")
                team = self.text(i, f, column, required=True)
                entry = self.lookup(self.t.teams, "teams", team, i, column, "team")
            areas.setdefault(entry.canonical, (team, entry))
        if len(areas) > 1:
            raise InvalidArgument(
                "host.records",
                f"the case is allocated to teams in {len(areas)} areas at the decision time "
                f"({', '.join(sorted(a or '(none)' for a in areas))}); "
                "send context.service_area and only the allocation that applies",
            )
        if areas:
            area, (team, entry) = next(iter(areas.items()))
            if area:
                self.out.service_area = area
                self.out.sources["context.service_area"] = self.t.where(entry)
            self.out.mapped.append(
                Mapped("context.service_area", team, area or "(none)", self.t.where(entry))
            )

    def person(self, c: Concept) -> None:
        row = self.one(c, self.rows(c), "a child")
        if row is None:
            return
        i, f = row
        column = c.fields["dob"]
        dob = self.moment(i, f, column)
        if dob is None:
            raise InvalidArgument(
                self._where(i, column), f"required by the {self.t.system} profile"
            )
        age = age_on(dob.date(), self.when.date())
        if age < 0:
            raise InvalidArgument(self._where(i, column), "is after the decision time")
        self.settle(
            "child_age",
            age,
            Mapped("context.child_age", DOB_WITHHELD, str(age), self.src(i, column)),
        )

    def legal_status(self, c: Concept) -> None:
        row = self.one(c, self.open_rows(c), "a legal status")
        if row is None:
            return
        i, f = row
        column = c.fields["value"]
        raw = self.text(i, f, column, required=True)
        if c.lookup == "table":
            entry = self.lookup(
                self.t.legal_statuses, "legal_statuses", raw, i, column, "legal status"
            )
            code, source = entry.canonical, self.t.where(entry)
        else:
            code = self.code(raw, LEGAL_STATUS_GROUPS, i, column, "legal status")
            source = self.src(i, column)
        self.settle("legal_status", code, Mapped("context.legal_status", raw, code, source))
        self.out.mapped.append(
            Mapped("context.legal_status_group", code, LEGAL_STATUS_GROUPS[code], "SSDA903")
        )

    def cp_plan(self, c: Concept) -> None:
        if not self.present(c):
            return
        row = self.one(c, self.open_rows(c), "a child protection plan")
        table = c.table
        self.settle(
            "cp_plan",
            row is not None,
            Mapped(
                "context.cp_plan",
                f"{table} open" if row else f"{table} none open",
                str(row is not None).lower(),
                f"{table} ({self.t.system} profile)",
            ),
        )
        if row is None or "category" not in c.fields:
            return
        i, f = row
        column = c.fields["category"]
        raw = self.text(i, f, column, required=False)
        if not raw:
            return
        if c.lookup == "table":
            entry = self.lookup(
                self.t.cp_categories, "cp_categories", raw, i, column, "CP category"
            )
            code, source = entry.canonical, self.t.where(entry)
        else:
            code = self.code(raw, _tables.CP_CATEGORIES, i, column, "CP category")
            source = self.src(i, column)
        self.settle("cp_category", code, Mapped("context.cp_category", raw, code, source))

    def _open_flag(self, c: Concept, fid: str) -> None:
        if not self.present(c):
            return
        is_open = bool(self.open_rows(c))
        self.settle(
            fid,
            is_open,
            Mapped(
                f"context.{fid}",
                f"{c.table} {'open' if is_open else 'none open'}",
                str(is_open).lower(),
                f"{c.table} ({self.t.system} profile)",
            ),
        )

    def looked_after(self, c: Concept) -> None:
        self._open_flag(c, "looked_after")

    def child_in_need(self, c: Concept) -> None:
        self._open_flag(c, "child_in_need")

    def placement(self, c: Concept) -> None:
        row = self.one(c, self.open_rows(c), "a placement")
        if row is None:
            return
        i, f = row
        if "provider" in c.fields:
            column = c.fields["provider"]
            raw = self.text(i, f, column, required=False)
            if raw:
                code = self.code(raw, _tables.PROVIDERS, i, column, "placement provider")
                self.settle(
                    "placement_provider",
                    code,
                    Mapped("context.placement_provider", raw, code, self.src(i, column)),
                )
        if "distance" in c.fields:
            column = c.fields["distance"]
            raw = self.text(i, f, column, required=False)
            if raw:
                try:
                    miles = float(raw)
                except ValueError:
                    raise InvalidArgument(
                        self._where(i, column), "must be a distance in miles"
                    ) from None
                if not math.isfinite(miles) or miles < 0:
                    raise InvalidArgument(self._where(i, column), "must be a distance in miles")
                whole = math.ceil(miles)  # a part mile counts as a mile: never understated
                self.settle(
                    "placement_distance_miles",
                    whole,
                    Mapped(
                        "context.placement_distance_miles", raw, str(whole), self.src(i, column)
                    ),
                )

    def care_leaver(self, c: Concept) -> None:
        row = self.one(c, self.rows(c), "a care-leaver eligibility")
        if row is None:
            return
        i, f = row
        column = c.fields["value"]
        raw = self.text(i, f, column, required=True)
        entry = self.lookup(self.t.eligibility, "eligibility", raw, i, column, "eligibility")
        self.settle(
            "care_leaver_eligibility",
            entry.canonical,
            Mapped("context.care_leaver_eligibility", raw, entry.canonical, self.t.where(entry)),
        )


def age_on(dob: date, on: date) -> int:
    """Whole years from ``dob`` to ``on`` (negative when ``on`` is before ``dob``)."""
    years = on.year - dob.year - ((on.month, on.day) < (dob.month, dob.day))
    return years if on >= dob else -1


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # protobuf Struct numbers arrive as floats
    return str(value).strip() if value is not None else ""


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def map_records(
    council: str,
    system: str,
    records: Sequence[Record],
    decision_time: datetime | None = None,
    root: Any = None,
    mappings: TableSet | None = None,
) -> HostMapping:
    """Map ``records`` for ``council`` through its ``system`` tables (``mappings``: those of
    the policy bundle in force; default the packaged files). Raises InvalidArgument."""
    tables = load_tables(council, system, root, mappings)
    when = decision_time or datetime.now(UTC)
    for i, (table, fields) in enumerate(records):
        if not isinstance(table, str) or not table:
            raise InvalidArgument(f"host.records[{i}].table", "is required")
        if not isinstance(fields, Mapping):
            raise InvalidArgument(f"host.records[{i}].fields", "must be an object")
    return _Reader(tables, records, when).run()


def _conflict(
    field_name: str, canonical: object, hosted: object, source: str, system: str, echo: bool = True
) -> InvalidArgument:
    said = (
        f" says {canonical!r} but the {system} records say {hosted!r}"
        if echo
        else (f" differs from what the {system} records say")
    )
    return InvalidArgument(
        field_name,
        f"the request{said} ({source}); send one of them or make them agree",
    )


def merge(req: Request, host: HostMapping) -> Request:
    """``req`` with what the records settle; conflicting canonical values are refused."""
    system = host.tables.system
    a = req.actor
    src = host.sources

    def pick_text(name: str, canonical: str, hosted: str | None) -> str:
        if hosted is None:
            return canonical
        if not canonical or canonical == hosted:
            return hosted
        raise _conflict(name, canonical, hosted, src.get(name, ""), system)

    def pick_set(
        name: str, canonical: tuple[str, ...], hosted: tuple[str, ...] | None
    ) -> tuple[str, ...]:
        if hosted is None:
            return canonical
        if not canonical:
            return hosted
        if set(canonical) == set(hosted):
            return canonical
        raise _conflict(name, list(canonical), list(hosted), src.get(name, ""), system)

    def pick_flag(name: str, canonical: bool, hosted: bool | None) -> bool:
        if hosted is None or hosted == canonical:
            return canonical
        if hosted:
            return True  # a proto3 false is indistinguishable from unset
        raise _conflict(name, canonical, hosted, src.get(name, ""), system)

    actor = Actor(
        id=pick_text("actor.id", a.id, host.actor_id),
        roles=pick_set("actor.roles", a.roles, host.roles),
        service_areas=pick_set("actor.service_areas", a.service_areas, host.service_areas),
        agency=pick_flag("actor.agency", a.agency, host.agency),
        registered_social_worker=pick_flag(
            "actor.registered_social_worker",
            a.registered_social_worker,
            host.registered_social_worker,
        ),
        acting_for=pick_set("actor.acting_for", a.acting_for, host.acting_for),
    )
    facts = dict(req.facts)
    for fid, value in host.facts.items():
        name = f"context.{fid}"
        if fid not in facts:
            facts[fid] = value
            continue
        given = facts[fid]
        if given == value and type(given) is type(value):
            continue
        raise _conflict(name, given, value, src.get(name, ""), system, echo=fid != "child_age")
    area = pick_text("context.service_area", req.service_area, host.service_area)
    return replace(req, actor=actor, facts=facts, service_area=area)


def apply(
    req: Request, system: str, records: Sequence[Record], mappings: TableSet | None = None
) -> tuple[Request, HostMapping]:
    """Map ``records`` for ``req.council`` at ``req.decision_time`` and merge them into it;
    ``mappings`` are the tables of the policy in force (``PolicySet.mappings``; ``None``:
    the packaged files)."""
    host = map_records(req.council, system, records, req.decision_time, mappings=mappings)
    return merge(req, host), host


def casenote_codes(host: HostMapping, casenotes: Iterable[str]) -> list[Mapped]:
    """The host's casenote type code for each record obligation's casenote, when mapped."""
    out: list[Mapped] = []
    for casenote in casenotes:
        entry = host.tables.casenote_types.get(casenote)
        if entry is not None:
            out.append(
                Mapped("obligations.casenote", entry.canonical, casenote, host.tables.where(entry))
            )
    return out
