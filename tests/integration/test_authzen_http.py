"""AuthZEN Access Evaluation(s) and PDP metadata over HTTP, against a real server on a free
port (uvicorn), with requests and responses validated against the working group's JSON
Schemas (tests/fixtures/authzen/), and every decision checked to reach the decision log
and the metrics through the same hook as gRPC."""

from __future__ import annotations

import hashlib
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from remit.audit.log import AuditLog, Pseudonymiser
from remit.distribution.holder import PolicyHolder
from remit.distribution.source import SourceStatus
from remit.model.policy import PolicySet
from remit.server.access import AccessPolicy
from remit.server.convert import TimeWindow
from remit.server.hook import DecisionHook
from remit.server.http.app import MAX_BODY_BYTES, HttpDeps
from remit.server.http.server import HttpServer, start_http
from remit.server.metrics import Metrics

from tests.support.sinks import MemorySink

SCHEMAS = Path(__file__).parents[1] / "fixtures" / "authzen"
REQUEST = Draft202012Validator(json.loads((SCHEMAS / "evaluation-request.schema.json").read_text()))
RESPONSE = Draft202012Validator(
    json.loads((SCHEMAS / "evaluation-response.schema.json").read_text())
)
TOKEN = "halton-dev-token"


class Pdp:
    """A running AuthZEN server and what it shares with gRPC: the log and the metrics."""

    def __init__(self, server: HttpServer, sink: MemorySink, metrics: Metrics) -> None:
        self.server = server
        self.sink = sink
        self.metrics = metrics

    def call(
        self,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        method: str = "POST",
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            sent = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=data, headers=sent)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def evaluate(self, body: dict[str, Any], **kw: Any) -> tuple[int, Any]:
        REQUEST.validate(body)
        status, _, data = self.call("/access/v1/evaluation", body, **kw)
        if status == 200:
            answer = json.loads(data)
            RESPONSE.validate(answer)
            return status, answer
        return status, data.decode()

    def decisions_counted(self) -> float:
        total = 0.0
        for family in self.metrics.registry.collect():
            if family.name == "remit_decisions":
                total += sum(s.value for s in family.samples if s.name == "remit_decisions_total")
        return total


def _serve(policies: PolicySet, access: AccessPolicy) -> tuple[HttpServer, MemorySink, Metrics]:
    sink = MemorySink()
    metrics = Metrics(lambda: SourceStatus(policies.version, "local"))
    deps = HttpDeps(
        PolicyHolder(policies),
        DecisionHook(AuditLog(sink, "strict", Pseudonymiser(b"k" * 32)), [metrics]),
        access,
        TimeWindow(),
        metrics=metrics,
    )
    return start_http("127.0.0.1:0", deps), sink, metrics


@pytest.fixture(scope="module")
def pdp(policies: PolicySet) -> Iterator[Pdp]:
    server, sink, metrics = _serve(policies, AccessPolicy.open_access())
    yield Pdp(server, sink, metrics)
    server.stop()


def epo(
    roles: list[str], context: dict[str, Any] | None = None, council: str = "torbay"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": {"type": "worker", "id": "tm-0001", "properties": {"roles": roles}},
        "action": {"name": "apply_epo"},
        "resource": {"type": "case", "id": "CASE-77", "properties": {"council": council}},
    }
    if context is not None:
        body["context"] = context
    return body


def test_a_deny_is_false_with_remits_reason_and_who_may_decide(pdp: Pdp) -> None:
    before = len(pdp.sink.lines), pdp.decisions_counted()
    status, answer = pdp.evaluate(epo(["team_manager"]))
    assert status == 200 and answer["decision"] is False
    ctx = answer["context"]
    assert ctx["effect"] == "deny" and "Head of Service" in ctx["reason"]
    assert [a["role"] for a in ctx["authorisers"]] == ["head_of_service"]
    assert "exceptional_circumstances" in ctx["missing_facts"]
    assert len(ctx["decision_id"]) == 32 and len(ctx["policy_version"]) == 16
    # the same decision hook as gRPC: one log entry (no case reference as given), one count
    assert len(pdp.sink.lines) == before[0] + 1
    entry = json.loads(pdp.sink.lines[-1])
    assert entry["decision_id"] == ctx["decision_id"] and "CASE-77" not in pdp.sink.lines[-1]
    assert pdp.decisions_counted() == before[1] + 1


