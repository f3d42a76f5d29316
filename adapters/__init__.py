"""Host-system adapters (LCS, PARIS) mapping raw records onto remit's canonical actor and
context, per council.

Use as a library (:mod:`adapters.lcs`, :mod:`adapters.paris`, or :func:`map_records` /
:func:`apply`), or over gRPC: an ``AuthoriseRequest`` may carry ``host`` (system + records)
instead of canonical fields, and the response lists the canonical values used (``mapped``).

Mapping tables: ``adapters/mappings/<council>/<system>.yaml`` (JSON Schema
``adapters/schema/mapping.schema.json``); profiles (which table/field holds what):
``adapters/profiles/<system>.yaml``.

Exception tree::

    RemitError (remit.model.errors)
    ├── RequestError
    │   └── InvalidArgument     unmapped value (names the value, council and mapping file),
    │                           unknown system/table, missing or malformed field,
    │                           ambiguous records, canonical field conflicting with records
    └── MappingFileError        a mapping file fails to load: every problem, file and line
"""

from adapters._core import HostMapping, Mapped, apply, map_records, merge
from adapters._errors import MappingFileError
from adapters._tables import Tables, TableSet, available, load

__all__ = [
    "HostMapping",
    "Mapped",
    "MappingFileError",
    "TableSet",
    "Tables",
    "apply",
    "available",
    "load",
    "map_records",
    "merge",
]
