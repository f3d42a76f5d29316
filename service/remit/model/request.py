"""A request as the engine takes it: the actor, the decision, the typed facts.

Built by the wire conversion (gRPC), the host adapters, the CLI and the policy suites; the
engine validates it against the catalogue before any rule is looked at.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from remit.model.conditions import FactValue
from remit.model.errors import InvalidArgument
from remit.model.policy import NAME_PATTERN

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$")
MAX_ROLES = 16
MAX_AREAS = 32
MAX_FACTS = 64


@dataclass(frozen=True)
class Actor:
    id: str
    roles: tuple[str, ...]
    service_areas: tuple[str, ...] = ()
    agency: bool = False
    registered_social_worker: bool = False
    # posts this actor covers in their holder's absence: exercised as the actor's own roles
    acting_for: tuple[str, ...] = ()

    @property
    def all_roles(self) -> tuple[str, ...]:
        return self.roles + tuple(r for r in self.acting_for if r not in self.roles)


@dataclass(frozen=True)
class Grant:
    """A recorded development opportunity (e.g. Gloucestershire 4.2)."""

    decision: str
    remaining: int
    expires: date


@dataclass(frozen=True)
class Deviation:
    """A deviation from the scheme agreed by a named officer (break-glass)."""

    agreed_by_id: str
    agreed_by_role: str
    reason_code: str = ""


@dataclass(frozen=True)
class Request:
    council: str
    decision: str
    actor: Actor
    facts: Mapping[str, FactValue] = field(default_factory=dict)
    service_area: str = ""
    grant: Grant | None = None
    decision_time: datetime | None = None
    request_id: str = ""
    deviation: Deviation | None = None


def check_name(field_name: str, value: str, pattern: re.Pattern[str] = NAME_PATTERN) -> None:
    """Refuse an empty identifier or one outside ``pattern``, naming the field (the value is
    not echoed: it may be anything a caller sent)."""
    if not value:
        raise InvalidArgument(field_name, "is required")
    if not pattern.match(value):
        raise InvalidArgument(
            field_name, f"must match {pattern.pattern} (got {len(value)} characters)"
        )
