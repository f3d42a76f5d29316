"""Audit and security: tamper-evident decision log, durability modes, mTLS with council
binding, dev tokens, plaintext only on loopback, signed bundles."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from google.rpc import code_pb2
from remit.audit.log import (
    AuditLog,
    CallInfo,
    FileSink,
    Pseudonymiser,
    RedisStreamSink,
    read_lines,
    verify_lines,
)
from remit.distribution.bundle import BundleStore, from_directory
from remit.distribution.holder import PolicyHolder
from remit.distribution.replica import RedisSource
from remit.distribution.signing import Signer, Verifier, generate_keypair
from remit.model.policy import PolicySet, load_dir
from remit.server.access import AccessPolicy
from remit.server.convert import masked_fields
from remit.server.serve import Deps, TlsFiles, create_server
from remit.server.servicers import answer
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support import GENERATED, ROOT
from tests.support.certs import Authority
from tests.support.compiled import compile_variant
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.sinks import MemorySink

REMIT = [sys.executable, "-m", "remit.cli"]


def _request(council: str = "torbay", n: int = 0) -> pb.AuthoriseRequest:
    if council == "halton":
        return pb.AuthoriseRequest(
            council="halton",
            decision="apply_epo",
            request_id=f"r{n}",
            actor=pb.Actor(
                id="hos-1", roles=["head_of_service"], service_areas=["help_protection"]
            ),
        )
    return pb.AuthoriseRequest(
        council="torbay",
        decision="s17_payment",
        request_id=f"r{n}",
        case_reference=f"CASE-{n % 7}",
        actor=pb.Actor(id="tm-1", roles=["team_manager"]),
        context=pb.Context(amount_pence=150000, cumulative_amount_pence=150000),
    )


# -- the decision log ---------------------------------------------------------------------


def _write_entries(log: AuditLog, n: int) -> None:
    """n real decisions (Torbay s.17, rule 2.4-tm), logged as the server logs them."""
    policies = _policies()
    for i in range(n):
        req = _request(n=i)
        outcome, _ = answer(policies, req)
        log.write_decision(
            outcome,
            CallInfo(
                "cn:test",
                0.0001,
                case_reference=req.case_reference,
                masked_fields=masked_fields(req),
            ),
        )


@functools.cache
def _policies() -> PolicySet:
    return load_dir(GENERATED)


def test_chain_verifies_and_an_edited_byte_is_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = AuditLog(FileSink(path), "strict", Pseudonymiser(b"k" * 32))
    _write_entries(log, 20)
    log.flush()
    assert verify_lines(read_lines(path)).ok
    out = subprocess.run(
        [*REMIT, "audit", "verify", str(path)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0
    assert "20 entries, chain intact" in out.stdout

    lines = path.read_bytes().splitlines(keepends=True)
    edited = bytearray(lines[11])
    edited[edited.index(b"2.4-tm")] = ord("3")  # rule 2.4-tm -> 3.4-tm on line 12
    lines[11] = bytes(edited)
    path.write_bytes(b"".join(lines))
    out = subprocess.run(
        [*REMIT, "audit", "verify", str(path)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 1
    assert "line 12: entry was edited" in out.stdout


def test_a_removed_entry_is_a_missing_link(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = AuditLog(FileSink(path), "strict", Pseudonymiser(b"k" * 32))
    _write_entries(log, 5)
    log.flush()
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2] + lines[3:]))
    result = verify_lines(read_lines(path))
    assert (result.ok, result.line) == (False, 3)
    assert result.problem.startswith("missing link")


def test_a_writer_resumes_its_chain_from_the_files_tail(tmp_path: Path) -> None:
    """The chain resumes from the last entry, read from the end of the file, exactly as a
    full scan finds it: past a torn last line, across block edges, with long lines."""
    from remit.audit.log import last_entry

    path = tmp_path / "decisions.jsonl"
    log = AuditLog(FileSink(path), "strict", Pseudonymiser(b"k" * 32))
    _write_entries(log, 30)
    log.flush()
    full = [e for _, e, _ in read_lines(path) if e is not None][-1]
    for block in (7, 64, 500, 1 << 16):  # entries span several small blocks
        assert last_entry(path, block) == full
    with path.open("ab") as fh:
        fh.write(b'{"seq": "31", "torn')  # a crash mid-write
    for block in (7, 1 << 16):
        assert last_entry(path, block) == full
    assert FileSink(path).last() == (int(full["seq"]), full["hash"])
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert last_entry(empty) is None and FileSink(empty).last()[0] == 0


def test_a_restarted_writer_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    for _ in range(3):
        log = AuditLog(FileSink(path), "strict", Pseudonymiser(b"k" * 32))
        _write_entries(log, 4)
        log.flush()
    result = verify_lines(read_lines(path))
    assert result.ok
    assert result.entries == 12


def test_entries_hold_no_context_and_a_keyed_case_pseudonym(tmp_path: Path) -> None:
    sink = MemorySink()
    log = AuditLog(sink, "strict", Pseudonymiser(b"k" * 32))
    _write_entries(log, 8)
    e0, e7 = sink.entries[0], sink.entries[7]
    text = json.dumps(sink.entries)
    assert "CASE-" not in text
    assert "150000" not in text
    assert e0["case_ref_hmac"] == e7["case_ref_hmac"]  # CASE-0 both times: linkable
    assert e0["case_ref_hmac"] != sink.entries[1]["case_ref_hmac"]
    other_key = AuditLog(MemorySink(), "strict", Pseudonymiser(b"x" * 32))
    assert other_key.pseudonymise("torbay", "CASE-0") != e0["case_ref_hmac"]
    assert e0["masked_fields"] == [
        "case_reference",
        "context.amount_pence",
        "context.cumulative_amount_pence",
    ]


class _SlowSink(MemorySink):
    def append(self, line: str) -> None:
        time.sleep(0.02)
        super().append(line)


class _BrokenSink(MemorySink):
    def append(self, line: str) -> None:
        raise OSError("disk full")


def test_best_effort_counts_every_drop() -> None:
    sink = _SlowSink()
    log = AuditLog(sink, "best-effort", Pseudonymiser(b"k" * 32), buffer=2)
    _write_entries(log, 30)
    log.flush()
    assert log.stats.dropped > 0
    assert len(sink.lines) == log.stats.written
    decisions = [e for e in sink.entries if "gap" not in e]
    gaps = [e["gap"] for e in sink.entries if "gap" in e]
    # every lost entry is accounted for in the log itself, by its gap entries
    assert len(decisions) + log.stats.dropped == 30
    assert sum(int(g["dropped"]) for g in gaps) == log.stats.dropped
    assert all(g["first"] <= g["last"] for g in gaps)
    result = verify_lines(iter((n, json.loads(x), x) for n, x in enumerate(sink.lines, 1)))
    assert result.ok and result.writers[0].dropped == log.stats.dropped


def test_strict_mode_never_returns_an_unlogged_decision(policies: PolicySet) -> None:
    """A refused entry fails the unary call, and each batch or stream item it belongs to."""
    log = AuditLog(_BrokenSink(), "strict", Pseudonymiser(b"k" * 32))
    server, port = create_server("127.0.0.1:0", Deps(PolicyHolder(policies), audit=log))
    server.start()
    items = [pb.BatchItem(correlation_id=c, request=_request()) for c in ("a", "b")]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.AuthorisationServiceStub(ch)
            with pytest.raises(grpc.RpcError) as info:
                stub.Authorise(_request(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            batch = stub.AuthoriseBatch(pb.AuthoriseBatchRequest(items=items), timeout=5)
            stream = list(
                stub.AuthoriseStream(iter([pb.AuthoriseStreamRequest(items=items[:1])]), timeout=5)
            )
    finally:
        server.stop(None)
    results = [*batch.results, *stream[0].results]
    assert [r.correlation_id for r in results] == ["a", "b", "a"]
    for r in results:
        assert r.WhichOneof("result") == "error"  # never an unlogged answer
        assert r.error.code == code_pb2.UNAVAILABLE
        assert "decision log unavailable" in r.error.message
    assert log.stats.failed == 4


def test_kill_9_in_strict_mode_loses_no_answered_decision(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    port = free_port()
    env = dict(
        os.environ,
        REMIT_ADDRESS=f"127.0.0.1:{port}",
        REMIT_AUDIT_SINK=f"file:{path}",
        REMIT_AUDIT_MODE="strict",
        REMIT_AUDIT_HMAC_KEY="ab" * 32,
    )
    proc = subprocess.Popen(
        [*REMIT, "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    received: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.AuthorisationServiceStub(ch)
            deadline = time.monotonic() + 30
            n = 0
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    resp = stub.Authorise(_request(n=n), timeout=2)
                except grpc.RpcError:
                    continue
                with lock:
                    received.append(resp.decision_id)
                n += 1

    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            grpc.channel_ready_future(ch).result(timeout=30)
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        while len(received) < 300:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    logged = {e["decision_id"] for _, e, _ in read_lines(path) if e is not None}
    assert received
    missing = [d for d in received if d not in logged]
    assert missing == [], f"{len(missing)} answered decisions are not in the log"
    assert verify_lines(read_lines(path)).ok


def test_redis_stream_sink_chains_and_verifies(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    try:
        log = AuditLog(RedisStreamSink(server.url), "strict", Pseudonymiser(b"k" * 32))
        _write_entries(log, 10)
        log = AuditLog(RedisStreamSink(server.url), "strict", Pseudonymiser(b"k" * 32))
        _write_entries(log, 5)  # a second writer: its own chain, on the same stream
        out = subprocess.run(
            [*REMIT, "audit", "verify", "--redis-url", server.url],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "15 entries, chain intact" in out.stdout
    finally:
        server.stop()


# -- transport security ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca = Authority(d)
    rogue = Authority(d, "rogue CA")
    server = ca.issue("remit.local", server=True)
    torbay = ca.issue("torbay-lcs")
    stranger = ca.issue("stranger")
    forged = rogue.issue("torbay-lcs")
    # the same text as a DNS name (bound to halton below) and as a URI SAN (bound to nothing)
    dns_peer = ca.issue("kiosk-1", sans=[x509.DNSName("halton-paris.example")])
    uri_peer = ca.issue("kiosk-2", sans=[x509.UniformResourceIdentifier("halton-paris.example")])
    access = d / "access.yaml"
    access.write_text(
        "callers:\n  - identity: cn:torbay-lcs\n    councils: [torbay]\n"
        "  - identity: dns:halton-paris.example\n    councils: [halton]\n"
    )
    dev = d / "dev-access.yaml"
    token = "dev-token-halton"
    dev.write_text(
        "callers: []\ndev_mode: true\n"
        f"dev_tokens:\n  - name: dev-halton\n    sha256: {hashlib.sha256(token.encode()).hexdigest()}\n"
        "    councils: [halton]\n"
    )
    return {
        "ca": ca.pem.cert,
        "server_cert": server.cert,
        "server_key": server.key,
        "torbay_cert": torbay.cert,
        "torbay_key": torbay.key,
        "stranger_cert": stranger.cert,
        "stranger_key": stranger.key,
        "forged_cert": forged.cert,
        "forged_key": forged.key,
        "dns_peer_cert": dns_peer.cert,
        "dns_peer_key": dns_peer.key,
        "uri_peer_cert": uri_peer.cert,
        "uri_peer_key": uri_peer.key,
        "access": access,
        "dev_access": dev,
    }


@pytest.fixture(scope="module")
def mtls_port(pki: dict[str, Path], policies: PolicySet) -> Iterator[int]:
    deps = Deps(
        PolicyHolder(policies),
        audit=AuditLog(MemorySink(), "strict", Pseudonymiser(b"k" * 32)),
        access=AccessPolicy.from_file(pki["access"]),
        tls=TlsFiles(pki["server_cert"], pki["server_key"], pki["ca"]),
    )
    server, port = create_server("127.0.0.1:0", deps)
    server.start()
    yield port
    server.stop(None)


def _mtls_channel(pki: dict[str, Path], port: int, who: str | None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"].read_bytes(),
        private_key=pki[f"{who}_key"].read_bytes() if who else None,
        certificate_chain=pki[f"{who}_cert"].read_bytes() if who else None,
    )
    return grpc.secure_channel(
        f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", "localhost")]
    )


def test_mtls_client_for_torbay_may_query_torbay_only(pki: dict[str, Path], mtls_port: int) -> None:
    with _mtls_channel(pki, mtls_port, "torbay") as ch:
        stub = pb_grpc.AuthorisationServiceStub(ch)
        assert stub.Authorise(_request("torbay"), timeout=5).effect == pb.EFFECT_ALLOW
        with pytest.raises(grpc.RpcError) as info:
            stub.Authorise(_request("halton"), timeout=5)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        councils = pb_grpc.CatalogueServiceStub(ch).ListCouncils(
            pb.ListCouncilsRequest(), timeout=5
        )
        assert [c.council for c in councils.councils] == ["torbay"]
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.CatalogueServiceStub(ch).GetScheme(
                pb.GetSchemeRequest(council="halton"), timeout=5
            )
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        batch = stub.AuthoriseBatch(
            pb.AuthoriseBatchRequest(
                items=[
                    pb.BatchItem(correlation_id="t", request=_request("torbay")),
                    pb.BatchItem(correlation_id="h", request=_request("halton")),
                ]
            ),
            timeout=5,
        )
        assert batch.results[0].response.effect == pb.EFFECT_ALLOW
        assert batch.results[1].error.code == 7  # PERMISSION_DENIED
        stream = stub.AuthoriseStream(
            iter(
                [
                    pb.AuthoriseStreamRequest(
                        items=[pb.BatchItem(correlation_id="h", request=_request("halton"))]
                    )
                ]
            ),
            timeout=5,
        )
        assert [r.results[0].error.code for r in stream] == [7]


@pytest.mark.parametrize("who", [None, "forged"])
def test_mtls_refuses_missing_or_foreign_client_certificates(
    pki: dict[str, Path], mtls_port: int, who: str | None
) -> None:
    with _mtls_channel(pki, mtls_port, who) as ch:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.AuthorisationServiceStub(ch).Authorise(_request(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails


def test_mtls_identity_not_in_the_access_file_is_denied(
    pki: dict[str, Path], mtls_port: int
) -> None:
    with _mtls_channel(pki, mtls_port, "stranger") as ch:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.AuthorisationServiceStub(ch).Authorise(_request(), timeout=5)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_dns_identity_matches_a_dns_san_only(pki: dict[str, Path], mtls_port: int) -> None:
    """dns:halton-paris.example is bound to halton; a certificate carrying the same text as a
    URI SAN is not that identity (before, san: matched every kind of SAN)."""
    with _mtls_channel(pki, mtls_port, "dns_peer") as ch:
        stub = pb_grpc.AuthorisationServiceStub(ch)
        assert stub.Authorise(_request("halton"), timeout=5).effect in (
            pb.EFFECT_ALLOW,
            pb.EFFECT_DENY,
        )
    with _mtls_channel(pki, mtls_port, "uri_peer") as ch:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.AuthorisationServiceStub(ch).Authorise(_request("halton"), timeout=5)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_access_files_refuse_untyped_sans_and_tokens_outside_dev_mode(tmp_path: Path) -> None:
    cases = {
        "callers:\n  - identity: san:torbay-lcs.example\n    councils: [torbay]\n": "san:",
        f"dev_tokens:\n  - name: t\n    sha256: {'a' * 64}\n    councils: [halton]\n": ("dev_mode"),
        "dev_mode: yes please\n": "dev_mode",
    }
    for text, named in cases.items():
        path = tmp_path / "access.yaml"
        path.write_text(text)
        with pytest.raises(ValueError, match=named):
            AccessPolicy.from_file(path)


def test_dev_mode_is_refused_with_mtls_and_open_tls_off_loopback(
    pki: dict[str, Path], policies: PolicySet
) -> None:
    mtls = TlsFiles(pki["server_cert"], pki["server_key"], pki["ca"])
    dev = AccessPolicy.from_file(pki["dev_access"])
    with pytest.raises(ValueError, match="dev_mode with mTLS"):
        create_server("127.0.0.1:0", Deps(PolicyHolder(policies), tls=mtls, access=dev))
    server_tls = TlsFiles(pki["server_cert"], pki["server_key"], None)
    with pytest.raises(ValueError, match="TLS without client authentication"):
        create_server("0.0.0.0:0", Deps(PolicyHolder(policies), tls=server_tls))
    server, port = create_server("127.0.0.1:0", Deps(PolicyHolder(policies), tls=server_tls))
    assert port > 0
    server.stop(None)


def test_dev_token_binds_councils(pki: dict[str, Path], policies: PolicySet) -> None:
    deps = Deps(
        PolicyHolder(policies),
        audit=AuditLog(MemorySink(), "strict", Pseudonymiser(b"k" * 32)),
        access=AccessPolicy.from_file(pki["dev_access"]),
    )
    server, port = create_server("127.0.0.1:0", deps)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.AuthorisationServiceStub(ch)
            good = (("authorization", "Bearer dev-token-halton"),)
            assert stub.Authorise(_request("halton"), timeout=5, metadata=good).effect in (
                pb.EFFECT_ALLOW,
                pb.EFFECT_DENY,
            )
            for metadata in (good, (("authorization", "Bearer wrong"),), ()):
                with pytest.raises(grpc.RpcError) as info:
                    stub.Authorise(_request("torbay"), timeout=5, metadata=metadata)
                assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        server.stop(None)


def test_plaintext_off_loopback_must_be_asked_for(policies: PolicySet) -> None:
    with pytest.raises(ValueError, match="refusing plaintext"):
        create_server("0.0.0.0:0", Deps(PolicyHolder(policies)))
    server, port = create_server("0.0.0.0:0", Deps(PolicyHolder(policies), allow_plaintext=True))
    assert port > 0
    server.stop(None)


def test_mtls_without_an_access_file_refuses_to_start(
    pki: dict[str, Path], policies: PolicySet
) -> None:
    tls = TlsFiles(pki["server_cert"], pki["server_key"], pki["ca"])
    with pytest.raises(ValueError, match="REMIT_ACCESS_FILE"):
        create_server("127.0.0.1:0", Deps(PolicyHolder(policies), tls=tls))


# -- signed bundles ---------------------------------------------------------------------


def test_replicas_refuse_unsigned_and_wrongly_signed_bundles(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    private, public = generate_keypair()
    other_private, _ = generate_keypair()
    try:
        store = BundleStore.from_url(server.url)
        good = from_directory(GENERATED)
        store.publish(good, signer=Signer(private))
        source = RedisSource(server.url, GENERATED, poll_seconds=0.1, verifier=Verifier(public))
        source.start()
        try:
            assert source.status().origin == "redis"
            assert source.holder.current().version == good.version
            # compiled before publishing: each wait is the replica's time, not the compiler's
            unsigned = from_directory(compile_variant(tmp_path / "u", 250000))
            wrong = from_directory(compile_variant(tmp_path / "w", 240000))
            signed = from_directory(compile_variant(tmp_path / "s", 230000))
            store.publish(unsigned)
            deadline = time.monotonic() + 3
            while source.status().refused < 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            store.publish(wrong, signer=Signer(other_private))
            deadline = time.monotonic() + 3
            while source.status().refused < 2:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert source.holder.current().version == good.version
            store.publish(signed, signer=Signer(private))
            deadline = time.monotonic() + 3
            while source.holder.current().version != signed.version:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        finally:
            source.stop()
    finally:
        server.stop()


def test_log_lines_are_the_proto3_json_of_decision_log_entry() -> None:
    """Entries are built as dicts for speed; they must be exactly the message's JSON form."""
    from remit.audit.log import to_dict, to_entry

    sink = MemorySink()
    log = AuditLog(sink, "strict", Pseudonymiser(b"k" * 32))
    _write_entries(log, 3)
    for line, entry in zip(sink.lines, sink.entries, strict=True):
        assert to_dict(to_entry(entry)) == entry
        assert json.loads(line) == entry
