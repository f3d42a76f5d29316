"""LCS adapter: records shaped as Liquidlogic LCS holds them, mapped per council.

Tables and fields follow LCS's reporting warehouse (``HDM.Child_Social``) as read by the
public Data to Insight Standard Safeguarding Dataset extracts: ``DIM_WORKER``,
``DIM_DEPARTMENT``, ``FACT_INVOLVEMENTS``, ``DIM_PERSON``, ``FACT_LEGAL_STATUS``,
``FACT_CP_PLAN``, ``FACT_CLA``, ``FACT_CLA_PLACEMENT``, ``FACT_CARE_PLANS``,
``DIM_CLA_ELIGIBILITY`` (see ``adapters/profiles/lcs.yaml`` for the columns read). Job
titles, departments, legal status descriptions, CP categories, eligibility and casenote
types are local lookups, mapped by ``adapters/mappings/<council>/lcs.yaml``.

    >>> from adapters import lcs
    >>> host = lcs.map_records("torbay", [("DIM_WORKER", {...}), ...], decision_time)
    >>> host.roles, host.facts, host.mapped

Errors: :class:`remit.InvalidArgument` for anything unmapped or ambiguous (naming the
value, the council and the file to extend); :class:`adapters.MappingFileError` when the
council's mapping file itself is broken.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from adapters._core import HostMapping, Record
from adapters._core import map_records as _map

SYSTEM = "lcs"


def map_records(
    council: str, records: Sequence[Record], decision_time: datetime | None = None
) -> HostMapping:
    """Map LCS ``(table, fields)`` records for ``council`` at ``decision_time`` (default now)."""
    return _map(council, SYSTEM, records, decision_time)
