"""The AuthZEN HTTP port's limits, the gRPC port's where both have one: the body is at
most gRPC's maximum message size, an evaluations batch at most REMIT_BATCH_LIMIT
evaluations (as AuthoriseBatch), a search page at most 1000 results; each refusal names
the field and decides nothing."""

from __future__ import annotations

import json

from remit.audit.log import AuditLog, Pseudonymiser
from remit.distribution.holder import PolicyHolder
from remit.model.policy import PolicySet
from remit.server.access import AccessPolicy
from remit.server.hook import DecisionHook
from remit.server.http.app import MAX_BODY_BYTES, HttpDeps
from remit.server.http.search import MAX_LIMIT
from remit.server.http.server import start_http
from remit.server.serve import MAX_MESSAGE_BYTES

from tests.integration.test_authzen_http import Pdp, epo
from tests.support.sinks import MemorySink


def test_the_body_limit_is_grpcs_message_limit() -> None:
    assert MAX_BODY_BYTES == MAX_MESSAGE_BYTES


def test_batch_and_page_limits_are_refused_naming_the_field(policies: PolicySet) -> None:
    sink = MemorySink()
    deps = HttpDeps(
        PolicyHolder(policies),
        DecisionHook(AuditLog(sink, "strict", Pseudonymiser(b"k" * 32))),
        AccessPolicy.open_access(),
        batch_limit=2,  # REMIT_BATCH_LIMIT
    )
    server = start_http("127.0.0.1:0", deps)
    try:
        pdp = Pdp(server, sink, None)  # type: ignore[arg-type]  # no metrics needed here
        one = epo(["team_manager"])
        status, headers, _ = pdp.call("/access/v1/evaluations", {"evaluations": [one] * 3})
        assert status == 400 and headers["remit-error-field"] == "evaluations"
        assert sink.lines == []  # refused whole: nothing decided
        status, _, data = pdp.call("/access/v1/evaluations", {"evaluations": [one] * 2})
        assert status == 200 and len(json.loads(data)["evaluations"]) == 2
        search = {**epo(["team_manager"]), "subject": {"type": "role"}}
        for limit in (MAX_LIMIT + 1, -1):
            status, headers, _ = pdp.call(
                "/access/v1/search/subject", {**search, "page": {"limit": limit}}
            )
            assert status == 400 and headers["remit-error-field"] == "page.limit"
        status, _, _ = pdp.call("/access/v1/search/subject", {**search, "page": {"limit": 1000}})
        assert status == 200
    finally:
        server.stop()
