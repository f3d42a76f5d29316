"""The PostgreSQL decision-log sink against a real PostgreSQL of the tests' own (initdb in a
temporary directory, tests/support/postgres_server.py): the table as ``remit audit init-db``
makes it, the service's role with exactly INSERT and SELECT, one transaction per group,
append-only, and ``remit audit verify`` over the table."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from remit.audit.log import (
    AnchorSigner,
    AnchorVerifier,
    AuditLog,
    AuditUnavailable,
    CallInfo,
    parse_lines,
    verify_lines,
)
from remit.audit.sinks.postgres import TABLE, PostgresSink, ddl, entries
from remit.distribution.signing import generate_keypair
from remit.server.servicers import answer
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.integration.test_audit_chains import KEY, _policies, write
from tests.integration.test_ops import CLEAN_ENV, EPO_ALLOW, REMIT, Server
from tests.support import ROOT
from tests.support.postgres_server import PostgresServer

SERVICE_ROLE = "remit_service"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REMIT, "audit", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=CLEAN_ENV,
        timeout=60,
    )


def _service_url(server: PostgresServer, admin_url: str) -> str:
    """The table made and granted by init-db as the owner; the service's role's URL."""
    with contextlib.suppress(psycopg.errors.DuplicateObject):  # made by an earlier test
        server.create_role(SERVICE_ROLE)
    out = _cli("init-db", admin_url, "--grant", SERVICE_ROLE)
    assert out.returncode == 0, out.stdout + out.stderr
    return admin_url.replace("//remit_admin@", f"//{SERVICE_ROLE}@")


def test_init_db_prints_the_table_the_append_only_triggers_and_the_grants() -> None:
    out = _cli("init-db", "--print", "--grant", SERVICE_ROLE)
    assert out.returncode == 0, out.stderr
    assert f"CREATE TABLE IF NOT EXISTS {TABLE}" in out.stdout
    assert "BEFORE UPDATE OR DELETE" in out.stdout and "BEFORE TRUNCATE" in out.stdout
    assert f"GRANT SELECT, INSERT ON {TABLE} TO {SERVICE_ROLE};" in out.stdout
    assert out.stdout == ddl(SERVICE_ROLE)
    bad = _cli("init-db", "--print", "--grant", "x; DROP TABLE y")
    assert bad.returncode == 2 and "--grant" in bad.stderr


def test_the_service_role_with_only_insert_and_select_writes_a_table_that_verifies(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path
) -> None:
    url = _service_url(postgres_server, postgres_db)
    private, public = generate_keypair()
    (tmp_path / "audit.pub").write_bytes(public)
    logs = [
        AuditLog(
            PostgresSink(url), "strict", KEY, writer=f"rep-{n}/1/1", signer=AnchorSigner(private)
        )
        for n in "ab"
    ]
    threads = [
        threading.Thread(target=write, args=(log, 10, 10 * i)) for i, log in enumerate(logs * 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for log in logs:
        log.flush()
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT writer, seq, hash, kind, council, decision, effect, rule_id, actor_id, "
            f"case_ref_hmac, deviation, review, entry FROM {TABLE} ORDER BY id"
        ).fetchall()
    assert len(rows) == 40 + 2 * 2  # 40 decisions, a start and a closing anchor per writer
    for (
        writer,
        seq,
        hash_,
        kind,
        council,
        decision,
        effect,
        rule,
        actor,
        case,
        dev,
        review,
        e,
    ) in rows:
        assert (writer, str(seq), hash_) == (e["writer"], e["seq"], e["hash"])
        assert kind == ("anchor" if "anchor" in e else "decision")
        if kind == "decision":
            assert (council, decision, effect, rule, actor, case, dev, review) == (
                e["council"],
                e["decision"],
                e["effect"],
                e["rule_id"],
                e["actor_id"],
                e["case_ref_hmac"],
                e["deviation"],
                e["review"],
            )
            assert case == KEY("torbay", e["request_id"].replace("r", "CASE-"))
    result = verify_lines(parse_lines(entries(url)), AnchorVerifier(public))
    assert result.ok, result
    assert sorted(w.writer for w in result.writers) == ["rep-a/1/1", "rep-b/1/1"]
    out = _cli("verify", url, "--public-key", str(tmp_path / "audit.pub"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"table {TABLE}: 44 entries, chain intact (2 writer(s))" in out.stdout

    # append-only: the service's role may not change or remove a row, nor may the owner
    for sql in (
        f"UPDATE {TABLE} SET effect = 'EFFECT_ALLOW'",
        f"DELETE FROM {TABLE}",
        f"TRUNCATE {TABLE}",
    ):
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.encode())
        with (
            psycopg.connect(postgres_db) as conn,
            pytest.raises(psycopg.errors.RaiseException, match="append-only"),
        ):
            conn.execute(sql.encode())


def test_a_batch_is_one_transaction_and_a_refused_insert_fails_strict_mode(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    url = _service_url(postgres_server, postgres_db)
    log = AuditLog(PostgresSink(url), "strict", KEY, writer="rep/1/1")
    outcomes = [_decided(i) for i in range(5)]
    log.write_decisions(outcomes)
    with psycopg.connect(url) as conn:
        xmins = conn.execute(f"SELECT DISTINCT xmin::text FROM {TABLE}").fetchall()
    assert len(xmins) == 1  # five rows, one transaction (one commit)
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        conn.execute(f"REVOKE INSERT ON {TABLE} FROM {SERVICE_ROLE}".encode())
    with pytest.raises(AuditUnavailable):
        log.write_decisions(outcomes[:2])
    assert log.stats.failed == 2
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        conn.execute(f"GRANT INSERT ON {TABLE} TO {SERVICE_ROLE}".encode())
    log.write_decisions(outcomes[:1])  # the same writer goes on, its chain unbroken
    log.flush()
    result = verify_lines(parse_lines(entries(url)))
    assert result.ok and result.entries == 6, result


def test_best_effort_records_the_entries_a_refusing_table_lost_as_a_gap(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    url = _service_url(postgres_server, postgres_db)
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        conn.execute(f"REVOKE INSERT ON {TABLE} FROM {SERVICE_ROLE}".encode())
    log = AuditLog(PostgresSink(url), "best-effort", KEY, writer="rep/1/1")
    write(log, 3)
    deadline = time.monotonic() + 10
    while log.stats.dropped < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.stats.dropped == 3
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        conn.execute(f"GRANT INSERT ON {TABLE} TO {SERVICE_ROLE}".encode())
    write(log, 2)
    log.flush()
    result = verify_lines(parse_lines(entries(url)))
    assert result.ok, result
    (w,) = result.writers
    assert (w.entries, w.gaps, w.dropped) == (3, 1, 3)  # the gap entry, then the two


def _decided(i: int) -> tuple[Any, CallInfo]:
    req = pb.AuthoriseRequest(
        council="torbay",
        decision="s17_payment",
        request_id=f"r{i}",
        actor=pb.Actor(id="tm-1", roles=["team_manager"]),
        context=pb.Context(amount_pence=150000, cumulative_amount_pence=150000),
    )
    outcome, _ = answer(_policies(), req)
    return outcome, CallInfo("cn:test", 0.0001, case_reference=f"CASE-{i}")


@pytest.mark.slow
def test_kill_9_of_two_replicas_on_one_table_loses_no_answered_decision(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path
) -> None:
    """Two server processes, strict mode, the PostgreSQL sink as the service's role, under
    load, both killed -9: every answered decision is in the table and each replica's chain
    verifies (open: a killed writer writes no closing anchor)."""
    url = _service_url(postgres_server, postgres_db)
    key, pub = tmp_path / "audit.key", tmp_path / "audit.pub"
    private, public = generate_keypair()
    key.write_bytes(private)
    pub.write_bytes(public)
    servers = [
        Server(
            {
                "REMIT_AUDIT_SINK": url,
                "REMIT_AUDIT_MODE": "strict",
                "REMIT_AUDIT_WRITER": name,
                "REMIT_AUDIT_SIGNING_KEY": str(key),
                "REMIT_AUDIT_ANCHOR_SECONDS": "1",
            }
        )
        for name in ("rep-a", "rep-b")
    ]
    answered: list[str] = []
    stop = threading.Event()

    def load(address: str) -> None:
        with grpc.insecure_channel(address) as ch:
            stub = pb_grpc.AuthorisationServiceStub(ch)
            while not stop.is_set():
                try:
                    answered.append(stub.Authorise(EPO_ALLOW, timeout=5).decision_id)
                except grpc.RpcError:
                    if stop.is_set():
                        return  # refused or cut by the kill: not answered

    threads: list[threading.Thread] = []
    try:
        for s in servers:
            s.wait_serving()
        threads = [
            threading.Thread(target=load, args=(s.address,)) for s in servers for _ in range(3)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(answered) < 400 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for s in servers:  # mid-load, no warning
            os.kill(s.proc.pid, signal.SIGKILL)
        for t in threads:
            t.join(30)
    finally:
        stop.set()
        for s in servers:
            s.kill()
    assert len(answered) >= 400
    with psycopg.connect(url) as conn:
        logged = {r[0] for r in conn.execute(f"SELECT decision_id FROM {TABLE}").fetchall()}
    assert not set(answered) - logged  # 0 answered decisions missing
    out = _cli("verify", url, "--public-key", str(pub), "--allow-open")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "chain intact (2 writer(s))" in out.stdout
    assert out.stdout.count("entries unanchored") == 2
