"""``remit audit query`` and ``remit audit report`` over a real log: a file, a Redis stream
and a PostgreSQL table written by ``AuditLog``, filtered by case (reference and HMAC key),
actor, council, decision, effect, rule, period, deviation and review; table, CSV and JSON
lines; and the HTML report with the scheme's words, escaped."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from remit.audit.log import AuditLog, CallInfo, FileSink, Pseudonymiser, read_lines
from remit.audit.query import Filter, Progress, Scan, parse_when, raw_lines, select
from remit.audit.report import render
from remit.audit.sinks.postgres import PostgresSink, apply_ddl
from remit.audit.sinks.redis_stream import RedisStreamSink
from remit.model.policy import load_dir
from remit.server.servicers import answer
from remit.v1 import remit_pb2 as pb

from tests.integration.test_ops import CLEAN_ENV, REMIT
from tests.support import GENERATED, ROOT
from tests.support.redis_server import RedisServer

KEY_HEX = "a1" * 32
KEY = Pseudonymiser(bytes.fromhex(KEY_HEX))


def _request(actor: str, role: str, pence: int, deviation: bool = False) -> pb.AuthoriseRequest:
    req = pb.AuthoriseRequest(
        council="torbay",
        decision="s17_payment",
        actor=pb.Actor(id=actor, roles=[role]),
        context=pb.Context(amount_pence=pence, cumulative_amount_pence=pence),
    )
    if deviation:
        req.deviation.CopyFrom(
            pb.Deviation(
                agreed_by_id="ad-7", agreed_by_role="assistant_director", reason_code="urgent"
            )
        )
    return req


# (actor, role, pence, deviation, case): allow, deny, deviation, allow on another case
DECISIONS = [
    ("tm-1", "team_manager", 150000, False, "CASE-1"),
    ("sw-9", "social_worker", 900000, False, "CASE-2"),
    ("tm-1", "team_manager", 300000, True, "CASE-1"),
    ("tm-2", "team_manager", 100000, False, "CASE-3"),
]


def write_decisions(log: AuditLog) -> None:
    policies = load_dir(GENERATED)
    for actor, role, pence, deviation, case in DECISIONS:
        outcome, _ = answer(policies, _request(actor, role, pence, deviation))
        log.write_decision(outcome, CallInfo("cn:test", 0.0001, case_reference=case))
    log.flush()


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "decisions.jsonl"
    write_decisions(AuditLog(FileSink(path), "strict", KEY, writer="rep/1/1"))
    return path


def _audit(*args: str, key: str = KEY_HEX) -> subprocess.CompletedProcess[str]:
    env = dict(CLEAN_ENV, REMIT_AUDIT_HMAC_KEY=key) if key else CLEAN_ENV
    return subprocess.run(
        [*REMIT, "audit", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )


def _json(out: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert out.returncode == 0, out.stdout + out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_query_by_case_computes_the_pseudonym_as_the_service_does(log_file: Path) -> None:
    found = _json(_audit("query", str(log_file), "--case", "CASE-1", "--format", "json"))
    assert [e["actor_id"] for e in found] == ["tm-1", "tm-1"]
    assert {e["case_ref_hmac"] for e in found} == {KEY("torbay", "CASE-1")}
    # the filter uses the service's own Pseudonymiser, per council
    where = Filter(case_reference="CASE-1", hmac_key=bytes.fromhex(KEY_HEX))
    assert where.case_pseudonym("torbay") == KEY("torbay", "CASE-1")
    assert (
        _json(_audit("query", str(log_file), "--case", "CASE-1", "--format", "json", key="b2" * 32))
        == []
    )  # another key: another pseudonym, no match
    out = _audit("query", str(log_file), "--case", "CASE-1", key="")
    assert out.returncode == 2 and "REMIT_AUDIT_HMAC_KEY" in out.stderr


def test_query_filters_by_actor_effect_rule_deviation_review_and_period(log_file: Path) -> None:
    def ids(*args: str) -> list[str]:
        return [
            e["actor_id"] for e in _json(_audit("query", str(log_file), "--format", "json", *args))
        ]

    assert ids() == ["tm-1", "sw-9", "tm-1", "tm-2"]  # decisions only, in log order
    assert ids("--actor", "tm-2") == ["tm-2"]
    assert ids("--effect", "deny") == ["sw-9"]
    assert ids("--council", "torbay", "--decision", "s17_payment", "--effect", "allow") == [
        "tm-1",
        "tm-1",
        "tm-2",
    ]
    assert ids("--rule", "deviation") == ["tm-1"]
    assert ids("--deviation") == ["tm-1"] == ids("--review")
    assert ids("--council", "halton") == []
    assert ids("--since", "2000-01-01", "--until", "2999-01-01T00:00Z") == [
        "tm-1",
        "sw-9",
        "tm-1",
        "tm-2",
    ]
    assert ids("--since", "2999-01-01") == [] == ids("--until", "2000-01-01")
    bad = _audit("query", str(log_file), "--since", "last week")
    assert bad.returncode == 2 and "--since" in bad.stderr
    assert parse_when("2026-12-01", "--since") == "2026-12-01T00:00:00.000Z"
    assert parse_when("2026-12-01T10:00+01:00", "--since") == "2026-12-01T09:00:00.000Z"
    missing = _audit("query", str(log_file.parent / "nope.jsonl"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_query_outputs_a_table_csv_and_the_logged_lines(log_file: Path) -> None:
    table = _audit("query", str(log_file), "--actor", "sw-9")
    assert table.returncode == 0 and table.stderr == ""  # no progress: stderr is no terminal
    header, row = table.stdout.splitlines()
    assert header.split() == [
        "TIME",
        "COUNCIL",
        "DECISION",
        "EFFECT",
        "RULE",
        "ACTOR",
        "CASE",
        "FLAGS",
    ]
    assert "deny" in row and "sw-9" in row
    rows = list(
        csv.DictReader(io.StringIO(_audit("query", str(log_file), "--format", "csv").stdout))
    )
    assert [(r["actor_id"], r["effect"], r["deviation"]) for r in rows] == [
        ("tm-1", "EFFECT_ALLOW", "no"),
        ("sw-9", "EFFECT_DENY", "no"),
        ("tm-1", "EFFECT_ALLOW", "yes"),
        ("tm-2", "EFFECT_ALLOW", "no"),
    ]
    assert rows[2]["deviation_agreed_by"] == "ad-7"
    logged = [t for _, e, t in read_lines(log_file) if e and "effect" in e]
    assert _audit("query", str(log_file), "--format", "json").stdout.splitlines() == logged


def test_progress_is_shown_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    lines = raw_lines(json.dumps({"effect": "EFFECT_DENY", "time": "t"}) for _ in range(10000))
    for progress in (Progress(tty), Progress(pipe)):
        scan = Scan()
        assert len(list(select(lines if progress.on else iter(()), Filter(), scan, progress))) in (
            10000,
            0,
        )
        progress.done(scan)
    assert "scanned 10,000 lines, 10,000 matched" in tty.getvalue()
    assert pipe.getvalue() == ""


def test_query_reads_a_redis_stream_and_a_postgresql_table_alike(
    log_file: Path, tmp_path: Path, postgres_db: str
) -> None:
    apply_ddl(postgres_db)
    write_decisions(AuditLog(PostgresSink(postgres_db), "strict", KEY, writer="rep/1/1"))
    redis_server = RedisServer(tmp_path).start()
    try:
        write_decisions(
            AuditLog(RedisStreamSink(redis_server.url), "strict", KEY, writer="rep/1/1")
        )
        sources = {
            "file": (str(log_file),),
            "redis": ("--redis-url", redis_server.url),
            "postgres": (postgres_db,),
        }
        found = {
            name: [
                (e["actor_id"], e["effect"])
                for e in _json(_audit("query", *args, "--case", "CASE-1", "--format", "json"))
            ]
            for name, args in sources.items()
        }
    finally:
        redis_server.stop()
    assert (
        found["file"]
        == found["redis"]
        == found["postgres"]
        == [("tm-1", "EFFECT_ALLOW"), ("tm-1", "EFFECT_ALLOW")]
    )


def test_report_quotes_the_scheme_of_the_entrys_policy_version(
    log_file: Path, tmp_path: Path
) -> None:
    out_path = tmp_path / "report.html"
    out = _audit("report", str(log_file), "--out", str(out_path), "--policy", str(GENERATED))
    assert out.returncode == 0, out.stderr
    assert "4 decision(s)" in out.stdout
    html = out_path.read_text()
    policy = load_dir(GENERATED).councils["torbay"]
    entries = [e for _, e, _ in read_lines(log_file) if e and "effect" in e]
    allow = policy.rules[entries[0]["rule_id"]]
    assert _escaped(allow.quote) in html  # the deciding rule's words
    assert policy.deviation is not None and _escaped(policy.deviation.quote) in html
    assert "deviation agreed by ad-7" in html and "awaiting review" in html
    assert entries[0]["policy_version"] in html and "section " + allow.section in html
    assert "CASE-1" not in html  # only pseudonyms
    assert "4 (3 allowed, 1 denied)" in html
    assert "<script" not in html and "http" not in html.split("<body>")[1]  # self-contained


def _escaped(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


def test_report_escapes_what_the_log_holds_and_says_when_a_version_is_not_given() -> None:
    hostile = {
        "effect": "EFFECT_DENY",
        "time": "2026-12-01T00:00:00.000Z",
        "council": "torbay",
        "decision": "s17_payment",
        "actor_id": "<script>alert(1)</script>",
        "rule_id": '"><img src=x onerror=alert(1)>',
        "policy_version": "not-a-version",
    }
    html = "".join(render(iter([hostile]), {}, "test <log>", ""))
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "test &lt;log&gt;" in html
    assert "policy version not given" in html
