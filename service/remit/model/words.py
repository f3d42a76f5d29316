"""Condition terms in plain words ("up to £2,000.00"), shared by the loader and the engine.

The loader uses :func:`describe` to precompute each compiled line's summary once at load,
so answers do not rebuild the same words on every request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from remit.model.conditions import Term, pounds
from remit.model.facts import FactSpec, FactType

_OP_WORDS = {
    "<=": "up to",
    "<": "below",
    ">=": "at least",
    ">": "over",
    "==": "exactly",
    "!=": "not",
}


def describe(facts: Mapping[str, FactSpec], title_of: Callable[[str], str], term: Term) -> str:
    """A condition term in plain words. ``title_of`` gives a role id's shown title."""
    spec = facts[term.fact]
    v = term.value
    if spec.type is FactType.BOOL:
        return spec.label if v else f"not {spec.label}"
    if spec.type is FactType.ROLES:
        title = title_of(str(v))
        if term.fact == "absent_roles":
            return (
                f"only while the {title} is absent"
                if term.op == "has"
                else f"only while the {title} is not absent"
            )
        if term.fact == "concurring_roles":
            return (
                f"only with the agreement of the {title}"
                if term.op == "has"
                else f"not with the agreement of the {title}"
            )
        return f"{spec.label} {'include' if term.op == 'has' else 'exclude'} the {title}"
    if isinstance(v, frozenset):
        words = " or ".join(sorted(v))
        return f"{spec.label} is {words}" if term.op == "in" else f"{spec.label} is not {words}"
    shown = pounds(int(v)) if spec.type is FactType.MONEY else str(v)
    return f"{spec.label} {_OP_WORDS[term.op]} {shown}"


def summarise(
    facts: Mapping[str, FactSpec], title_of: Callable[[str], str], cond: tuple[Term, ...]
) -> str:
    """A whole condition in plain words, terms joined by "; " ("" when unconditional)."""
    return "; ".join(describe(facts, title_of, t) for t in cond)
