"""What the engine returns: a validated request (:class:`Prepared`) and its :class:`Answer`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from remit.engine.trace import Trace
from remit.model.conditions import FactValue
from remit.model.policy import CouncilPolicy, Decision, Obligation


@dataclass(frozen=True)
class Prepared:
    """A validated request: the policy it is decided under and the typed context."""

    policy: CouncilPolicy
    decision: Decision
    roles: frozenset[str]  # every role the actor acts in: its own and those it covers
    area: str
    ctx: Mapping[str, FactValue]
    acting_for: frozenset[str] = frozenset()  # of ``roles``, those covered, not held
    given: frozenset[str] | None = None  # facts the request carried (None: all of them)
    # facts a rule of the decision tests that have no default and the request did not carry:
    # left open in the walk, and required only if a line that could decide for this actor
    # rests on one (engine.evaluate.decide)
    missing: frozenset[str] = frozenset()
    # of ``roles``, the actor's own line posts: their agreement is the actor's own
    agrees: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Citation:
    council: str
    document: str
    section: str
    quote: str
    reading: str


@dataclass(frozen=True)
class Authoriser:
    role: str
    title: str
    rule: str
    section: str
    conditions: str  # plain words; "" when unconditional


@dataclass(frozen=True)
class Answer:
    allowed: bool
    reason: str
    rule: str  # deciding rule id, "" for a default deny
    citation: Citation | None
    obligations: tuple[Obligation, ...]
    authorisers: tuple[Authoriser, ...]
    failed_conditions: tuple[str, ...]
    decided_outside: str
    policy_version: str
    decision_id: str
    council: str
    decision: str
    matched_role: str  # the actor role the deciding line matched ("" on default deny)
    area: str
    deviation: bool = False  # allowed only by an agreed deviation: flagged for review
    # on a deny: bool / role-set facts the explained rule needed, absent from the request
    missing_facts: tuple[str, ...] = ()
    # on a deny: the rule the explanation is about (the actor's nearest rule, or the
    # exception to the deciding prohibition nearest to applying); "" when none names the actor
    explained_rule: str = ""
    trace: Trace | None = field(default=None, compare=False, repr=False)

    def with_decision_id(self, decision_id: str) -> Answer:
        """This answer under another decision id (a memoised answer given to a new request):
        a field-for-field copy, without ``dataclasses.replace``'s cost."""
        copy = object.__new__(Answer)
        copy.__dict__.update(self.__dict__)
        object.__setattr__(copy, "decision_id", decision_id)
        return copy
