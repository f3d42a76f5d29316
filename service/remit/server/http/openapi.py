"""The OpenAPI 3.1 document of the AuthZEN HTTP API, generated from the code.

Nothing here is written twice: the paths come from :data:`ENDPOINTS` (which the
application's routes are built from), the subject properties from the mapping's own lists,
the fact properties from the gRPC ``Context`` message and the answer's ``context`` from
``AuthoriseResponse`` (their descriptors, field by field, with the proto comments' types),
so a new Context fact or response field changes the document. ``openapi.json`` at the
repository root is this document, committed; ``python -m remit.server.http.openapi``
rewrites it and ``--check`` fails when it is stale (the tests run the check); the server
serves it at ``GET /openapi.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from remit.server.http import mapping
from remit.server.http.search import MAX_LIMIT, ROLE_TYPE
from remit.v1 import remit_pb2 as pb

TITLE = "remit: OpenID AuthZEN Authorization API 1.0"
VERSION = "1.0"
_SCALARS = {
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_INT64: {"type": "integer", "format": "int64"},
}


# the four parts of an evaluation, as references (the request, a batch item, batch defaults)
_PARTS = {
    part: {"$ref": f"#/components/schemas/{part.title()}"}
    for part in ("subject", "action", "resource", "context")
}


def message_schema(desc: Descriptor, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A protobuf message as JSON Schema, as ``MessageToDict`` with proto field names
    writes it (enums as names, Timestamps as RFC 3339 strings, maps as objects)."""
    props: dict[str, Any] = {}
    for fd in desc.fields:
        if fd.name in skip:
            continue
        props[fd.name] = _field_schema(fd)
    return {"type": "object", "properties": props}


def _value_schema(fd: FieldDescriptor) -> dict[str, Any]:
    if fd.type == FieldDescriptor.TYPE_ENUM and fd.enum_type is not None:
        return {"type": "string", "enum": [v.name for v in fd.enum_type.values]}
    if fd.message_type is not None:
        full = fd.message_type.full_name
        if full == "google.protobuf.Timestamp":
            return {"type": "string", "format": "date-time"}
        if full == "google.protobuf.Struct":
            return {"type": "object"}
        return {"$ref": f"#/components/schemas/{fd.message_type.name}"}
    return dict(_SCALARS.get(fd.type, {"type": "string"}))


def _field_schema(fd: FieldDescriptor) -> dict[str, Any]:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        value = fd.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _value_schema(value)}
    if fd.is_repeated:
        return {"type": "array", "items": _value_schema(fd)}
    return _value_schema(fd)


def _messages() -> dict[str, Any]:
    """Every message the answer's context refers to, by name."""
    out: dict[str, Any] = {}
    todo = [pb.AuthoriseResponse.DESCRIPTOR, pb.Grant.DESCRIPTOR, pb.Deviation.DESCRIPTOR]
    while todo:
        desc = todo.pop()
        if desc.name in out or desc.full_name.startswith("google.protobuf"):
            continue
        out[desc.name] = message_schema(desc)
        for fd in desc.fields:
            if fd.message_type is not None and not fd.message_type.GetOptions().map_entry:
                todo.append(fd.message_type)
    return dict(sorted(out.items()))


def _facts() -> dict[str, Any]:
    """The facts a case (resource.properties) or a decision (context) may carry."""
    props = message_schema(pb.Context.DESCRIPTOR, skip=("facts",))["properties"]
    return {
        "type": "object",
        "description": "Fields of remit's Context; any other key is a fact the council's "
        "scheme declares (see CatalogueService/GetScheme), sent as its declared kind.",
        "properties": props,
        "additionalProperties": {"type": ["boolean", "integer", "string"]},
    }


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


ERRORS = {
    "400": "Bad JSON, a body not sent as application/json, a wrong type, or a missing or "
    "unknown field (named); never an allow",
    "401": "No known bearer token (with an access file)",
    "403": "The caller may not query this council",
    "404": "Unknown council",
    "413": "The body is over 64 KiB",
    "500": "Internal error; no decision was made",
    "503": "The decision log refused the entry (strict mode); no answer",
}


