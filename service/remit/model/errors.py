"""Exceptions raised by remit.

Exception tree::

    RemitError                      base of everything remit raises on purpose
    ├── RequestError                a request cannot be answered as asked
    │   ├── InvalidArgument         a field is malformed, of the wrong type, or missing
    │   └── NotFound                a field names a council/decision/role/area/fact that
    │                               the loaded policy does not know
    ├── PolicyError                 compiled policy cannot be loaded (corrupt, inconsistent)
    └── CompileError                scheme sources fail validation; carries every problem
                                    found, each with file and line

Any other exception escaping the engine is an internal fault; the gRPC layer turns it
into INTERNAL and never into an answer.
"""

from __future__ import annotations

from dataclasses import dataclass


class RemitError(Exception):
    """Base class for errors raised by remit on purpose."""


class RequestError(RemitError):
    """A request cannot be answered as asked.

    ``field`` is the dotted path of the offending request field (``context.amount_pence``).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidArgument(RequestError):
    """A field is malformed, of the wrong type, or missing when a rule needs it."""


class NotFound(RequestError):
    """A field names something the loaded policy does not know."""


class PolicyError(RemitError):
    """Compiled policy files cannot be loaded."""


@dataclass(frozen=True)
class Problem:
    """One compile problem, located in a source file."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"{self.file}:{self.line}: {self.message}{where}"


class CompileError(RemitError):
    """Scheme sources failed validation. ``problems`` lists every one found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))
