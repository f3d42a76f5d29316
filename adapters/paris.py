"""PARIS adapter: a documented starting profile a council adjusts without code changes.

Civica publishes no PARIS schema or API, so the starting profile
(``adapters/profiles/paris.yaml``) assumes a worker/HR record (``WORKER``: job title, team,
``SWENo``, ``AgencyWorker``), the case's ``ALLOCATION``, ``ABSENCE_COVER`` (SSDA903
``SW_REASON`` ``ABSENC``), ``CHILD`` (``DOB``), SSDA903 ``EPISODE`` rows (``DECOM``, ``DEC``,
``LS``, ``PLACE_PROVIDER``), CIN census ``CP_PLAN`` and ``CIN`` rows, and ``CARE_LEAVER``
eligibility. A council whose feed differs overrides any concept under ``profile:`` in
``adapters/mappings/<council>/paris.yaml``; job titles and teams are mapped there as for LCS.

Errors: as :mod:`adapters.lcs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from adapters._core import HostMapping, Record
from adapters._core import map_records as _map

SYSTEM = "paris"


def map_records(
    council: str, records: Sequence[Record], decision_time: datetime | None = None
) -> HostMapping:
    """Map PARIS ``(table, fields)`` records for ``council`` at ``decision_time``."""
    return _map(council, SYSTEM, records, decision_time)
