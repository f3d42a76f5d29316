"""The AuthZEN information model in remit's terms, both ways.

Request (``POST /access/v1/evaluation``)::

    subject   {type: "worker", id: <actor id>,
               properties: {roles, service_areas, acting_for, agency, registered_social_worker}}
    action    {name: <decision id>}
    resource  {type: "case", id: <case reference>,
               properties: {council, <case facts: legal_status, child_age, looked_after, ...>}}
    context   {<decision facts: amount_pence, exceptional_circumstances, ...>,
               decision_time: RFC 3339, request_id, service_area, grant,
               deviation: {agreed_by_id, agreed_by_role, reason_code}}

Facts named in ``resource.properties`` or ``context`` are the fields of the gRPC
``Context`` message (typed strictly: a JSON ``true`` is not an integer); any other key is a
fact the council's scheme declares (sent as its declared kind). Unknown top-level members
are ignored, as the specification requires; an unknown key *inside* ``subject.properties``,
``resource.properties`` or ``context`` is refused naming it, since ignoring a fact could
change a decision (fail closed).

Response: ``decision`` is the effect (``true`` only for an allow); ``context`` is the gRPC
``AuthoriseResponse`` in its JSON form with the proto field names (``reason``, ``rule_id``,
``citation``, ``obligations`` with ``due``, ``authorisers``, ``failed_conditions``,
``missing_facts``, ``decided_outside``, ``policy_version``, ``decision_id``...), the
effect as ``effect: "allow" | "deny"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from remit.model.errors import InvalidArgument
from remit.model.policy import PolicySet
from remit.v1 import remit_pb2 as pb

SUBJECT_TYPE = "worker"
RESOURCE_TYPE = "case"
ACTOR_LISTS = ("roles", "service_areas", "acting_for")
ACTOR_FLAGS = ("agency", "registered_social_worker")
_MEMBERS = ("subject", "action", "resource", "context")
_CONTEXT_FIELDS = pb.Context.DESCRIPTOR.fields_by_name
_INTS = (
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
)
_FACT_KIND = {
    "bool": "bool_value",
    "int": "int_value",
    "money": "money_pence",
    "enum": "enum_value",
}
INT64_LIMIT = 2**53  # I-JSON: integers beyond IEEE 754 double precision are refused


def _object(value: Any, field: str, required: bool = True) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if value is None:
        raise InvalidArgument(field, "is required")
    if not isinstance(value, dict):
        raise InvalidArgument(field, "must be a JSON object")
    return value


def _string(value: Any, field: str) -> str:
    if value is None:
        raise InvalidArgument(field, "is required")
    if not isinstance(value, str):
        raise InvalidArgument(field, "must be a string")
    return value


def _strings(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(field, "must be a list of strings")
    return value


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(field, "must be true or false")
    return value


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(field, "must be an integer")
    if abs(value) >= INT64_LIMIT:
        raise InvalidArgument(field, "is out of range")
    return value


def _actor(subject: dict[str, Any]) -> pb.Actor:
    kind = _string(subject.get("type"), "subject.type")
    if kind != SUBJECT_TYPE:
        raise InvalidArgument("subject.type", f"must be {SUBJECT_TYPE!r}")
    actor = pb.Actor(id=_string(subject.get("id"), "subject.id"))
    props = _object(subject.get("properties"), "subject.properties", required=False)
    for key, value in props.items():
        field = f"subject.properties.{key}"
        if key in ACTOR_LISTS:
            getattr(actor, key).extend(_strings(value, field))
        elif key in ACTOR_FLAGS:
            setattr(actor, key, _bool(value, field))
        else:
            raise InvalidArgument(field, "is not a property of a worker")
    return actor


def _set_fact(
    ctx: pb.Context, key: str, value: Any, field: str, declared: Mapping[str, str]
) -> None:
    """One fact onto ``ctx``: a Context field, strictly typed, or a scheme-declared fact."""
    fd = _CONTEXT_FIELDS.get(key)
    if fd is None or key == "facts":
        kind = declared.get(key)
        fact = ctx.facts[key]
        if kind == "money" or kind == "int":
            setattr(fact, _FACT_KIND[kind], _int(value, field))
        elif kind == "bool" or (kind is None and isinstance(value, bool)):
            fact.bool_value = _bool(value, field)
        elif kind == "enum" or (kind is None and isinstance(value, str)):
            fact.enum_value = _string(value, field)
        elif kind is None and isinstance(value, int):
            fact.int_value = _int(value, field)
        else:
            raise InvalidArgument(field, "must be a boolean, an integer or a string")
        return
    if fd.message_type is not None:  # grant
        grant = _object(value, field)
        try:
            json_format.ParseDict(grant, getattr(ctx, key))
        except json_format.ParseError as exc:
            raise InvalidArgument(field, f"is not a grant ({exc})") from None
    elif fd.is_repeated:
        getattr(ctx, key).extend(_strings(value, field))
    elif fd.type == FieldDescriptor.TYPE_BOOL:
        setattr(ctx, key, _bool(value, field))
    elif fd.type in _INTS:
        number = _int(value, field)
        if fd.type == FieldDescriptor.TYPE_INT32 and not -(2**31) <= number < 2**31:
            raise InvalidArgument(field, "is out of range")
        setattr(ctx, key, number)
    else:
        setattr(ctx, key, _string(value, field))


def _decision_time(
    value: Any,
    request: pb.AuthoriseRequest | pb.ListAuthorisersRequest | pb.ListPermittedDecisionsRequest,
) -> None:
    text = _string(value, "context.decision_time")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument("context.decision_time", "must be an RFC 3339 date-time") from None
    if when.tzinfo is None:
        raise InvalidArgument("context.decision_time", "must carry a time zone offset")
    request.decision_time.FromDatetime(when)


def fill_case(
    request: pb.AuthoriseRequest | pb.ListAuthorisersRequest | pb.ListPermittedDecisionsRequest,
    resource: dict[str, Any],
    context: dict[str, Any],
    policies: PolicySet,
) -> None:
    """The case (``resource``) and the decision's ``context`` onto ``request``: the council,
    the case reference (an evaluation's; optional in a search), the facts, the decision
    time."""
    if _string(resource.get("type"), "resource.type") != RESOURCE_TYPE:
        raise InvalidArgument("resource.type", f"must be {RESOURCE_TYPE!r}")
    if isinstance(request, pb.AuthoriseRequest):
        request.case_reference = _string(resource.get("id"), "resource.id")
    elif resource.get("id") is not None:  # a search: the case's id is not needed
        _string(resource.get("id"), "resource.id")
    props = _object(resource.get("properties"), "resource.properties")
    request.council = _string(props.get("council"), "resource.properties.council")
    policy = policies.councils.get(request.council)
    declared = (
        {fid: policy.facts[fid].type.value for fid in policy.declared_facts} if policy else {}
    )
    for key, value in props.items():
        if key != "council":
            _set_fact(request.context, key, value, f"resource.properties.{key}", declared)
    for key, value in context.items():
        if key == "decision_time":
            _decision_time(value, request)
        elif key == "deviation" and isinstance(request, pb.AuthoriseRequest):
            _deviation(value, request.deviation)
        elif key == "request_id":
            if not isinstance(request, pb.AuthoriseRequest):
                raise InvalidArgument("context.request_id", "is not used by a search")
            request.request_id = _string(value, "context.request_id")
        elif key in props:
            raise InvalidArgument(f"context.{key}", "is already given in resource.properties")
        else:
            _set_fact(request.context, key, value, f"context.{key}", declared)


def _deviation(value: Any, into: pb.Deviation) -> None:
    """A break-glass deviation (``context.deviation``): who agreed it, their role, a code."""
    fields = _object(value, "context.deviation")
    for key, text in fields.items():
        if key not in ("agreed_by_id", "agreed_by_role", "reason_code"):
            raise InvalidArgument(f"context.deviation.{key}", "is not part of a deviation")
        setattr(into, key, _string(text, f"context.deviation.{key}"))


def actor_from_json(subject: Any) -> pb.Actor:
    """The worker a ``subject`` names (type ``worker``, an id, its properties)."""
    return _actor(_object(subject, "subject"))


def request_from_json(
    body: Any, policies: PolicySet, defaults: Mapping[str, Any] | None = None
) -> pb.AuthoriseRequest:
    """An AuthZEN evaluation request as remit's ``AuthoriseRequest``; raises InvalidArgument
    naming the field. ``defaults`` are the top-level ``subject``, ``action``, ``resource``
    and ``context`` of a batch, used where the evaluation leaves them out (the
    specification's default values: an evaluation's own object replaces the default)."""
    body = _object(body, "evaluation")
    merged = dict(defaults or {})
    merged.update({k: v for k, v in body.items() if k in _MEMBERS})
    subject = _object(merged.get("subject"), "subject")
    action = _object(merged.get("action"), "action")
    resource = _object(merged.get("resource"), "resource")
    context = _object(merged.get("context"), "context", required=False)
    request = pb.AuthoriseRequest(actor=_actor(subject))
    request.decision = _string(action.get("name"), "action.name")
    if _object(action.get("properties"), "action.properties", required=False):
        raise InvalidArgument("action.properties", "a decision takes no action properties")
    fill_case(request, resource, context, policies)
    return request


_RENAMED = {
    "council": "resource.properties.council",
    "case_reference": "resource.id",
    "decision": "action.name",
    "decision_time": "context.decision_time",
    "request_id": "context.request_id",
    "actor": "subject",
    "actor.id": "subject.id",
}
_FACT_KEY = re.compile(r"^context\.facts\[([^\]]+)\](.*)$")


def authzen_field(field: str) -> str:
    """A field the engine names in gRPC's terms (``actor.roles[0]``, ``decision``) in
    AuthZEN's (``subject.properties.roles[0]``, ``action.name``)."""
    head, dot, rest = field.partition(".")
    if field in _RENAMED:
        return _RENAMED[field]
    if head in _RENAMED and not head.startswith("actor"):
        return f"{_RENAMED[head]}{dot}{rest}"
    if field.startswith("actor."):
        return "subject.properties." + field.removeprefix("actor.")
    fact = _FACT_KEY.match(field)
    if fact:
        return f"context.{fact.group(1)}{fact.group(2)}"
    return field


def response_to_json(response: pb.AuthoriseResponse) -> dict[str, Any]:
    """remit's answer as an AuthZEN evaluation response: the boolean and the whole answer."""
    context = json_format.MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    context["effect"] = "allow" if response.effect == pb.EFFECT_ALLOW else "deny"
    return {"decision": response.effect == pb.EFFECT_ALLOW, "context": context}