def components() -> dict[str, Any]:
    """The schemas: the AuthZEN entities in remit's terms, and remit's answer."""
    subject_props: dict[str, Any] = {
        name: {"type": "array", "items": {"type": "string"}} for name in mapping.ACTOR_LISTS
    }
    subject_props.update({name: {"type": "boolean"} for name in mapping.ACTOR_FLAGS})
    decision_context = message_schema(pb.AuthoriseResponse.DESCRIPTOR, skip=("effect",))
    decision_context["properties"]["effect"] = {"type": "string", "enum": ["allow", "deny"]}
    decision_context["properties"]["error"] = {"$ref": "#/components/schemas/ItemError"}
    decision_context["description"] = (
        "remit's answer (AuthoriseResponse, proto field names, every field present); in an "
        "evaluations answer, error instead for an evaluation that could not be decided"
    )
    context = _facts()
    context["properties"] = {
        "decision_time": {"type": "string", "format": "date-time"},
        "request_id": {"type": "string"},
        "deviation": {"$ref": "#/components/schemas/Deviation"},
        **context["properties"],
    }
    schemas: dict[str, Any] = {
        "Subject": {
            "type": "object",
            "required": ["type", "id"],
            "properties": {
                "type": {"const": mapping.SUBJECT_TYPE},
                "id": {"type": "string", "description": "The worker's id (never a name)"},
                "properties": {
                    "type": "object",
                    "properties": subject_props,
                    "additionalProperties": False,
                },
            },
        },
        "Action": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "description": "The decision id"}},
        },
        "Resource": {
            "type": "object",
            "required": ["type", "id", "properties"],
            "properties": {
                "type": {"const": mapping.RESOURCE_TYPE},
                "id": {"type": "string", "description": "The case reference (logged as HMAC)"},
                "properties": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Facts"},
                        {
                            "type": "object",
                            "required": ["council"],
                            "properties": {"council": {"type": "string"}},
                        },
                    ]
                },
            },
        },
        "Facts": _facts(),
        "Context": context,
        "EvaluationRequest": {
            "type": "object",
            "required": ["subject", "action", "resource"],
            "properties": {
                **_PARTS,
            },
        },
        "Evaluation": {
            "type": "object",
            "properties": {
                **_PARTS,
            },
        },
        "EvaluationsRequest": {
            "type": "object",
            "properties": {
                **_PARTS,
                "evaluations": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Evaluation"},
                },
                "options": {
                    "type": "object",
                    "properties": {
                        "evaluations_semantic": {
                            "type": "string",
                            "enum": list(_semantics()),
                            "default": "execute_all",
                        }
                    },
                },
            },
        },
        "Decision": {
            "type": "object",
            "required": ["decision"],
            "properties": {
                "decision": {"type": "boolean"},
                "context": {"$ref": "#/components/schemas/DecisionContext"},
            },
        },
        "EvaluationsResponse": {
            "type": "object",
            "properties": {
                "evaluations": {"type": "array", "items": {"$ref": "#/components/schemas/Decision"}}
            },
        },
        "DecisionContext": decision_context,
        "ItemError": {
            "type": "object",
            "required": ["status", "message"],
            "properties": {
                "status": {"type": "integer"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        },
        "Page": {
            "type": "object",
            "properties": {
                "token": {"type": "string"},
                "limit": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
            },
        },
        "PageResult": {
            "type": "object",
            "required": ["next_token"],
            "properties": {
                "next_token": {"type": "string"},
                "count": {"type": "integer", "minimum": 0},
                "total": {"type": "integer", "minimum": 0},
            },
        },
        "SubjectSearchRequest": _search_request(
            {"type": "object", "required": ["type"], "properties": {"type": {"const": ROLE_TYPE}}},
            with_action=True,
        ),
        "ActionSearchRequest": _search_request(
            {"$ref": "#/components/schemas/Subject"}, with_action=False
        ),
        "SubjectSearchResponse": _search_response(
            {
                "type": "object",
                "required": ["type", "id"],
                "properties": {
                    "type": {"const": ROLE_TYPE},
                    "id": {"type": "string"},
                    "properties": message_schema(pb.Authoriser.DESCRIPTOR, skip=("role",)),
                },
            },
            {"decided_outside": {"type": "string"}, "policy_version": {"type": "string"}},
        ),
        "ActionSearchResponse": _search_response(
            _permitted(),
            {
                "conditional": {"type": "array", "items": _permitted()},
                "policy_version": {"type": "string"},
            },
        ),
        "ResourceSearchRequest": {
            "type": "object",
            "required": ["subject", "action", "resource"],
            "description": "A directory tenant's query (REMIT_AUTHZEN_DIRECTORY): its own "
            "subject and resource types (only under such a tenant's path)",
            "properties": {
                "subject": {"$ref": "#/components/schemas/TenantEntity"},
                "action": {"$ref": "#/components/schemas/Action"},
                "resource": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"type": "string"}},
                },
                "context": {"type": "object"},
                "page": {"$ref": "#/components/schemas/Page"},
            },
        },
        "ResourceSearchResponse": _search_response(
            {"$ref": "#/components/schemas/TenantEntity"}, {}
        ),
        "TenantEntity": {
            "type": "object",
            "required": ["type", "id"],
            "description": "A subject or resource in a directory tenant's own vocabulary",
            "properties": {
                "type": {"type": "string"},
                "id": {"type": "string"},
                "properties": {"type": "object"},
            },
        },
        "TenantRequest": {
            "type": "object",
            "description": "The request of the same endpoint without a tenant; for a tenant "
            "with a directory (REMIT_AUTHZEN_DIRECTORY), its entities are the tenant's own "
            "types and identifiers, and only its mapped properties are read",
        },
        "Metadata": {
            "type": "object",
            "required": ["policy_decision_point", "access_evaluation_endpoint"],
            "properties": {
                **{name: {"type": "string", "format": "uri"} for name in _metadata_names()},
                "signed_metadata": {
                    "type": "string",
                    "description": "A JWT (EdDSA) of these parameters, iss the PDP identifier "
                    "(with REMIT_AUTHZEN_METADATA_KEY and REMIT_HTTP_BASE_URL)",
                },
            },
        },
    }
    schemas.update({k: v for k, v in _messages().items() if k not in schemas})
    return dict(sorted(schemas.items()))


