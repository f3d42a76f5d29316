"""The AuthZEN Search APIs in remit's terms, with the specification's pagination.

* **Subject search** (``POST /access/v1/search/subject``): who may take this decision on
  this case, remit's ``ListAuthorisers`` (:func:`remit.engine.queries.who_may_decide`).
  remit knows the scheme's posts, not the council's staff, so the subjects are posts:
  ``subject.type`` must be ``"role"`` and each result is ``{"type": "role", "id": <role
  id>, "properties": {title, rule_id, section, conditions}}``, lowest post first; the
  response ``context.decided_outside`` names the body outside the department, if any.
* **Action search** (``POST /access/v1/search/action``): what this worker may decide on
  this case, remit's ``ListPermittedDecisions``
  (:func:`remit.engine.queries.permitted_decisions`). Each result is ``{"name": <decision
  id>, "properties": {wording, section, rule_id, summary, obligations}}``. Only settled
  permissions are results (so each, evaluated, is ``decision: true``); those that hang on a
  fact the request does not carry are listed apart in ``context.conditional``.
* **Resource search** is offered only under a tenant with a directory
  (:mod:`.directory`, ``/{council}/access/v1/search/resource``): the directory's resources
  the subject may act on. Elsewhere remit holds no case records, so it cannot list the cases
  a worker may act on, and neither the endpoint nor the metadata offers it.
* Under a directory tenant the subject and action searches answer in that tenant's terms
  too: the known subjects that may take the action on the resource, and the council's
  decisions (scheme order) the subject may take; every candidate is decided by the authorise
  use case as an evaluation would be, and an unknown identifier or type is an empty result.

Pagination: ``page.limit`` (1-1000; absent or 0: every result) and the opaque
``page.token`` from the previous ``page.next_token``. A token is bound to its query (a hash
of every entity and the limit): a token sent with a changed query is a 400 naming
``page.token``. Each response carries ``page`` with ``next_token`` ("" on the last page),
``count`` and ``total``. Searches are queries, not decisions: they are not decision-log
entries (as the gRPC list queries are not).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from google.protobuf import json_format

from remit.engine.queries import permitted_decisions, who_may_decide
from remit.model.errors import InvalidArgument
from remit.model.policy import PolicySet
from remit.server import convert as _convert
from remit.server.access import check_council
from remit.server.http.directory import Tenant, canonical
from remit.server.http.mapping import actor_from_json, fill_case, request_from_json
from remit.server.interceptors.validation import check_message
from remit.server.servicers import authorise
from remit.v1 import remit_pb2 as pb

ROLE_TYPE = "role"
MAX_LIMIT = 1000


def _object(value: Any, field: str, required: bool = True) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(field, "is required" if value is None else "must be a JSON object")
    return value


def _query_digest(body: dict[str, Any]) -> str:
    query = {k: body.get(k) for k in ("subject", "action", "resource", "context")}
    text = json.dumps(query, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def paginate(
    body: dict[str, Any], results: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The page of ``results`` the request's ``page`` asks for, and the response's ``page``.
    A token carries its query's limit: a follow-up may send the token alone, or the token
    with the same limit."""
    page = _object(body.get("page"), "page", required=False)
    limit = page.get("limit")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT
    ):
        raise InvalidArgument("page.limit", f"must be an integer from 0 to {MAX_LIMIT}")
    digest = _query_digest(body)
    offset = 0
    token = page.get("token", "")
    if not isinstance(token, str):
        raise InvalidArgument("page.token", "must be a string")
    if token:
        try:
            raw = base64.urlsafe_b64decode(token.encode()).decode()
            start, bound_limit, bound = raw.split(":", 2)
            offset, issued = int(start), int(bound_limit)
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument("page.token", "is not a token this PDP issued") from None
        if bound != digest or offset < 0 or (limit is not None and limit != issued):
            raise InvalidArgument(
                "page.token", "belongs to another query: send the same entities and limit"
            )
        limit = issued
    limit = limit or 0
    end = len(results) if limit == 0 else min(len(results), offset + limit)
    shown = results[offset:end]
    next_token = (
        base64.urlsafe_b64encode(f"{end}:{limit}:{digest}".encode()).decode()
        if end < len(results)
        else ""
    )
    return {"next_token": next_token, "count": len(shown), "total": len(results)}, shown


def _context(body: dict[str, Any]) -> dict[str, Any]:
    return _object(body.get("context"), "context", required=False)


