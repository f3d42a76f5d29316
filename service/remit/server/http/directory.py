"""AuthZEN tenants with a directory: PEPs that name their entities by identifier only.

remit's own mapping (:mod:`.mapping`) expects the worker's posts and the case's facts in the
request, as the case-management system holds them. Some PEPs send bare identifiers and expect
the PDP to know the rest ("the PDP may resolve attributes internally", the specification's
information model); the AuthZEN certification scenario is one. A *directory*
(``REMIT_AUTHZEN_DIRECTORY``, a YAML file; off by default) describes, per council, the
vocabulary of such a PEP and the entities it names::

    tenants:
      authzen_fixture:             # a council id: served under /authzen_fixture/access/v1/...
        subject_type: user         # the subject type this tenant's PEP sends
        resource_type: record      # the resource type
        subjects:                  # known subjects and their posts (role ids)
          alice: {roles: [editor]}
        subject_properties:        # a subject property whose value names a post
          role: {admin: archive_admin}
        resources:                 # known resources and their facts (fact ids)
          record-1: {status: active}
        resource_facts: [status]   # resource properties that are facts of the decision
        action_facts: [soft]       # action properties that are facts of the decision
        context_facts: []          # context members that are facts of the decision

:func:`canonical` turns one evaluation of such a tenant into remit's own form (subject
``worker`` with ``roles``, resource ``case`` with the council and its facts, the action's
facts in ``context``), which then goes the ordinary way (:func:`.mapping.request_from_json`,
the same validation, the authorise use case, the decision hook). The subject's posts are
its directory posts and those its mapped properties name; the resource's facts are its
directory facts and the mapped properties (a property that disagrees with the directory is
refused, naming it: never resolved by preference). Only the mapped properties are read: a
tenant's PEP speaks its own vocabulary, and the certification scenario requires other
properties and ``context`` members to be accepted and ignored. Ignoring must never open a
door, so a key the directory does not map but which *names* one of the council's facts
(``emergency``, a declared fact) or a worker's field (``roles``, ``agency``...) is refused,
naming it: the fact might be what a prohibition tests. A council without a directory entry
keeps remit's strict mapping, where every unknown property is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from remit.model.errors import InvalidArgument
from remit.model.policy import PolicySet
from remit.server.http.mapping import ACTOR_FLAGS, ACTOR_LISTS
from remit.v1 import remit_pb2 as pb

CONTEXT_FIELDS = tuple(name for name in pb.Context.DESCRIPTOR.fields_by_name if name != "facts")
REQUEST_MEMBERS = ("council", "decision_time", "deviation", "request_id")

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@")


@dataclass(frozen=True)
class Tenant:
    """One council's directory: its PEP's types, entities and mapped properties."""

    council: str
    subject_type: str
    resource_type: str
    subjects: dict[str, tuple[str, ...]] = field(default_factory=dict)
    subject_properties: dict[str, dict[str, str]] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    resource_facts: frozenset[str] = frozenset()
    action_facts: frozenset[str] = frozenset()
    context_facts: frozenset[str] = frozenset()

    def known_subject(self, subject: dict[str, Any]) -> bool:
        return subject.get("type") == self.subject_type and subject.get("id") in self.subjects

    def known_resource(self, resource: dict[str, Any]) -> bool:
        return resource.get("type") == self.resource_type and resource.get("id") in self.resources


class DirectoryError(ValueError):
    """A directory file that does not load: every problem, with its key."""


def _ids(value: Any, where: str, problems: list[str]) -> list[str]:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v and set(v) <= _ID_CHARS for v in value
    ):
        problems.append(f"{where}: must be a list of ids")
        return []
    return value


def _mapping(value: Any, where: str, problems: list[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        problems.append(f"{where}: must be a mapping")
        return {}
    return value


_TENANT_KEYS = frozenset(
    (
        "subject_type",
        "resource_type",
        "subjects",
        "subject_properties",
        "resources",
        "resource_facts",
        "action_facts",
        "context_facts",
    )
)


def _tenant(council: str, raw: Any, where: str, problems: list[str]) -> Tenant | None:
    data = _mapping(raw, where, problems)
    for key in sorted(set(data) - _TENANT_KEYS):
        problems.append(f"{where}.{key}: not a directory key ({', '.join(sorted(_TENANT_KEYS))})")
    types = []
    for key in ("subject_type", "resource_type"):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            problems.append(f"{where}.{key}: is required (a string)")
        types.append(str(value))
    subjects: dict[str, tuple[str, ...]] = {}
    for sid, entry in _mapping(data.get("subjects"), f"{where}.subjects", problems).items():
        spec = _mapping(entry, f"{where}.subjects.{sid}", problems)
        if set(spec) - {"roles"}:
            problems.append(f"{where}.subjects.{sid}: only roles is known")
        subjects[sid] = tuple(
            _ids(spec.get("roles", []), f"{where}.subjects.{sid}.roles", problems)
        )
    props: dict[str, dict[str, str]] = {}
    raw_props = _mapping(data.get("subject_properties"), f"{where}.subject_properties", problems)
    for name, values in raw_props.items():
        table = _mapping(values, f"{where}.subject_properties.{name}", problems)
        if not all(isinstance(v, str) and v for v in table.values()):
            problems.append(f"{where}.subject_properties.{name}: each value names a role id")
        props[name] = {str(k): str(v) for k, v in table.items()}
    resources: dict[str, dict[str, Any]] = {}
    for rid, facts in _mapping(data.get("resources"), f"{where}.resources", problems).items():
        spec = _mapping(facts, f"{where}.resources.{rid}", problems)
        for key, value in spec.items():
            if isinstance(value, float) or not isinstance(value, (bool, int, str)):
                problems.append(f"{where}.resources.{rid}.{key}: a boolean, integer or string")
        resources[rid] = dict(spec)
    resource_facts = _ids(data.get("resource_facts", []), f"{where}.resource_facts", problems)
    action_facts = _ids(data.get("action_facts", []), f"{where}.action_facts", problems)
    context_facts = _ids(data.get("context_facts", []), f"{where}.context_facts", problems)
    for rid, spec in resources.items():
        for key in sorted(set(spec) - set(resource_facts)):
            problems.append(f"{where}.resources.{rid}.{key}: not in resource_facts")
    if problems:
        return None
    return Tenant(
        council,
        types[0],
        types[1],
        subjects,
        props,
        resources,
        frozenset(resource_facts),
        frozenset(action_facts),
        frozenset(context_facts),
    )


def load(path: Path) -> dict[str, Tenant]:
    """The tenants of a directory file; DirectoryError lists every problem."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DirectoryError(f"REMIT_AUTHZEN_DIRECTORY {path}: cannot read ({exc})") from exc
    problems: list[str] = []
    top = _mapping(data, "directory", problems)
    for key in sorted(set(top) - {"tenants"}):
        problems.append(f"{key}: not a directory key (tenants)")
    tenants: dict[str, Tenant] = {}
    for council, raw in _mapping(top.get("tenants"), "tenants", problems).items():
        tenant = _tenant(council, raw, f"tenants.{council}", problems)
        if tenant is not None:
            tenants[council] = tenant
    if problems:
        raise DirectoryError(f"REMIT_AUTHZEN_DIRECTORY {path}: " + "; ".join(problems))
    return tenants


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        raise InvalidArgument(name, "is required")
    if not isinstance(value, dict):
        raise InvalidArgument(name, "must be a JSON object")
    return value


