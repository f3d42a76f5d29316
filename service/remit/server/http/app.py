"""The AuthZEN HTTP application (Starlette): evaluation, evaluations, the subject and
action searches (:mod:`.search`), PDP metadata (signed with :mod:`.signed` when configured)
and the OpenAPI document. Every endpoint is also served under a tenant, a council:
``/{council}/access/v1/...`` and ``/.well-known/authzen-configuration/{council}``; a tenant
with a directory (:mod:`.directory`) speaks its PEP's vocabulary and also offers resource
search. Requests are counted by route template and status (:class:`Counted`).

``POST /access/v1/evaluations`` takes the specification's batch: top-level ``subject``,
``action``, ``resource`` and ``context`` are defaults each evaluation may override (a whole
object at a time), ``options.evaluations_semantic`` is ``execute_all`` (the default),
``deny_on_first_deny`` or ``permit_on_first_permit`` (stop after the first deny, error
included, or the first permit: later evaluations are neither decided nor logged), at most
``REMIT_BATCH_LIMIT`` evaluations, all under one policy version. An evaluation that cannot
be decided is ``decision: false`` with ``context.error`` (``status``, ``message``,
``field``); without an ``evaluations`` array the body is one evaluation.

Every evaluation goes the gRPC way: :func:`.mapping.request_from_json` builds the
``AuthoriseRequest``, the same generic limits (:func:`check_message`), the caller's council
binding (:func:`check_council`), :func:`remit.server.servicers.answer` (the authorise use
case) and the decision hook (decision log, metrics, tracing), then the JSON answer.

Errors (the specification's HTTPS error handling; the body is an error message string,
``text/plain``, naming the field, which is also in the ``Remit-Error-Field`` header):
400 for bad JSON, a wrong type, a missing or unknown field (never ``decision: true``);
401 for a missing or unknown bearer token; 403 for a council the caller is not bound to;
404 for an unknown council or tenant; 413 for a body over the limit; 400 also for a body
not sent as ``application/json`` (the certification scenario's c-2-4-3); 503 when the
decision log refuses the entry (strict mode); 500 for an internal fault (no decision made).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from remit.audit.log import AuditUnavailable, CallInfo
from remit.distribution.holder import PolicyHolder
from remit.model.errors import InvalidArgument, NotFound, RequestError
from remit.model.policy import PolicySet
from remit.server import convert as _convert
from remit.server.access import CALLER, AccessPolicy, Caller, PermissionDenied, check_council
from remit.server.hook import DecisionHook
from remit.server.http.directory import Tenant, canonical
from remit.server.http.mapping import authzen_field, request_from_json, response_to_json
from remit.server.http.search import (
    action_search,
    directory_action_search,
    directory_resource_search,
    directory_subject_search,
    subject_search,
)
from remit.server.http.signed import MetadataSigner
from remit.server.interceptors.validation import check_message
from remit.server.metrics import Metrics
from remit.server.servicers import DEFAULT_BATCH_LIMIT, answer

log = logging.getLogger("remit.http")

MAX_BODY_BYTES = 64 * 1024  # as gRPC's maximum message size
EVALUATION_PATH = "/access/v1/evaluation"
EVALUATIONS_PATH = "/access/v1/evaluations"
METADATA_PATH = "/.well-known/authzen-configuration"
SUBJECT_SEARCH_PATH = "/access/v1/search/subject"
RESOURCE_SEARCH_PATH = "/access/v1/search/resource"
ACTION_SEARCH_PATH = "/access/v1/search/action"
OPENAPI_PATH = "/openapi.json"
SEMANTICS = ("execute_all", "deny_on_first_deny", "permit_on_first_permit")
# each POST endpoint: its summary, request and response schema (the OpenAPI document's)
ENDPOINTS = {
    EVALUATION_PATH: ("Access Evaluation: one decision", "EvaluationRequest", "Decision"),
    EVALUATIONS_PATH: (
        "Access Evaluations: a batch, with defaults and evaluations_semantic",
        "EvaluationsRequest",
        "EvaluationsResponse",
    ),
    SUBJECT_SEARCH_PATH: (
        "Subject search: the posts that may take this decision on this case",
        "SubjectSearchRequest",
        "SubjectSearchResponse",
    ),
    ACTION_SEARCH_PATH: (
        "Action search: the decisions this worker may take on this case",
        "ActionSearchRequest",
        "ActionSearchResponse",
    ),
    RESOURCE_SEARCH_PATH: (
        "Resource search: the resources a tenant's directory holds that this subject may act on",
        "ResourceSearchRequest",
        "ResourceSearchResponse",
    ),
}
# every endpoint is also served under a tenant (a council): /{council}/access/v1/...
TENANT_PREFIX = "/{tenant}"
# the PDP metadata's endpoint parameters, each the path it names
METADATA_FIELDS = {
    "access_evaluation_endpoint": EVALUATION_PATH,
    "access_evaluations_endpoint": EVALUATIONS_PATH,
    "search_subject_endpoint": SUBJECT_SEARCH_PATH,
    "search_action_endpoint": ACTION_SEARCH_PATH,
}
_MEMBERS = ("subject", "action", "resource", "context")
PEER_NAMES = "remit.peer_names"  # scope["state"]: the client certificate's typed names


class HttpError(Exception):
    """A refusal of the whole request: its status, message and the field it names."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def status_of(exc: RequestError) -> int:
    """The HTTP status a refused request is answered with."""
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, NotFound) and exc.field in ("council", "resource.properties.council"):
        return 404
    return 400


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member name {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """The body as JSON (I-JSON: UTF-8, unique member names, no NaN); HttpError 400."""
    try:
        return json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "too deeply nested" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise HttpError(400, f"the body is not valid JSON ({reason})", "body") from None


@dataclass
class HttpDeps:
    """What the HTTP application needs: the policy, the hook, the access policy, limits."""

    holder: PolicyHolder
    hook: DecisionHook
    access: AccessPolicy
    window: _convert.TimeWindow = _convert.TimeWindow()  # noqa: RUF009  # frozen, shared
    batch_limit: int = DEFAULT_BATCH_LIMIT
    base_url: str = ""  # the PDP identifier in the metadata; "" = from the request
    directory: dict[str, Tenant] = field(default_factory=dict)  # REMIT_AUTHZEN_DIRECTORY
    metrics: Metrics | None = None  # requests by endpoint and status, their duration
    signer: MetadataSigner | None = None  # signed_metadata (needs base_url)


def _error(exc: HttpError, request_id: str) -> Response:
    headers = {"Remit-Error-Field": exc.field} if exc.field else {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="remit"'
    if request_id:
        headers["X-Request-ID"] = request_id
    text = f"{exc.field}: {exc.message}" if exc.field else exc.message
    return PlainTextResponse(text, status_code=exc.status, headers=headers)


def with_council(item: dict[str, Any], council: str) -> dict[str, Any]:
    """``item`` with the tenant's council as ``resource.properties.council`` (a council
    already named there must be the tenant's)."""
    resource = item.get("resource")
    if not isinstance(resource, dict):
        return item  # refused, naming the field, by the mapping
    props = resource.get("properties", {})
    if not isinstance(props, dict):
        return item
    named = props.get("council", council)
    if named != council:
        raise InvalidArgument(
            "resource.properties.council", f"must be the tenant's council {council!r}, or absent"
        )
    return {**item, "resource": {**resource, "properties": {**props, "council": council}}}


def merged(item: Any, defaults: dict[str, Any] | None) -> dict[str, Any]:
    """One evaluation with the batch's defaults where it leaves a member out (whole
    objects: the specification's default values)."""
    if not isinstance(item, dict):
        raise InvalidArgument("evaluation", "must be a JSON object")
    out = dict(defaults or {})
    out.update({k: v for k, v in item.items() if k in _MEMBERS})
    return out


def _item_error(status: int, message: str, field: str = "") -> dict[str, Any]:
    """One evaluation of a batch that could not be decided: closed (``decision: false``),
    its error in its context (the specification's payload-level errors)."""
    error: dict[str, Any] = {"status": status, "message": message}
    if field:
        error["field"] = field
    return {"decision": False, "context": {"error": error}}


class Counted:
    """ASGI middleware: every HTTP request counted by the route that answered it (its
    template, ``unmatched`` for none) and its status, and timed; in flight while handled."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # a response never started is counted as an internal error
        counted = False

        def count() -> None:
            nonlocal counted
            if not counted:
                counted = True
                self.metrics.http_in_flight.dec()
                route = scope.get("route")
                endpoint = route.path if isinstance(route, Route) else "unmatched"
                self.metrics.count_http(endpoint, status, time.perf_counter() - started)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                count()  # before the last byte leaves: counted once the client has it all
            await send(message)

        self.metrics.http_in_flight.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            count()


def create_app(deps: HttpDeps) -> Starlette:
    """The Starlette application serving AuthZEN over ``deps``."""

    def caller(request: Request) -> Caller:
        """The caller as gRPC resolves it: the client certificate (mTLS), else a dev token."""
        names: tuple[str, ...] = request.scope.get("state", {}).get(PEER_NAMES, ())
        found = deps.access.resolve_names(names, request.headers.get("authorization", ""), "http")
        if found is None and names:
            log.warning(
                "permission denied: client certificate %s is not in the access file", names[0]
            )
            raise HttpError(403, "this client certificate is not bound to any council")
        if found is None:
            raise HttpError(401, "a known bearer token is required", "Authorization")
        return found

    async def body(request: Request) -> Any:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise HttpError(400, "the body must be sent as application/json", "Content-Type")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise HttpError(413, f"the body is over {MAX_BODY_BYTES} bytes", "body")
        raw = bytearray()
        async for chunk in request.stream():
            raw.extend(chunk)
            if len(raw) > MAX_BODY_BYTES:
                raise HttpError(413, f"the body is over {MAX_BODY_BYTES} bytes", "body")
        parsed = parse_json(bytes(raw))
        if not isinstance(parsed, dict):
            raise HttpError(400, "the body must be a JSON object", "body")
        return parsed

    def evaluate(
        who: Caller,
        item: Any,
        request_id: str,
        tenant: str,
        defaults: dict[str, Any] | None = None,
        policies: PolicySet | None = None,
    ) -> dict[str, Any]:
        """One evaluation through the use case and the hook; RequestError and
        AuditUnavailable propagate."""
        token = CALLER.set(who)
        try:
            policies = deps.holder.current() if policies is None else policies
            body = merged(item, defaults)
            if tenant in deps.directory:
                body = canonical(deps.directory[tenant], body, policies)
            elif tenant:
                body = with_council(body, tenant)
            wire = request_from_json(body, policies)
            if request_id and not wire.request_id:
                wire.request_id = request_id
            check_message(wire)
            check_council(wire.council, "resource.properties.council")
            started = time.perf_counter()
            outcome, response = answer(policies, wire, deps.window)
            deps.hook.answered(
                outcome,
                CallInfo(
                    caller=who.identity,
                    seconds=time.perf_counter() - started,
                    case_reference=wire.case_reference,
                    masked_fields=_convert.masked_fields(wire),
                ),
            )
            return response_to_json(response)
        finally:
            CALLER.reset(token)

    def single(who: Caller, item: dict[str, Any], request_id: str, tenant: str) -> dict[str, Any]:
        try:
            return evaluate(who, item, request_id, tenant)
        except RequestError as exc:
            raise HttpError(status_of(exc), exc.message, authzen_field(exc.field)) from None

    def many(who: Caller, payload: dict[str, Any], request_id: str, tenant: str) -> dict[str, Any]:
        items = payload.get("evaluations")
        if items is None:  # no evaluations array: a single evaluation (the spec's rule)
            return single(who, payload, request_id, tenant)
        if not isinstance(items, list):
            raise HttpError(400, "must be a list", "evaluations")
        if len(items) > deps.batch_limit:
            raise HttpError(400, f"at most {deps.batch_limit} evaluations", "evaluations")
        options = payload.get("options", {})
        if not isinstance(options, dict):
            raise HttpError(400, "must be a JSON object", "options")
        semantic = options.get("evaluations_semantic", "execute_all")
        if semantic not in SEMANTICS:
            raise HttpError(
                400, f"must be one of {', '.join(SEMANTICS)}", "options.evaluations_semantic"
            )
        if not items:  # an empty array: a single evaluation too (the spec's rule)
            return single(who, payload, request_id, tenant)
        defaults: dict[str, Any] = {
            k: payload[k] for k in ("subject", "action", "resource", "context") if k in payload
        }
        policies = deps.holder.current()  # the whole batch under one version
        results: list[dict[str, Any]] = []
        for item in items:
            try:
                result = evaluate(who, item, "", tenant, defaults, policies)
            except RequestError as exc:
                result = _item_error(status_of(exc), exc.message, authzen_field(exc.field))
            except AuditUnavailable as exc:
                result = _item_error(503, str(exc))
            except Exception:
                log.exception("internal error in an AuthZEN evaluations item")
                result = _item_error(500, "internal error; no decision was made")
            results.append(result)
            if semantic == "deny_on_first_deny" and not result["decision"]:
                break
            if semantic == "permit_on_first_permit" and result["decision"]:
                break
        return {"evaluations": results}

    def tenant_of(request: Request) -> str:
        """The council a tenant path names ("" without one); HttpError 404 for none."""
        tenant = str(request.path_params.get("tenant", ""))
        if tenant and tenant not in deps.holder.current().councils:
            raise HttpError(404, "is not a council this PDP serves", "tenant")
        return tenant

    Work = Callable[[Caller, dict[str, Any], str, str], dict[str, Any]]

    def endpoint(work: Work) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            request_id = request.headers.get("x-request-id", "")[:128]
            headers = {"X-Request-ID": request_id} if request_id else {}
            try:
                who = caller(request)
                tenant = tenant_of(request)
                payload = await body(request)
                result = await run_in_threadpool(work, who, payload, request_id, tenant)
            except HttpError as exc:
                return _error(exc, request_id)
            except AuditUnavailable as exc:
                return _error(HttpError(503, str(exc)), request_id)
            except Exception:
                log.exception("internal error in an AuthZEN request")
                return _error(HttpError(500, "internal error; no decision was made"), request_id)
            return JSONResponse(result, headers=headers)

        return handle

    async def metadata(request: Request) -> Response:
        try:
            tenant = tenant_of(request)
        except HttpError as exc:
            return _error(exc, "")
        base = deps.base_url or str(request.base_url).rstrip("/")
        if tenant:
            base = f"{base}/{tenant}"
        fields = dict(METADATA_FIELDS)
        if tenant in deps.directory and deps.directory[tenant].resources:
            fields["search_resource_endpoint"] = RESOURCE_SEARCH_PATH
        meta: dict[str, Any] = {
            "policy_decision_point": base,
            **{name: base + path for name, path in fields.items()},
        }
        if deps.signer is not None and deps.base_url:  # never over a Host header's URL
            meta["signed_metadata"] = deps.signer.token(meta)
        return JSONResponse(meta)

    from remit.server.http.openapi import document

    spec = document()

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    def searching(
        query: Callable[[PolicySet, dict[str, Any]], dict[str, Any]] | None,
        in_directory: Callable[[Tenant, PolicySet, dict[str, Any]], dict[str, Any]],
    ) -> Work:
        def run(
            who: Caller, payload: dict[str, Any], request_id: str, tenant: str
        ) -> dict[str, Any]:
            token = CALLER.set(who)
            try:
                policies = deps.holder.current()
                if tenant in deps.directory:
                    return in_directory(deps.directory[tenant], policies, payload)
                if query is None:  # resource search: remit holds no case records
                    raise HttpError(404, "is offered only for a tenant with a directory", "path")
                return query(policies, with_council(payload, tenant) if tenant else payload)
            except RequestError as exc:
                raise HttpError(status_of(exc), exc.message, authzen_field(exc.field)) from None
            finally:
                CALLER.reset(token)

        return run

    handlers: dict[str, Work] = {
        EVALUATION_PATH: single,
        EVALUATIONS_PATH: many,
        SUBJECT_SEARCH_PATH: searching(subject_search, directory_subject_search),
        ACTION_SEARCH_PATH: searching(action_search, directory_action_search),
        RESOURCE_SEARCH_PATH: searching(None, directory_resource_search),
    }
    middleware = [Middleware(Counted, metrics=deps.metrics)] if deps.metrics else []
    return Starlette(
        middleware=middleware,
        routes=[
            *(
                Route(path, endpoint(handlers[path]), methods=["POST"])
                for path in ENDPOINTS
                if path != RESOURCE_SEARCH_PATH  # only a tenant with a directory has resources
            ),
            Route(METADATA_PATH, metadata, methods=["GET"]),
            Route(OPENAPI_PATH, openapi, methods=["GET"]),
            *(
                Route(TENANT_PREFIX + path, endpoint(handlers[path]), methods=["POST"])
                for path in ENDPOINTS
            ),
            Route(METADATA_PATH + TENANT_PREFIX, metadata, methods=["GET"]),
        ],
    )
