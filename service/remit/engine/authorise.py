"""The authorise use case: one request in, one typed outcome out.

``authorise(policies, request, host)`` is the whole of "authorise", for every caller: the
gRPC servicer, ``remit check`` and the policy suites (``remit test``) all call it, so the
three answer one request identically. In order:

1. fix the decision time once (the request's, else now): host records are read at it, a
   development grant's expiry is tested at it, and every due time is counted from it;
2. map the host records, when the request carries them (:mod:`adapters`: LCS, PARIS),
   onto the canonical actor and case; a conflict or an unmapped value is refused;
3. decide (:func:`remit.engine.evaluate.decide`: validation against the catalogue, then
   the rules);
4. on an allow, the notifications the decision implies (:func:`remit.engine.notify.implied`);
5. the due time of each obligation and notification, from the decision time.

Errors are :class:`remit.model.errors.RequestError` naming the field (never an allow), or
``adapters.MappingFileError`` when a council's mapping file does not load. Proto conversion
stays with the server (:mod:`remit.server.convert`); what each caller logs, counts or
prints is the caller's business (the server's decision hook takes the :class:`Outcome`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from remit.engine.due import due
from remit.engine.evaluate import Answer, decide
from remit.engine.notify import Notice, implied
from remit.model.policy import PolicySet
from remit.model.request import Request

if TYPE_CHECKING:
    from adapters import HostMapping


@dataclass(frozen=True)
class HostRecords:
    """Records as a host system holds them: ``system`` (``lcs``, ``paris``) and a list of
    ``(table, fields)`` pairs (the gRPC ``HostInput``, or ``remit check --records``)."""

    system: str
    records: Sequence[tuple[str, Mapping[str, Any]]]


@dataclass(frozen=True)
class Outcome:
    """What authorising one request came to.

    ``request`` is the request as decided (host records merged in, the decision time
    fixed); ``answer`` the engine's; ``obligation_due`` the due time of each of
    ``answer.obligations`` (same order; ``None`` without a timescale, or one that has no
    fixed end); ``notices`` the notifications an allow implies, each with its due time;
    ``decided_at`` the decision time every due time is counted from; ``host`` the mapping
    of the host records (``None`` without them)."""

    request: Request
    answer: Answer
    obligation_due: tuple[datetime | None, ...]
    notices: tuple[Notice, ...]
    decided_at: datetime
    host: HostMapping | None = None


def now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)


def authorise(policies: PolicySet, request: Request, host: HostRecords | None = None) -> Outcome:
    """Authorise one request under ``policies`` (one version for the whole request)."""
    when = request.decision_time or now()
    if request.decision_time is None:
        request = replace(request, decision_time=when)
    mapping: HostMapping | None = None
    if host is not None:  # host records, mapped per council (adapters package)
        from adapters import apply

        # the mapping tables of the same version as the policy (PolicySet.mappings)
        request, mapping = apply(request, host.system, host.records, policies.mappings)
    answer = decide(policies, request)
    notices: tuple[Notice, ...] = ()
    if answer.allowed:
        policy = policies.councils[answer.council]
        decision = policy.decisions[answer.decision]
        notices = tuple(implied(policy, decision, request.facts, when))
    obligation_due = tuple(
        due(o.timescale, when) if o.timescale else None for o in answer.obligations
    )
    return Outcome(request, answer, obligation_due, notices, when, mapping)
