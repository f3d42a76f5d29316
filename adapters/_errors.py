"""Errors of the adapters.

Exception tree (remit's, see :mod:`remit.model.errors`)::

    RemitError
    ├── RequestError
    │   └── InvalidArgument     host records cannot be mapped: an unmapped job title, team,
    │                           legal status, category or eligibility (naming the value,
    │                           the council and the mapping file to extend), an unknown
    │                           host system or table, a missing or malformed field, an
    │                           ambiguous record (two open legal statuses), or a canonical
    │                           field that conflicts with what the records say
    └── MappingFileError        a mapping file fails to load; carries every problem found,
                                each with file and line (a title mapped to two roles...)

A request refused with InvalidArgument is answered INVALID_ARGUMENT with a
google.rpc.BadRequest; a MappingFileError is the deployment's fault, never the caller's,
and is INTERNAL over gRPC (never an answer) and exit 3 from ``remit check``.
"""

from __future__ import annotations

from remit.model.errors import Problem, RemitError


class MappingFileError(RemitError):
    """A mapping file failed validation. ``problems`` lists every one, with file and line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))
