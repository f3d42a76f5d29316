"""Conditions: the fixed set of predicates a rule may use.

A compiled condition is a conjunction of terms, written in ``policy.csv`` as
``fact<=200000 & other==true``. The text comes only from compiled policy, never from a
request; it is parsed by :func:`parse` against a grammar of seven operators and evaluated by
plain Python comparisons (no ``eval``). Request values are data, never code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from remit.model.facts import FactType

FactValue = bool | int | str | frozenset[str]

# YAML key -> compiled operator
YAML_OPERATORS: dict[str, str] = {
    "is": "==",
    "not": "!=",
    "max": "<=",
    "below": "<",
    "min": ">=",
    "above": ">",
    "in": "in",
    "not_in": "not_in",
    "has": "has",
    "lacks": "lacks",
}
OPERATORS_FOR_TYPE: dict[FactType, frozenset[str]] = {
    FactType.BOOL: frozenset({"=="}),
    FactType.INT: frozenset({"==", "!=", "<=", "<", ">=", ">"}),
    FactType.MONEY: frozenset({"<=", "<", ">=", ">"}),
    FactType.ENUM: frozenset({"==", "!=", "in", "not_in"}),
    FactType.ROLES: frozenset({"has", "lacks"}),
}

_TERM = re.compile(
    r"^(?P<fact>[a-z][a-z0-9_]*)\s*(?P<op><=|>=|==|!=|<|>|\s+in\s+|\s+not_in\s+|\s+has\s+|\s+lacks\s+)\s*"
    r"(?P<value>[A-Za-z0-9_|]+)$"
)


@dataclass(frozen=True)
class Term:
    fact: str
    op: str
    value: bool | int | str | frozenset[str]

    def text(self) -> str:
        if isinstance(self.value, bool):
            v = "true" if self.value else "false"
        elif isinstance(self.value, frozenset):
            v = "|".join(sorted(self.value))
        else:
            v = str(self.value)
        if self.op in ("in", "not_in", "has", "lacks"):
            return f"{self.fact} {self.op} {v}"
        return f"{self.fact}{self.op}{v}"

    def holds(self, ctx: Mapping[str, FactValue]) -> bool:
        """Evaluate against typed facts. A missing fact or a type mismatch raises: a fault
        is never an allow."""
        actual = ctx[self.fact]
        op, want = self.op, self.value
        if op == "==":
            return actual == want
        if op == "!=":
            return actual != want
        if op in ("has", "lacks"):
            if not isinstance(actual, frozenset):
                raise TypeError(f"{self.fact}: expected a role set")
            return (want in actual) == (op == "has")
        if op in ("in", "not_in"):
            if not isinstance(want, frozenset):
                raise TypeError(f"{self.fact}: expected a value set")
            return (actual in want) == (op == "in")
        if isinstance(actual, bool) or not isinstance(actual, int):
            raise TypeError(f"{self.fact}: expected an integer")
        if isinstance(want, bool) or not isinstance(want, int):
            raise TypeError(f"{self.fact}: condition value is not an integer")
        if op == "<=":
            return actual <= want
        if op == "<":
            return actual < want
        if op == ">=":
            return actual >= want
        if op == ">":
            return actual > want
        raise ValueError(f"unknown operator {op!r}")


Condition = tuple[Term, ...]


def render(cond: Condition) -> str:
    """The compiled text of a condition (``""`` for always)."""
    return " & ".join(t.text() for t in cond)


@lru_cache(maxsize=4096)
def parse(text: str) -> Condition:
    """Parse compiled condition text. Raises ValueError on anything outside the grammar."""
    if not text.strip():
        return ()
    terms: list[Term] = []
    for raw in text.split("&"):
        m = _TERM.match(raw.strip())
        if not m:
            raise ValueError(f"condition term outside the grammar: {raw.strip()!r}")
        op = m.group("op").strip()
        value_text = m.group("value")
        value: bool | int | str | frozenset[str]
        if op in ("in", "not_in"):
            value = frozenset(value_text.split("|"))
        elif op in ("has", "lacks"):
            value = value_text
        elif value_text in ("true", "false"):
            value = value_text == "true"
        elif re.fullmatch(r"-?[0-9]+", value_text):
            value = int(value_text)
        else:
            value = value_text
        terms.append(Term(m.group("fact"), op, value))
    return tuple(terms)


def holds(text: str, ctx: Mapping[str, FactValue]) -> bool:
    """True when every term of the compiled condition holds in ``ctx``."""
    return all(t.holds(ctx) for t in parse(text))


def facts_of(cond: Condition) -> frozenset[str]:
    return frozenset(t.fact for t in cond)


def pounds(pence: int) -> str:
    """£2,000.00 from 200000."""
    sign = "-" if pence < 0 else ""
    pence = abs(pence)
    return f"{sign}£{pence // 100:,}.{pence % 100:02d}"
