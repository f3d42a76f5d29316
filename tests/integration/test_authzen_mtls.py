"""mTLS over AuthZEN HTTP: the same client CA, access file and caller -> council binding as
gRPC (``AccessPolicy.resolve_names``, one place), with real certificates from the test CA
(tests/support/certs.py) against a real uvicorn server on a free port."""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
from remit.audit.log import AuditLog, Pseudonymiser
from remit.distribution.holder import PolicyHolder
from remit.model.policy import PolicySet
from remit.server.access import AccessPolicy
from remit.server.convert import TimeWindow
from remit.server.hook import DecisionHook
from remit.server.http.app import HttpDeps
from remit.server.http.server import HttpServer, start_http

from tests.integration.test_authzen_http import epo
from tests.support.certs import Authority
from tests.support.sinks import MemorySink

TOKEN = "dev-token-halton"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("pki")
    ca = Authority(d)
    rogue = Authority(d, "rogue CA")
    access = d / "access.yaml"
    access.write_text("callers:\n  - identity: cn:torbay-lcs\n    councils: [torbay]\n")
    dev = d / "dev-access.yaml"
    dev.write_text(
        "callers: []\ndev_mode: true\ndev_tokens:\n  - name: dev-halton\n"
        f"    sha256: {hashlib.sha256(TOKEN.encode()).hexdigest()}\n    councils: [halton]\n"
    )
    return {
        "ca": ca.pem.cert,
        "server": ca.issue("remit.local", server=True),
        "torbay": ca.issue("torbay-lcs"),
        "stranger": ca.issue("stranger"),
        "forged": rogue.issue("torbay-lcs"),
        "access": access,
        "dev": dev,
    }


def _serve(
    policies: PolicySet, access: AccessPolicy, pki: dict[str, Any], mtls: bool
) -> tuple[HttpServer, MemorySink]:
    sink = MemorySink()
    deps = HttpDeps(
        PolicyHolder(policies),
        DecisionHook(AuditLog(sink, "strict", Pseudonymiser(b"k" * 32))),
        access,
        TimeWindow(),
    )
    server = pki["server"]
    ca = pki["ca"] if mtls else None
    return start_http("127.0.0.1:0", deps, server.cert, server.key, ca), sink


@pytest.fixture(scope="module")
def mtls(pki: dict[str, Any], policies: PolicySet) -> Iterator[tuple[HttpServer, MemorySink]]:
    server, sink = _serve(policies, AccessPolicy.from_file(pki["access"]), pki, mtls=True)
    yield server, sink
    server.stop()


def call(
    port: int,
    pki: dict[str, Any],
    who: str | None,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if who is not None:
        context.load_cert_chain(str(pki[who].cert), str(pki[who].key))
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        sent = {"Content-Type": "application/json", **(headers or {})}
        conn.request("POST", path, body=json.dumps(body).encode(), headers=sent)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


ALLOW = epo(["team_manager"], {"exceptional_circumstances": True})
HALTON = epo(["head_of_service"], None, "halton")
HALTON["subject"]["properties"]["service_areas"] = ["help_protection"]


def test_a_client_bound_to_torbay_may_ask_about_torbay_only(
    mtls: tuple[HttpServer, MemorySink], pki: dict[str, Any]
) -> None:
    server, sink = mtls
    status, _, data = call(server.port, pki, "torbay", "/access/v1/evaluation", ALLOW)
    assert status == 200 and json.loads(data)["decision"] is True
    assert json.loads(sink.lines[-1])["caller"] == "cn:torbay-lcs"  # the certificate's name
    logged = len(sink.lines)
    halton = HALTON
    for path in ("/access/v1/evaluation", "/halton/access/v1/evaluation"):
        status, headers, data = call(server.port, pki, "torbay", path, halton)
        assert status == 403  # the specification's error: status and a message string
        assert headers["content-type"].startswith("text/plain")
        assert headers["remit-error-field"] == "resource.properties.council"
        assert b"may not query council 'halton'" in data
    status, _, data = call(
        server.port, pki, "torbay", "/access/v1/evaluations", {"evaluations": [ALLOW, halton]}
    )
    answers = json.loads(data)["evaluations"]
    assert status == 200 and answers[0]["decision"] is True
    assert answers[1] == {
        "decision": False,
        "context": {
            "error": {
                "status": 403,
                "message": "caller 'cn:torbay-lcs' may not query council 'halton'",
                "field": "resource.properties.council",
            }
        },
    }
    assert len(sink.lines) == logged + 1  # only the allowed evaluation is a decision


@pytest.mark.parametrize("who", [None, "forged"])
def test_no_or_a_foreign_client_certificate_is_refused_at_the_handshake(
    mtls: tuple[HttpServer, MemorySink], pki: dict[str, Any], who: str | None
) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        call(mtls[0].port, pki, who, "/access/v1/evaluation", ALLOW)


def test_a_certificate_not_in_the_access_file_is_403(
    mtls: tuple[HttpServer, MemorySink], pki: dict[str, Any]
) -> None:
    status, _, data = call(mtls[0].port, pki, "stranger", "/access/v1/evaluation", ALLOW)
    assert status == 403 and b"not bound to any council" in data
    token = {"Authorization": f"Bearer {TOKEN}"}  # a token never lifts a certificate
    assert call(mtls[0].port, pki, "stranger", "/access/v1/evaluation", ALLOW, token)[0] == 403


def test_bearer_tokens_over_https_bind_as_over_grpc(
    pki: dict[str, Any], policies: PolicySet
) -> None:
    server, sink = _serve(policies, AccessPolicy.from_file(pki["dev"]), pki, mtls=False)
    try:
        halton = HALTON
        good = {"Authorization": f"Bearer {TOKEN}"}
        status, _, data = call(server.port, pki, None, "/access/v1/evaluation", halton, good)
        assert status == 200 and "decision" in json.loads(data)
        assert json.loads(sink.lines[-1])["caller"] == "token:dev-halton"
        assert call(server.port, pki, None, "/access/v1/evaluation", ALLOW, good)[0] == 403
        status, headers, _ = call(server.port, pki, None, "/access/v1/evaluation", halton)
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        wrong = {"Authorization": "Bearer wrong"}
        assert call(server.port, pki, None, "/access/v1/evaluation", halton, wrong)[0] == 401
    finally:
        server.stop()


def test_mtls_with_dev_tokens_refuses_to_start_as_grpc_does(
    pki: dict[str, Any], policies: PolicySet
) -> None:
    with pytest.raises(ValueError, match="dev_mode with mTLS"):
        _serve(policies, AccessPolicy.from_file(pki["dev"]), pki, mtls=True)
