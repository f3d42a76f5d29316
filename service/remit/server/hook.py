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

Group commit: inside ``with hook.group() as g`` (one AuthoriseBatch, one AuthoriseStream
message) :meth:`DecisionHook.answered` only collects; leaving the block writes every
collected entry in one group (one sink write, one fsync), then runs the observers. If the
log refused the group, ``g.failed`` is set and none of its answers may be returned: the
servicer turns each into UNAVAILABLE. Unary calls are grouped inside the log itself
(concurrent callers share a commit: :meth:`~remit.audit.log.AuditLog.write_decisions`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from remit.audit.log import AuditLog, AuditUnavailable, CallInfo
from remit.engine.authorise import Outcome


class DecisionObserver(Protocol):
    """A consumer of answered decisions after the decision log (metrics, tracing)."""

    def on_decision(self, outcome: Outcome, call: CallInfo) -> None:
        """See one answered, logged decision; must not raise for a good outcome."""


@dataclass
class Group:
    """The decisions of one batch or stream message, written to the log together."""

    decided: list[tuple[Outcome, CallInfo]] = field(default_factory=list)
    failed: AuditUnavailable | None = None


_GROUP: contextvars.ContextVar[Group | None] = contextvars.ContextVar("remit_group", default=None)


class DecisionHook:
    """The decision log, then each observer, for every answered decision."""

    def __init__(self, audit: AuditLog, observers: Sequence[DecisionObserver] = ()) -> None:
        self.audit = audit
        self.observers = tuple(observers)

    def answered(self, outcome: Outcome, call: CallInfo) -> None:
        """Log, count and trace one decision. Raises AuditUnavailable (strict mode) when
        the decision log refused its entry: the answer must then not be returned."""
        group = _GROUP.get()
        if group is not None:
            group.decided.append((outcome, call))  # written when the group closes
            return
        self.audit.write_decision(outcome, call)
        self._observe(outcome, call)

    def _observe(self, outcome: Outcome, call: CallInfo) -> None:
        for observer in self.observers:
            observer.on_decision(outcome, call)

    @contextmanager
    def group(self) -> Iterator[Group]:
        """Collect the decisions answered in the block and log them in one group as it
        closes; ``failed`` is set if the log refused them (strict mode)."""
        group = Group()
        token = _GROUP.set(group)
        try:
            yield group
        finally:
            _GROUP.reset(token)
        try:
            self.audit.write_decisions(group.decided)
        except AuditUnavailable as exc:
            group.failed = exc
            return
        for outcome, call in group.decided:
            self._observe(outcome, call)