def test_an_allow_is_true_citing_the_rule(pdp: Pdp) -> None:
    status, answer = pdp.evaluate(epo(["team_manager"], {"exceptional_circumstances": True}))
    assert status == 200 and answer["decision"] is True
    ctx = answer["context"]
    assert ctx["effect"] == "allow" and ctx["rule_id"] == "6.7-tm-exceptional"
    assert ctx["citation"]["section"] == "6.7"
    assert "delay would place the child at risk" in ctx["citation"]["quote"]
    # the documented shape: every list is present, empty or not
    assert ctx["failed_conditions"] == [] and ctx["missing_facts"] == []


def test_obligations_carry_due_times_from_the_decision_time(pdp: Pdp) -> None:
    body = epo(["team_manager"], {"decision_time": "2026-11-27T15:00:00+00:00"})
    body["action"]["name"] = "court_directed_placement"
    status, answer = pdp.evaluate(body)
    assert status == 200 and answer["decision"] is True, answer
    notify = [o for o in answer["context"]["obligations"] if o["kind"] == "OBLIGATION_KIND_NOTIFY"]
    assert notify and notify[0]["timescale"] == "within_1_week"
    assert notify[0]["due"].startswith("2026-12-0")


def test_request_id_header_is_echoed_and_reaches_the_answer(pdp: Pdp) -> None:
    status, headers, data = pdp.call(
        "/access/v1/evaluation", epo(["team_manager"]), headers={"X-Request-ID": "req-9"}
    )
    assert status == 200 and headers["x-request-id"] == "req-9"
    assert json.loads(data)["context"]["request_id"] == "req-9"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b.pop("subject"), "subject"),
        (lambda b: b["subject"].pop("id"), "subject.id"),
        (lambda b: b["subject"].update(type="user"), "subject.type"),
        (
            lambda b: b["subject"]["properties"].update(roles="team_manager"),
            "subject.properties.roles",
        ),
        (lambda b: b["subject"]["properties"].update(shoe_size=9), "subject.properties.shoe_size"),
        (lambda b: b["action"].pop("name"), "action.name"),
        (lambda b: b["resource"]["properties"].pop("council"), "resource.properties.council"),
        (
            lambda b: b.update(context={"exceptional_circumstances": 1}),
            "context.exceptional_circumstances",
        ),
        (lambda b: b.update(context={"amount_pence": True}), "context.amount_pence"),
        (lambda b: b.update(context={"amount_pence": "100"}), "context.amount_pence"),
        (lambda b: b.update(context={"decision_time": "yesterday"}), "context.decision_time"),
        (
            lambda b: b.update(context={"decision_time": "2001-01-01T00:00:00Z"}),
            "context.decision_time",
        ),
        (
            lambda b: b["subject"]["properties"].update(roles=["wizard"]),
            "subject.properties.roles[0]",
        ),
        (lambda b: b["action"].update(name="no_such_decision"), "action.name"),
        (lambda b: b["subject"].update(id="x" * 300), "subject.id"),
    ],
)
def test_a_bad_request_is_400_naming_the_field_never_an_allow(
    pdp: Pdp, change: Any, field: str
) -> None:
    body = epo(["team_manager"], {"exceptional_circumstances": True})
    change(body)
    status, headers, data = pdp.call("/access/v1/evaluation", body)
    assert status == 400, data
    assert headers["remit-error-field"] == field
    assert data.decode().startswith(f"{field}: ")


def test_an_unknown_council_is_404(pdp: Pdp) -> None:
    status, headers, _ = pdp.call(
        "/access/v1/evaluation", epo(["team_manager"], council="atlantis")
    )
    assert status == 404 and headers["remit-error-field"] == "resource.properties.council"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"subject": 1, "subject": 2}', 400),  # I-JSON: member names unique
        (b'{"a": NaN}', 400),
        (b"\xff\xfe", 400),
        (b"[" * 5000 + b"]" * 5000, 400),
        (b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}', 413),
    ],
)
def test_bad_bodies_get_the_error_handling(pdp: Pdp, raw: bytes, status: int) -> None:
    got, _, data = pdp.call("/access/v1/evaluation", raw=raw)
    assert got == status, data
    assert b"true" not in data