def _string(value: Any, name: str) -> str:
    if value is None:
        raise InvalidArgument(name, "is required")
    if not isinstance(value, str):
        raise InvalidArgument(name, "must be a string")
    return value


def _properties(entity: dict[str, Any], name: str) -> dict[str, Any]:
    props = entity.get("properties")
    if props is None:
        return {}
    if not isinstance(props, dict):
        raise InvalidArgument(f"{name}.properties", "must be a JSON object")
    return props


def _unmapped(key: str, field: str, known: frozenset[str]) -> None:
    """An unmapped key is ignored, unless it names something remit decides on."""
    if key in known:
        raise InvalidArgument(
            field,
            "names a fact or worker field this tenant's directory does not map: "
            "refused rather than ignored",
        )


def decided_on(policies: PolicySet, council: str) -> frozenset[str]:
    """The names remit decides on in ``council``: its facts (the gRPC ``Context`` fields and
    the scheme's declared facts), the worker's fields and the request's own members."""
    policy = policies.councils.get(council)
    declared = policy.declared_facts if policy is not None else ()
    return frozenset((*CONTEXT_FIELDS, *declared, *ACTOR_LISTS, *ACTOR_FLAGS, *REQUEST_MEMBERS))


def canonical(tenant: Tenant, item: dict[str, Any], policies: PolicySet) -> dict[str, Any]:
    """One evaluation of ``tenant`` (its ``subject``, ``action``, ``resource``, ``context``)
    in remit's own form (an unmapped key naming what remit decides on is refused);
    InvalidArgument names the field."""
    known = decided_on(policies, tenant.council)
    subject = _object(item.get("subject"), "subject")
    action = _object(item.get("action"), "action")
    resource = _object(item.get("resource"), "resource")
    if _string(subject.get("type"), "subject.type") != tenant.subject_type:
        raise InvalidArgument("subject.type", f"must be {tenant.subject_type!r}")
    sid = _string(subject.get("id"), "subject.id")
    roles = list(tenant.subjects.get(sid, ()))
    for key, value in _properties(subject, "subject").items():
        table = tenant.subject_properties.get(key)
        if table is None:  # not this tenant's vocabulary: ignored
            _unmapped(key, f"subject.properties.{key}", known)
            continue
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in values):
            raise InvalidArgument(f"subject.properties.{key}", "must be a string or strings")
        roles.extend(table[v] for v in values if v in table and table[v] not in roles)
    if not roles:
        raise InvalidArgument(
            "subject.id", "is not a subject this PDP knows (and no mapped property)"
        )
    name = _string(action.get("name"), "action.name")
    rtype = _string(resource.get("type"), "resource.type")
    if rtype != tenant.resource_type:
        raise InvalidArgument("resource.type", f"must be {tenant.resource_type!r}")
    rid = _string(resource.get("id"), "resource.id")
    facts: dict[str, Any] = dict(tenant.resources.get(rid, {}))
    for key, value in _properties(resource, "resource").items():
        if key not in tenant.resource_facts:
            _unmapped(key, f"resource.properties.{key}", known)
            continue
        if key in facts and facts[key] != value:
            raise InvalidArgument(
                f"resource.properties.{key}",
                f"disagrees with what this PDP holds for resource {rid!r}",
            )
        facts[key] = value
    context: dict[str, Any] = {}
    for key, value in _properties(action, "action").items():
        if key in tenant.action_facts:
            context[key] = value
        else:
            _unmapped(key, f"action.properties.{key}", known)
    given = item.get("context")
    if given is not None and not isinstance(given, dict):
        raise InvalidArgument("context", "must be a JSON object")
    for key, value in (given or {}).items():
        if key in tenant.context_facts:
            if key in context:
                raise InvalidArgument(f"context.{key}", "is already given in action.properties")
            context[key] = value
        else:
            _unmapped(key, f"context.{key}", known)
    return {
        "subject": {"type": "worker", "id": sid, "properties": {"roles": roles}},
        "action": {"name": name},
        "resource": {"type": "case", "id": rid, "properties": {"council": tenant.council, **facts}},
        "context": context,
    }