def _search_request(subject: dict[str, Any], with_action: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "subject": subject,
        "resource": {
            "allOf": [
                {"$ref": "#/components/schemas/Resource"},
                {"description": "The case; its id is not needed"},
            ]
        },
        "context": {"$ref": "#/components/schemas/Context"},
        "page": {"$ref": "#/components/schemas/Page"},
    }
    required = ["subject", "resource"]
    if with_action:
        props["action"] = {"$ref": "#/components/schemas/Action"}
        required.insert(1, "action")
    return {"type": "object", "required": required, "properties": props}


def _search_response(result: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["results"],
        "properties": {
            "page": {"$ref": "#/components/schemas/PageResult"},
            "context": {"type": "object", "properties": context},
            "results": {"type": "array", "items": result},
        },
    }


def _permitted() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "description": "The decision id"},
            "properties": message_schema(
                pb.PermittedDecision.DESCRIPTOR, skip=("decision", "conditional")
            ),
        },
    }


def _semantics() -> tuple[str, ...]:
    from remit.server.http.app import SEMANTICS

    return SEMANTICS


def _metadata_names() -> tuple[str, ...]:
    from remit.server.http.app import METADATA_FIELDS

    return ("policy_decision_point", *METADATA_FIELDS, "search_resource_endpoint")


TENANT = {
    "name": "tenant",
    "in": "path",
    "required": True,
    "description": "A council id: the PDP whose base URL is /{tenant}",
    "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
}


def _post(summary: str, request: str, response: str, tenant: bool = False) -> dict[str, Any]:
    return {
        **({"parameters": [TENANT]} if tenant else {}),
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}
                },
            },
            "responses": {
                "200": {
                    "description": "Answered (a deny is 200 with decision false)",
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{response}"}}
                    },
                },
                **{code: _text(text) for code, text in ERRORS.items()},
            },
        },
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document, from the application's endpoint table."""
    from remit.server.http.app import (
        ENDPOINTS,
        METADATA_PATH,
        OPENAPI_PATH,
        RESOURCE_SEARCH_PATH,
        TENANT_PREFIX,
    )

    paths: dict[str, Any] = {
        path: _post(summary, request, response)
        for path, (summary, request, response) in ENDPOINTS.items()
        if path != RESOURCE_SEARCH_PATH  # only under a tenant with a directory
    }
    paths.update(
        {
            TENANT_PREFIX + path: _post(f"{summary} (a tenant)", "TenantRequest", response, True)
            for path, (summary, request, response) in ENDPOINTS.items()
        }
    )
    metadata = {
        "summary": "PDP metadata",
        "responses": {
            "200": {
                "description": "The endpoints this PDP offers",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Metadata"}}
                },
            },
            "404": _text("Unknown tenant"),
        },
    }
    paths[METADATA_PATH] = {"get": metadata}
    paths[METADATA_PATH + TENANT_PREFIX] = {"parameters": [TENANT], "get": metadata}
    paths[OPENAPI_PATH] = {
        "get": {
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "remit's AuthZEN HTTPS JSON binding; see README "
            '"AuthZEN over HTTP/JSON" for the mapping.',
        },
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A dev token (dev_mode access files only)",
                }
            },
        },
        "paths": paths,
    }


def render() -> str:
    """The document as committed: sorted keys, two-space indent, a final newline."""
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    """Write ``openapi.json`` (the repository root, or the path given), or ``--check`` it."""
    args = [a for a in argv if a != "--check"]
    path = Path(args[0]) if args else Path(__file__).parents[4] / "openapi.json"
    text = render()
    if "--check" in argv:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            print(f"{path} is stale: run python -m remit.server.http.openapi", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
