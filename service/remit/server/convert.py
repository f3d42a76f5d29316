"""Translate between protobuf messages and the engine's plain dataclasses."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from remit.engine.authorise import HostRecords, Outcome
from remit.engine.due import due
from remit.engine.evaluate import Answer, Authoriser
from remit.engine.memo import Memo, memo, new_memo
from remit.engine.notify import Notice, conditions_text
from remit.engine.queries import Permitted
from remit.model.conditions import FactValue
from remit.model.errors import InvalidArgument
from remit.model.facts import WELL_KNOWN, FactType
from remit.model.policy import CouncilPolicy, Obligation, PolicySet
from remit.model.request import Actor, Deviation, Grant, Request
from remit.v1 import remit_pb2 as pb

_OBLIGATION_KINDS: dict[str, int] = {
    "consult": pb.OBLIGATION_KIND_CONSULT,
    "notify": pb.OBLIGATION_KIND_NOTIFY,
    "record": pb.OBLIGATION_KIND_RECORD,
    "ratify": pb.OBLIGATION_KIND_RATIFY,
    "countersign": pb.OBLIGATION_KIND_COUNTERSIGN,
    "precondition": pb.OBLIGATION_KIND_PRECONDITION,
    "approve": pb.OBLIGATION_KIND_APPROVE,
}


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _context_fields() -> dict[FactType, tuple[str, ...]]:
    """The well-known facts by type, each carried by the ``Context`` field of its own name
    (one list: :data:`remit.model.facts.WELL_KNOWN`; ``tests/integration/test_grpc_api.py``
    checks that every such fact has its field and every fact field its fact)."""
    out: dict[FactType, list[str]] = {}
    fields = pb.Context.DESCRIPTOR.fields_by_name
    for fid, spec in WELL_KNOWN.items():
        if fid in fields:
            out.setdefault(spec.type, []).append(fid)
    return {kind: tuple(names) for kind, names in out.items()}


_BY_TYPE = _context_fields()
_NUMBERS = _BY_TYPE.get(FactType.INT, ()) + _BY_TYPE.get(FactType.MONEY, ())
# every well-known Context field: its place in the order facts are read (numbers, bools, role
# sets, enums) and how its value is read
_READ_AS = {FactType.INT: int, FactType.MONEY: int, FactType.BOOL: bool, FactType.ROLES: frozenset}
_WELL_KNOWN_FIELDS: dict[str, tuple[int, Callable[[Any], FactValue]]] = {
    name: (i, _READ_AS.get(WELL_KNOWN[name].type, str))
    for i, name in enumerate(
        _NUMBERS
        + _BY_TYPE.get(FactType.BOOL, ())
        + _BY_TYPE.get(FactType.ROLES, ())
        + _BY_TYPE.get(FactType.ENUM, ())
    )
}


def context_from_proto(
    ctx: pb.Context, policy: CouncilPolicy | None = None
) -> tuple[dict[str, FactValue], str, Grant | None]:
    """Typed facts, service area and grant; malformed values raise InvalidArgument.

    With the council's ``policy``, each scheme fact must also arrive in the ``FactValue``
    field of its declared type (``money_pence`` for money, not ``int_value``): the wire's
    own typing, which only gRPC has. The engine checks every value's type for every caller.
    """
    facts: dict[str, FactValue] = {}
    # the fields set: numbers and bools when present (a false sent is kept: "recorded as
    # false"), role sets when not empty, enums when not empty; read in the order above
    sent = [
        (_WELL_KNOWN_FIELDS[fd.name], fd.name, value)
        for fd, value in ctx.ListFields()
        if fd.name in _WELL_KNOWN_FIELDS
    ]
    if len(sent) > 1:
        sent.sort(key=lambda item: item[0][0])
    for (_, read), name, value in sent:
        facts[name] = read(value)
    for fid, value in ctx.facts.items():
        if fid in WELL_KNOWN:
            raise InvalidArgument(
                f"context.facts[{fid}]", "is a well-known fact: use its Context field"
            )
        kind = value.WhichOneof("kind")
        if kind is None:
            raise InvalidArgument(f"context.facts[{fid}]", "has no value")
        facts[fid] = getattr(value, kind)
    if policy is not None:
        check_declared_kinds(policy, ctx)
    grant = None
    if ctx.HasField("grant"):
        try:  # fromisoformat alone also takes 20991231 and 2099-W52-4: the contract is YYYY-MM-DD
            if not _ISO_DATE.fullmatch(ctx.grant.expires_on):
                raise ValueError(ctx.grant.expires_on)
            expires = date.fromisoformat(ctx.grant.expires_on)
        except ValueError:
            raise InvalidArgument("context.grant.expires_on", "must be a date YYYY-MM-DD") from None
        grant = Grant(ctx.grant.decision, int(ctx.grant.remaining), expires)
    return facts, ctx.service_area, grant


def actor_from_proto(actor: pb.Actor) -> Actor:
    return Actor(
        id=actor.id,
        roles=tuple(actor.roles),
        service_areas=tuple(actor.service_areas),
        agency=actor.agency,
        registered_social_worker=actor.registered_social_worker,
        acting_for=tuple(actor.acting_for),
    )


# Timestamps a decision may carry: well inside datetime's range, so that arithmetic on them
# (working days, grant expiry) never overflows into an internal error.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TimeWindow:
    """How far a request's claimed decision_time may be from the server's clock."""

    past: timedelta = timedelta(days=31)
    future: timedelta = timedelta(minutes=5)


def claimed_time(msg: Message, window: TimeWindow) -> datetime | None:
    """The request's decision_time, refused (INVALID_ARGUMENT) when it lies outside the
    window around the server's clock; None when the request claims none."""
    when = time_from_proto(msg, "decision_time")
    if when is None:
        return None
    clock = now()
    if not clock - window.past <= when <= clock + window.future:
        days = window.past.days
        raise InvalidArgument(
            "decision_time",
            f"must lie within {days} day(s) before and {window.future.seconds // 60} minutes "
            "after the server's time (REMIT_DECISION_TIME_WINDOW_DAYS)",
        )
    return when


