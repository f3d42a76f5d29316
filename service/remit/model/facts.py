"""The typed facts a rule may test.

Well-known facts are the same for every council and have typed fields in the gRPC
``Context``; a scheme may declare further facts of its own (carried in ``Context.facts``).
Derived facts are computed by remit from well-known ones (never supplied by a caller).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FactType(StrEnum):
    BOOL = "bool"
    INT = "int"
    MONEY = "money"  # integer pence
    ENUM = "enum"
    ROLES = "roles"  # a set of role ids of the same council


@dataclass(frozen=True)
class FactSpec:
    id: str
    type: FactType
    label: str
    values: tuple[str, ...] = ()
    derived: bool = False
    # Where the fact comes from when not given: bools default to false, role sets to
    # empty; every other type is required whenever a rule of the decision tests it.

    @property
    def defaults_when_absent(self) -> bool:
        return self.type in (FactType.BOOL, FactType.ROLES)


# SSDA903 legal status codes and the groups used by rules (shared/notes/host-systems.md).
LEGAL_STATUS_GROUPS: dict[str, str] = {
    "C1": "care_order",
    "C2": "care_order",
    "D1": "placement_order",
    "E1": "placement_order",
    "V2": "s20",
    "V3": "s20",
    "V4": "s20",
    "L1": "emergency",
    "L2": "emergency",
    "L3": "emergency",
    "J1": "youth_justice",
    "J2": "youth_justice",
    "J3": "youth_justice",
}
LEGAL_STATUS_GROUP_VALUES: tuple[str, ...] = (
    "care_order",
    "placement_order",
    "s20",
    "emergency",
    "youth_justice",
)

WELL_KNOWN: dict[str, FactSpec] = {
    f.id: f
    for f in (
        FactSpec("amount_pence", FactType.MONEY, "the amount"),
        FactSpec("cumulative_amount_pence", FactType.MONEY, "the cumulative amount"),
        FactSpec("emergency", FactType.BOOL, "an emergency"),
        FactSpec(
            "exceptional_circumstances",
            FactType.BOOL,
            "exceptional circumstances where delay would place the child at risk",
        ),
        FactSpec("out_of_hours", FactType.BOOL, "out of hours"),
        FactSpec("absent_roles", FactType.ROLES, "the posts recorded as absent"),
        FactSpec("concurring_roles", FactType.ROLES, "the posts recorded as agreeing"),
        FactSpec("child_age", FactType.INT, "the child's age in years"),
        FactSpec(
            "legal_status",
            FactType.ENUM,
            "the SSDA903 legal status",
            values=tuple(LEGAL_STATUS_GROUPS),
        ),
        FactSpec("looked_after", FactType.BOOL, "the child is looked after"),
        FactSpec("placement_distance_miles", FactType.INT, "the placement's distance in miles"),
        FactSpec(
            "court_proceedings",
            FactType.BOOL,
            "the child is the subject of court proceedings",
        ),
        FactSpec("cp_plan", FactType.BOOL, "the child is subject of a child protection plan"),
        FactSpec(
            "cp_category",
            FactType.ENUM,
            "the CP plan category",
            values=("NEG", "PHY", "SAB", "EMO", "MUL"),
        ),
        FactSpec("child_in_need", FactType.BOOL, "the child is a child in need"),
        FactSpec(
            "care_leaver_eligibility",
            FactType.ENUM,
            "the care-leaver eligibility",
            values=("relevant", "former_relevant", "qualifying"),
        ),
        FactSpec(
            "placement_provider",
            FactType.ENUM,
            "the SSDA903 placement provider",
            values=("PR0", "PR1", "PR2", "PR3", "PR4", "PR5"),
        ),
        FactSpec("actor_agency", FactType.BOOL, "the actor is an agency worker"),
        FactSpec(
            "actor_registered_social_worker",
            FactType.BOOL,
            "the actor is a registered social worker",
        ),
        FactSpec(
            "legal_status_group",
            FactType.ENUM,
            "the legal status group",
            values=LEGAL_STATUS_GROUP_VALUES,
            derived=True,
        ),
        FactSpec(
            "grant_remaining",
            FactType.INT,
            "the uses left on a development grant for this decision",
            derived=True,
        ),
        FactSpec(
            "grant_unexpired",
            FactType.BOOL,
            "an unexpired development grant for this decision",
            derived=True,
        ),
    )
}

# Derived facts: computed from these inputs, so a rule using them requires these.
DERIVED_FROM: dict[str, str] = {"legal_status_group": "legal_status"}

# Actor attributes copied into the context.
ACTOR_FACTS: frozenset[str] = frozenset({"actor_agency", "actor_registered_social_worker"})