def test_a_body_not_sent_as_json_is_400(pdp: Pdp) -> None:  # scenario c-2-4-3
    got, headers, _ = pdp.call(
        "/access/v1/evaluation",
        epo(["team_manager"]),
        headers={"Content-Type": "text/plain"},
    )
    assert got == 400 and headers["remit-error-field"] == "Content-Type"


def test_unknown_top_level_members_are_ignored_as_the_spec_requires(pdp: Pdp) -> None:
    body = epo(["team_manager"])
    body["x-vendor"] = {"anything": 1}
    status, answer = pdp.evaluate(body)
    assert status == 200 and answer["decision"] is False


def test_pdp_metadata_at_the_well_known_location(pdp: Pdp) -> None:
    status, headers, data = pdp.call("/.well-known/authzen-configuration", method="GET")
    assert status == 200 and headers["content-type"].startswith("application/json")
    meta = json.loads(data)
    base = meta["policy_decision_point"]
    assert base == f"http://127.0.0.1:{pdp.server.port}"
    assert meta["access_evaluation_endpoint"] == base + "/access/v1/evaluation"
    assert meta["access_evaluations_endpoint"] == base + "/access/v1/evaluations"


def test_bearer_tokens_bind_the_caller_to_councils(policies: PolicySet, tmp_path: Path) -> None:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    access_file = tmp_path / "access.yaml"
    access_file.write_text(
        f"dev_mode: true\ndev_tokens:\n  - name: dev-halton\n    sha256: {digest}\n"
        "    councils: [halton]\n",
        encoding="utf-8",
    )
    server, sink, metrics = _serve(policies, AccessPolicy.from_file(access_file))
    pdp = Pdp(server, sink, metrics)
    try:
        body = epo(["team_manager"])
        assert pdp.call("/access/v1/evaluation", body)[0] == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert pdp.call("/access/v1/evaluation", body, headers=wrong)[0] == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        status, headers, _ = pdp.call("/access/v1/evaluation", body, headers=good)
        assert status == 403 and headers["remit-error-field"] == "resource.properties.council"
        assert sink.lines == []  # nothing decided, nothing logged
    finally:
        server.stop()


def test_plaintext_off_loopback_and_mtls_without_an_access_file_are_refused(
    policies: PolicySet,
) -> None:
    deps = HttpDeps(
        PolicyHolder(policies),
        DecisionHook(AuditLog(MemorySink(), "strict")),
        AccessPolicy.open_access(),
    )
    with pytest.raises(ValueError, match="plaintext"):
        start_http("0.0.0.0:0", deps)
    with pytest.raises(ValueError, match="mTLS needs REMIT_ACCESS_FILE"):
        start_http("127.0.0.1:0", deps, Path("s.crt"), Path("s.key"), Path("ca.pem"))