def time_from_proto(msg: Message, field: str) -> datetime | None:
    """The timestamp field as an aware datetime; out of range (or malformed) is
    INVALID_ARGUMENT naming the field, never an internal error."""
    if not msg.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(msg, field)
    if not 0 <= stamp.nanos < 1_000_000_000:
        raise InvalidArgument(field, "nanos must be 0 to 999,999,999")
    try:
        when = stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument(field, "is out of range") from None
    if not _EARLIEST <= when < _LATEST:
        raise InvalidArgument(field, "must be between 1900 and 9000")
    return when


def request_from_proto(
    msg: pb.AuthoriseRequest,
    policies: PolicySet | None = None,
    window: TimeWindow = TimeWindow(),  # frozen, so one shared default is safe
) -> Request:
    """Typed engine request; malformed values raise InvalidArgument naming the field. The
    decision time is the request's (within ``window`` of the server's clock), else now
    (when the server took the request).

    ``policies``: the version the request is decided under, for the scheme-fact kind check
    of :func:`context_from_proto` (an unknown council is left to the engine, which names
    the field)."""
    policy = policies.councils.get(msg.council) if policies is not None else None
    facts, area, grant = context_from_proto(msg.context, policy)
    return Request(
        council=msg.council,
        decision=msg.decision,
        actor=actor_from_proto(msg.actor),
        facts=facts,
        service_area=area,
        grant=grant,
        decision_time=claimed_time(msg, window) or now(),
        request_id=msg.request_id,
        deviation=(
            Deviation(
                msg.deviation.agreed_by_id,
                msg.deviation.agreed_by_role,
                msg.deviation.reason_code,
            )
            if msg.HasField("deviation")
            else None
        ),
    )


def host_from_proto(msg: pb.AuthoriseRequest) -> HostRecords | None:
    """The host records the request carries (``host``), or None."""
    if not msg.HasField("host"):
        return None
    from adapters._grpc import records_from_proto

    return HostRecords(msg.host.system, records_from_proto(msg.host))


