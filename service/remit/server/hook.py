"""The decision hook: called once per answered decision, by the servicer, for every consumer.

An Authorise call, each answered item of an AuthoriseBatch and each answered item of every
AuthoriseStream message is one call of :meth:`DecisionHook.answered` with the core's
:class:`~remit.engine.authorise.Outcome` and the :class:`~remit.audit.log.CallInfo` (the
caller's identity, correlation id, case reference, masked fields, latency), as Cerbos logs
at the engine rather than from the wire. Its consumers, in this order:

1. the decision log (:class:`~remit.audit.log.AuditLog`): in strict mode an entry the sink
   refuses raises :class:`~remit.audit.log.AuditUnavailable`, the later consumers do not
   see the decision, and the servicer fails the call (unary) or the item (batch, stream)
   with UNAVAILABLE: never an unlogged answer;
2. the observers (:class:`DecisionObserver`): metrics (decisions counted by council,
   decision and effect, and their latency) and tracing (one span per decision).

So unary, batch and stream decisions are logged, counted and traced alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from remit.audit.log import AuditLog, CallInfo
from remit.engine.authorise import Outcome


class DecisionObserver(Protocol):
    """A consumer of answered decisions after the decision log (metrics, tracing)."""

    def on_decision(self, outcome: Outcome, call: CallInfo) -> None:
        """See one answered, logged decision; must not raise for a good outcome."""


class DecisionHook:
    """The decision log, then each observer, for every answered decision."""

    def __init__(self, audit: AuditLog, observers: Sequence[DecisionObserver] = ()) -> None:
        self.audit = audit
        self.observers = tuple(observers)

    def answered(self, outcome: Outcome, call: CallInfo) -> None:
        """Log, count and trace one decision. Raises AuditUnavailable (strict mode) when
        the decision log refused its entry: the answer must then not be returned."""
        self.audit.write_decision(outcome, call)
        for observer in self.observers:
            observer.on_decision(outcome, call)