def _as_json(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return out


def subject_search(policies: PolicySet, body: dict[str, Any]) -> dict[str, Any]:
    """Who may take ``action`` on ``resource``: the scheme's posts, as ``role`` subjects."""
    subject = _object(body.get("subject"), "subject")
    if subject.get("type") != ROLE_TYPE:
        raise InvalidArgument(
            "subject.type", f"must be {ROLE_TYPE!r}: remit answers with the scheme's posts"
        )
    action = _object(body.get("action"), "action")
    request = pb.ListAuthorisersRequest()
    name = action.get("name")
    if not isinstance(name, str):
        raise InvalidArgument("action.name", "is required" if name is None else "must be a string")
    request.decision = name
    fill_case(request, _object(body.get("resource"), "resource"), _context(body), policies)
    check_message(request)
    check_council(request.council, "resource.properties.council")
    facts, area, grant = _convert.context_from_proto(
        request.context, policies.councils.get(request.council)
    )
    when = _convert.time_from_proto(request, "decision_time")
    who = who_may_decide(policies, request.council, request.decision, facts, area, grant, when)
    results = []
    for a in who.authorisers:
        props = _as_json(_convert.authoriser_to_proto(a))
        results.append({"type": ROLE_TYPE, "id": props.pop("role"), "properties": props})
    page, shown = paginate(body, results)
    return {
        "page": page,
        "context": {"decided_outside": who.decided_outside, "policy_version": policies.version},
        "results": shown,
    }


def action_search(policies: PolicySet, body: dict[str, Any]) -> dict[str, Any]:
    """What the ``subject`` (a worker) may decide on ``resource``: settled permissions."""
    request = pb.ListPermittedDecisionsRequest(actor=actor_from_json(body.get("subject")))
    fill_case(request, _object(body.get("resource"), "resource"), _context(body), policies)
    check_message(request)
    check_council(request.council, "resource.properties.council")
    facts, area, grant = _convert.context_from_proto(
        request.context, policies.councils.get(request.council)
    )
    when = _convert.time_from_proto(request, "decision_time")
    actor = _convert.actor_from_proto(request.actor)
    found = permitted_decisions(policies, request.council, actor, facts, area, grant, when)
    listed = _convert.permitted_to_proto(found, policies.version, when or _convert.now())
    settled: list[dict[str, Any]] = []
    conditional: list[dict[str, Any]] = []
    for d in listed.decisions:
        props = _as_json(d)
        entry = {"name": props.pop("decision"), "properties": props}
        (conditional if props.pop("conditional") else settled).append(entry)
    page, shown = paginate(body, settled)
    return {
        "page": page,
        "context": {"conditional": conditional, "policy_version": policies.version},
        "results": shown,
    }


def _entity(body: dict[str, Any], name: str, need_id: bool) -> dict[str, Any]:
    """A search's entity: an object with a string ``type`` (and ``id`` when it is an
    input, not the entity searched for); InvalidArgument otherwise."""
    entity = _object(body.get(name), name)
    keys = ("type", "id") if need_id else ("type",)
    for key in keys:
        value = entity.get(key)
        if not isinstance(value, str):
            raise InvalidArgument(
                f"{name}.{key}", "is required" if value is None else "must be a string"
            )
    if entity.get("id") is not None and not isinstance(entity.get("id"), str):
        raise InvalidArgument(f"{name}.id", "must be a string")
    return entity


def _action(body: dict[str, Any]) -> dict[str, Any]:
    action = _object(body.get("action"), "action")
    name = action.get("name")
    if not isinstance(name, str):
        raise InvalidArgument("action.name", "is required" if name is None else "must be a string")
    return action


def _allowed(tenant: Tenant, policies: PolicySet, item: dict[str, Any]) -> bool:
    """Whether the evaluation ``item`` of ``tenant`` is an allow: the authorise use case,
    as an evaluation would be decided (a query: no decision-log entry)."""
    wire = request_from_json(canonical(tenant, item, policies), policies)
    check_message(wire)
    check_council(wire.council, "resource.properties.council")
    return authorise(policies, wire).effect == pb.EFFECT_ALLOW


def _found(body: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    page, shown = paginate(body, results)
    return {"page": page, "results": shown}


def directory_subject_search(
    tenant: Tenant, policies: PolicySet, body: dict[str, Any]
) -> dict[str, Any]:
    """The directory's subjects of the type asked for that may take ``action`` on
    ``resource`` (the subject's ``id``, if sent, is ignored)."""
    subject = _entity(body, "subject", need_id=False)
    action = _action(body)
    resource = _entity(body, "resource", need_id=True)
    if subject["type"] != tenant.subject_type or not tenant.known_resource(resource):
        return _found(body, [])
    results = [
        {"type": tenant.subject_type, "id": sid}
        for sid in tenant.subjects
        if _allowed(
            tenant,
            policies,
            {
                "subject": {"type": tenant.subject_type, "id": sid},
                "action": action,
                "resource": resource,
            },
        )
    ]
    return _found(body, results)


def directory_resource_search(
    tenant: Tenant, policies: PolicySet, body: dict[str, Any]
) -> dict[str, Any]:
    """The directory's resources of the type asked for on which ``subject`` may take
    ``action`` (the resource's ``id``, if sent, is ignored)."""
    subject = _entity(body, "subject", need_id=True)
    action = _action(body)
    resource = _entity(body, "resource", need_id=False)
    if resource["type"] != tenant.resource_type or not tenant.known_subject(subject):
        return _found(body, [])
    results = [
        {"type": tenant.resource_type, "id": rid}
        for rid in tenant.resources
        if _allowed(
            tenant,
            policies,
            {
                "subject": subject,
                "action": action,
                "resource": {"type": tenant.resource_type, "id": rid},
            },
        )
    ]
    return _found(body, results)


def directory_action_search(
    tenant: Tenant, policies: PolicySet, body: dict[str, Any]
) -> dict[str, Any]:
    """The council's decisions ``subject`` may take on ``resource``, in scheme order."""
    subject = _entity(body, "subject", need_id=True)
    resource = _entity(body, "resource", need_id=True)
    known = tenant.known_subject(subject) and tenant.known_resource(resource)
    policy = policies.councils.get(tenant.council)
    if not known or policy is None:
        return _found(body, [])
    results = [
        {"name": decision}
        for decision in policy.scheme_order
        if _allowed(
            tenant,
            policies,
            {"subject": subject, "action": {"name": decision}, "resource": resource},
        )
    ]
    return _found(body, results)