def masked_fields(msg: pb.AuthoriseRequest) -> tuple[str, ...]:
    """The request fields a decision-log entry does not keep as given (sorted): the case
    reference (kept as a keyed HMAC), every context field, the host records, the
    deviation's reason code."""
    out: list[str] = []
    if msg.case_reference:
        out.append("case_reference")
    for fd, _ in msg.context.ListFields():
        out.append(f"context.{fd.name}")
    if msg.HasField("host"):
        out.append("host")
    if msg.deviation.reason_code:
        out.append("deviation.reason_code")
    return tuple(sorted(out))


def declared_fact_types(policy: CouncilPolicy) -> dict[str, str]:
    return {fid: policy.facts[fid].type.value for fid in policy.declared_facts}


_WANTED_KIND = {
    "bool": "bool_value",
    "int": "int_value",
    "money": "money_pence",
    "enum": "enum_value",
}
_DECLARED_KINDS: Memo = new_memo()


def declared_kinds(policy: CouncilPolicy) -> dict[str, tuple[str, str]]:
    """Each scheme fact's type and the FactValue field it travels in, once per policy."""
    return memo(
        _DECLARED_KINDS,
        id(policy),
        (policy,),
        lambda: {fid: (t, _WANTED_KIND[t]) for fid, t in declared_fact_types(policy).items()},
        10_000,
    )


def check_declared_kinds(policy: CouncilPolicy, ctx: pb.Context) -> None:
    """A scheme fact must be sent in the FactValue field of its declared type."""
    if not ctx.facts:
        return
    kinds = declared_kinds(policy)
    for fid, value in ctx.facts.items():
        kind = kinds.get(fid)
        if kind is not None and value.WhichOneof("kind") != kind[1]:
            raise InvalidArgument(
                f"context.facts[{fid}]", f"is a {kind[0]} fact: send it as {kind[1]}"
            )


def answer_to_proto(
    answer: Answer,
    request_id: str,
    decided: datetime | None = None,
    notices: Sequence[Notice] = (),
    obligation_due: Sequence[datetime | None] | None = None,
) -> pb.AuthoriseResponse:
    """The response. Obligations' due times are ``obligation_due`` (one per obligation, as
    the use case computed them), else computed from ``decided`` (default now)."""
    out = pb.AuthoriseResponse(
        effect=pb.EFFECT_ALLOW if answer.allowed else pb.EFFECT_DENY,
        reason=answer.reason,
        rule_id=answer.rule,
        failed_conditions=list(answer.failed_conditions),
        missing_facts=list(answer.missing_facts),
        decided_outside=answer.decided_outside,
        policy_version=answer.policy_version,
        decision_id=answer.decision_id,
        request_id=request_id,
        matched_role=answer.matched_role,
        service_area=answer.area,
        deviation=answer.deviation,
    )
    if answer.citation is not None:
        c = answer.citation
        out.citation.CopyFrom(
            pb.Citation(
                council=c.council,
                document=c.document,
                section=c.section,
                quote=c.quote,
                reading=c.reading,
            )
        )
    if obligation_due is None:
        when = decided or now()
        obligation_due = [
            due(o.timescale, when) if o.timescale else None for o in answer.obligations
        ]
    out.obligations.extend(
        _obligation(o, owed) for o, owed in zip(answer.obligations, obligation_due, strict=True)
    )
    out.authorisers.extend(authoriser_to_proto(a) for a in answer.authorisers)
    out.notifications.extend(notice_to_proto(n) for n in notices)
    return out


def outcome_to_proto(outcome: Outcome) -> pb.AuthoriseResponse:
    """The response to one authorised request, with the values the host records mapped."""
    response = answer_to_proto(
        outcome.answer,
        outcome.request.request_id,
        outcome.decided_at,
        outcome.notices,
        outcome.obligation_due,
    )
    if outcome.host is not None:
        from adapters._grpc import add_mapped

        add_mapped(response, outcome.host)
    return response