def test_remit_serve_opens_the_http_port_beside_grpc_and_logs_and_counts_alike() -> None:
    from tests.integration.test_ops import Server, metric
    from tests.support.ports import free_port

    port = free_port()
    server = Server({"REMIT_HTTP_ADDRESS": f"127.0.0.1:{port}"})
    try:
        server.wait_serving()
        assert f"AuthZEN HTTP API on port {port}" in server.output()[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(
            "POST",
            "/access/v1/evaluation",
            body=json.dumps(epo(["team_manager"], {"exceptional_circumstances": True})),
            headers={"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        conn.close()
        assert resp.status == 200 and answer["decision"] is True
        counted = metric(
            server.scrape(),
            "remit_decisions_total",
            council="torbay",
            decision="apply_epo",
            effect="EFFECT_ALLOW",
        )
        assert counted == 1
    finally:
        code, out, _ = server.stop()
    assert code == 0
    entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [e["decision_id"] for e in entries] == [answer["context"]["decision_id"]]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REMIT_HTTP_ADDRESS": "127.0.0.1:50051"}, "must differ"),
        ({"REMIT_HTTP_ADDRESS": "127.0.0.1:8080", "REMIT_WORKERS": "2"}, "--workers 1"),
        ({"REMIT_HTTP_ADDRESS": "nowhere"}, "HOST:PORT"),
    ],
)
def test_the_http_address_setting_is_checked(env: dict[str, str], message: str) -> None:
    from remit.config import ConfigError, load

    assert load({}).http_address == ""  # off by default
    with pytest.raises(ConfigError, match=message) as raised:
        load(env)
    assert "REMIT_HTTP_ADDRESS" in str(raised.value)


def test_answers_are_not_held_behind_the_clients_delayed_ack(pdp: Pdp) -> None:
    """Headers and body leave at once (TCP_NODELAY on accepted sockets): with Nagle on, each
    keep-alive answer waits about 40 ms for the client's delayed ACK (~21 answers/s)."""
    conn = http.client.HTTPConnection("127.0.0.1", pdp.server.port, timeout=10)
    body = json.dumps(epo(["team_manager"])).encode()
    headers = {"Content-Type": "application/json"}
    conn.request("POST", "/access/v1/evaluation", body=body, headers=headers)
    conn.getresponse().read()
    started = time.perf_counter()
    for _ in range(30):
        conn.request("POST", "/access/v1/evaluation", body=body, headers=headers)
        assert conn.getresponse().read()
    conn.close()
    assert time.perf_counter() - started < 30 * 0.04 * 0.75


def test_a_council_is_also_a_tenant_path_with_its_own_metadata(pdp: Pdp) -> None:
    body = epo(["team_manager"], {"exceptional_circumstances": True})
    del body["resource"]["properties"]["council"]
    status, _, data = pdp.call("/torbay/access/v1/evaluation", body)
    assert status == 200 and json.loads(data)["decision"] is True
    status, headers, _ = pdp.call(
        "/torbay/access/v1/evaluation", epo(["team_manager"], None, "halton")
    )
    assert status == 400 and headers["remit-error-field"] == "resource.properties.council"
    assert pdp.call("/no_such/access/v1/evaluation", body)[0] == 404
    _, _, data = pdp.call("/.well-known/authzen-configuration/torbay", method="GET")
    meta = json.loads(data)
    assert meta["policy_decision_point"].endswith("/torbay")
    assert (
        meta["access_evaluation_endpoint"]
        == meta["policy_decision_point"] + "/access/v1/evaluation"
    )
    assert "search_resource_endpoint" not in meta  # no directory: remit holds no cases
    assert pdp.call("/torbay/access/v1/search/resource", body)[0] == 404


def _http_samples(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == name
    }


def test_requests_are_counted_by_route_template_and_status_with_no_request_text(
    policies: PolicySet,
) -> None:
    server, sink, metrics = _serve(policies, AccessPolicy.open_access())
    pdp = Pdp(server, sink, metrics)
    try:
        body = epo(["team_manager"])
        assert pdp.call("/access/v1/evaluation", body)[0] == 200
        assert pdp.call("/access/v1/evaluation", raw=b"{")[0] == 400
        assert pdp.call("/torbay/access/v1/evaluation", body)[0] == 200
        assert pdp.call("/nobody-7f3a/access/v1/evaluation", body)[0] == 404
        assert pdp.call("/tm-0001/CASE-77/anything", body)[0] == 404
        counted = _http_samples(metrics, "remit_http_requests_total")
        assert counted == {
            (("endpoint", "/access/v1/evaluation"), ("status", "200")): 1.0,
            (("endpoint", "/access/v1/evaluation"), ("status", "400")): 1.0,
            (("endpoint", "/{tenant}/access/v1/evaluation"), ("status", "200")): 1.0,
            (("endpoint", "/{tenant}/access/v1/evaluation"), ("status", "404")): 1.0,
            (("endpoint", "unmatched"), ("status", "404")): 1.0,
        }
        timed = _http_samples(metrics, "remit_http_request_duration_seconds_count")
        assert sum(timed.values()) == 5
        assert _http_samples(metrics, "remit_http_requests_in_flight") == {(): 0.0}
        text = "".join(
            f"{k}{v}" for f in metrics.registry.collect() for s in f.samples
            for k, v in s.labels.items()
        )  # fmt: skip
        for personal in ("tm-0001", "CASE-77", "nobody-7f3a"):
            assert personal not in text
    finally:
        server.stop()