def _stamp(when: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


def notice_to_proto(n: Notice) -> pb.Notification:
    out = pb.Notification(
        event=n.event,
        audience=list(n.audience),
        by=list(n.by),
        timescale=n.timescale,
        section=n.section,
        quote=n.quote,
        wording=n.wording,
        reading=n.reading,
        conditions=n.conditions,
    )
    if n.due is not None:
        out.due.CopyFrom(_stamp(n.due))
    return out


def councils_to_proto(
    policies: PolicySet, visible: Callable[[str], bool] = lambda _: True
) -> pb.ListCouncilsResponse:
    out = pb.ListCouncilsResponse(policy_version=policies.version)
    for cid in sorted(c for c in policies.councils if visible(c)):
        p = policies.councils[cid]
        out.councils.append(
            pb.CouncilSummary(
                council=cid,
                name=p.name,
                document=p.title,
                effective=p.effective,
                decision_count=len(p.decisions),
            )
        )
    return out


def scheme_to_proto(policies: PolicySet, policy: CouncilPolicy) -> pb.GetSchemeResponse:
    out = pb.GetSchemeResponse(
        council=policy.council,
        name=policy.name,
        document=policy.title,
        effective=policy.effective,
        source_file=policy.seed,
        policy_version=policies.version,
    )
    for role in policy.roles.values():
        out.roles.append(
            pb.SchemeRole(
                id=role.id,
                titles=list(role.titles),
                kind=role.kind,
                independent=role.independent,
                all_areas=role.all_areas,
                inherited_by=sorted(role.seniors),
            )
        )
    for area in policy.areas.values():
        out.areas.append(pb.SchemeArea(id=area.id, name=area.name))
    used: set[str] = set()
    for d in policy.decisions.values():
        used.update(d.facts)
        out.decisions.append(
            pb.SchemeDecision(
                id=d.id,
                section=d.section,
                heading=d.heading,
                wording=d.wording,
                quote=d.quote,
                reading=d.reading,
                facts=list(d.facts),
                required_facts=list(d.required_facts),
                rule_ids=list(d.rules),
            )
        )
    for event in policy.events.values():
        used.update(event.facts)
        out.events.append(
            pb.SchemeEvent(
                id=event.id,
                section=event.section,
                heading=event.heading,
                wording=event.wording,
                quote=event.quote,
                reading=event.reading,
                conditions=conditions_text(policy, event),
                audience=[p.name for p in event.audience],
                by=[p.name for p in event.by],
                timescale=event.timescale,
                facts=list(event.facts),
            )
        )
    for fid in sorted(used | set(policy.declared_facts)):
        spec = policy.facts[fid]
        out.facts.append(
            pb.SchemeFact(
                id=fid,
                type=spec.type.value,
                label=spec.label,
                values=list(spec.values),
                well_known=fid not in policy.declared_facts,
            )
        )
    return out


def now() -> datetime:
    return datetime.now(UTC)


def authoriser_to_proto(a: Authoriser) -> pb.Authoriser:
    return pb.Authoriser(
        role=a.role, title=a.title, rule_id=a.rule, section=a.section, conditions=a.conditions
    )


def obligation_to_proto(o: Obligation, decided: datetime | None = None) -> pb.Obligation:
    """``decided``: the decision time, from which a timescale's due time is computed."""
    owed = due(o.timescale, decided) if o.timescale and decided is not None else None
    return _obligation(o, owed)


def _obligation(o: Obligation, owed: datetime | None) -> pb.Obligation:
    out = pb.Obligation(
        kind=_OBLIGATION_KINDS.get(o.kind, pb.OBLIGATION_KIND_UNSPECIFIED),  # type: ignore[arg-type]
        role=o.role,
        party=o.party,
        timescale=o.timescale,
        casenote=o.casenote,
        text=o.text,
        fact=o.fact,
    )
    if owed is not None:
        out.due.CopyFrom(_stamp(owed))
    return out


def permitted_to_proto(
    found: list[Permitted], version: str, decided: datetime | None = None
) -> pb.ListPermittedDecisionsResponse:
    return pb.ListPermittedDecisionsResponse(
        decisions=[
            pb.PermittedDecision(
                decision=p.decision,
                wording=p.wording,
                section=p.section,
                rule_id=p.rule,
                summary=p.summary,
                conditional=p.conditional,
                obligations=[obligation_to_proto(o, decided) for o in p.obligations],
            )
            for p in found
        ],
        policy_version=version,
    )
