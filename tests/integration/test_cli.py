"""The command line, run as a user would: `remit check`, `remit test`, `remit compile --check`,
and `remit serve` started as a subprocess answering over gRPC."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import grpc
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support import ROOT
from tests.support.ports import free_port

REMIT = [sys.executable, "-m", "remit.cli"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REMIT, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_check_gives_the_same_answer_as_grpc(channel: grpc.Channel) -> None:
    out = _run(
        "check",
        "--council",
        "torbay",
        "--decision",
        "s17_payment",
        "--role",
        "team_manager",
        "--fact",
        "amount_pence=240000",
        "--fact",
        "cumulative_amount_pence=240000",
        "--json",
        "--reference",
    )
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    resp = pb_grpc.AuthorisationServiceStub(channel).Authorise(
        pb.AuthoriseRequest(
            council="torbay",
            decision="s17_payment",
            actor=pb.Actor(id="cli-user", roles=["team_manager"]),
            context=pb.Context(amount_pence=240000, cumulative_amount_pence=240000),
        ),
        timeout=5,
    )
    assert cli["effect"] == "DENY" == pb.Effect.Name(resp.effect).removeprefix("EFFECT_")
    assert cli["reason"] == resp.reason
    assert [a["role"] for a in cli["authorisers"]] == [a.role for a in resp.authorisers]
    assert cli["reference"] == {"effect": "DENY", "rule": ""}


def test_check_reports_bad_input_naming_the_field() -> None:
    args = ("check", "--council", "torbay", "--decision", "apply_ep", "--role", "team_manager")
    out = _run(*args)
    assert out.returncode == 2
    # a plain sentence naming the field, with the closest ids and how to list them
    assert out.stderr.startswith("remit check: decision not found: council 'torbay' has no ")
    assert "(closest: apply_epo)" in out.stderr and "`remit catalogue torbay`" in out.stderr
    assert not out.stderr.lstrip().startswith("{")
    as_json = _run(*args, "--json")
    assert as_json.returncode == 2
    err = json.loads(as_json.stderr)
    assert err["error"] == "NOT_FOUND" and err["field"] == "decision"
    assert "(closest: apply_epo)" in err["message"]


def test_check_never_echoes_a_hostile_id() -> None:
    hostile = "apply_epo'; <script>" + "x" * 200
    out = _run("check", "--council", "torbay", "--decision", hostile, "--role", "team_manager")
    assert out.returncode == 2
    assert out.stderr.startswith("remit check: decision invalid: must match ")
    assert "<script>" not in out.stderr and "xxxx" not in out.stderr


def test_catalogue_lists_what_a_request_may_name() -> None:
    councils = _run("catalogue")
    assert councils.returncode == 0, councils.stderr
    assert "torbay\tTorbay Council" in councils.stdout.splitlines()
    torbay = _run("catalogue", "torbay", "--json")
    assert torbay.returncode == 0, torbay.stderr
    data = json.loads(torbay.stdout)
    assert "apply_epo" in data["decisions"] and "team_manager" in data["roles"]
    assert "exceptional_circumstances" in data["facts"]
    assert "a1_child_death" in data["notifications"]  # the ids `--event` may name
    unknown = _run("catalogue", "torbey")
    assert unknown.returncode == 2
    assert "council not found: unknown council 'torbey' (closest: torbay)" in unknown.stderr


def test_check_exit_code_on_deny() -> None:
    out = _run(
        "check",
        "--council",
        "torbay",
        "--decision",
        "apply_epo",
        "--role",
        "team_manager",
        "--exit-code",
    )
    assert out.returncode == 1
    assert out.stdout.startswith("DENY: ")


def test_remit_test_and_compile_check_pass() -> None:
    t = _run("test")
    assert t.returncode == 0, t.stdout[-2000:]
    assert " 0 failed" in t.stdout.splitlines()[-1]
    c = _run("compile", "--check")
    assert c.returncode == 0, c.stderr
    # it says so on success, not only on failure
    assert re.fullmatch(r"remit compile --check: \d+ files up to date\n", c.stdout), c.stdout


def test_compile_reports_errors_with_exit_3(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("document: {council: x}\n")
    out = _run("compile", "--schemes", str(tmp_path), "--out", str(tmp_path / "out"))
    assert out.returncode == 3
    assert "policies/schemes/x.yaml:1:" in out.stderr


def test_serve_subprocess_answers_and_stops_on_sigterm() -> None:
    port = free_port()
    env = dict(os.environ, REMIT_ADDRESS=f"127.0.0.1:{port}")
    proc = subprocess.Popen(
        [*REMIT, "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            grpc.channel_ready_future(ch).result(timeout=20)
            resp = pb_grpc.AuthorisationServiceStub(ch).Authorise(
                pb.AuthoriseRequest(
                    council="torbay",
                    decision="apply_epo",
                    actor=pb.Actor(id="tm-1", roles=["team_manager"]),
                    context=pb.Context(exceptional_circumstances=True),
                ),
                timeout=5,
            )
            assert resp.effect == pb.EFFECT_ALLOW and resp.rule_id == "6.7-tm-exceptional"
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    audit = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    entry = next(e for e in audit if e["rule_id"] == "6.7-tm-exceptional")
    # the log names the context field it did not keep, never its value
    assert entry["masked_fields"] == ["context.exceptional_circumstances"]
    assert "true" not in json.dumps({k: v for k, v in entry.items() if k != "masked_fields"})


def test_serve_binds_loopback_by_default() -> None:
    from remit import config as _config

    assert _config.load(environ={}).address == "127.0.0.1:50051"


def test_check_permitted_lists_what_the_actor_may_decide(channel: grpc.Channel) -> None:
    facts = ["--fact", "amount_pence=150000", "--fact", "cumulative_amount_pence=150000"]
    out = _run("check", "--council", "torbay", "--role", "team_manager", "--permitted", *facts)
    assert out.returncode == 0, out.stderr
    assert "s17_payment (2.4, rule 2.4-tm)" in out.stdout
    assert (
        "missing_over_24_hours (6.18b, rule 6.18b-tm-hos) — only with the agreement of the Head"
        in out.stdout
    )
    js = _run(
        "check", "--council", "torbay", "--role", "team_manager", "--permitted", "--json", *facts
    )
    cli = [d["decision"] for d in json.loads(js.stdout)]
    resp = pb_grpc.AuthorisationServiceStub(channel).ListPermittedDecisions(
        pb.ListPermittedDecisionsRequest(
            council="torbay",
            actor=pb.Actor(id="cli-user", roles=["team_manager"]),
            context=pb.Context(amount_pence=150000, cumulative_amount_pence=150000),
        ),
        timeout=10,
    )
    assert cli == [d.decision for d in resp.decisions]  # the same list as the API


def test_check_authorisers_lists_who_may_decide_lowest_first() -> None:
    out = _run(
        "check",
        "--council",
        "torbay",
        "--decision",
        "s17_payment",
        "--authorisers",
        "--fact",
        "amount_pence=240000",
        "--fact",
        "cumulative_amount_pence=240000",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert [(a["role"], a["rule"]) for a in json.loads(out.stdout)["authorisers"]] == [
        ("head_of_service", "2.4-hos"),
        ("resource_panel", "2.4-panel"),
    ]
    text = _run("check", "--council", "torbay", "--decision", "apply_epo", "--authorisers")
    assert "Team Manager [team_manager] (rule 6.7-tm-exceptional, 6.7)" in text.stdout


def test_check_event_shows_who_must_be_told_and_when() -> None:
    out = _run(
        "check",
        "--council",
        "torbay",
        "--event",
        "a1_missing_24h_cp_lac",
        "--fact",
        "cp_plan=true",
        "--at",
        "2025-08-22T15:00:00+01:00",
    )
    assert out.returncode == 0, out.stderr
    assert "tell: director, assistant_director" in out.stdout
    assert "when: next_working_day, due 2025-08-26T22:59:59+00:00" in out.stdout
    unknown = _run("check", "--council", "torbay", "--event", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("remit check: event not found: ")
    unknown = _run("check", "--council", "torbay", "--event", "nope", "--json")
    assert json.loads(unknown.stderr)["field"] == "event"


def test_check_without_decision_or_role_is_a_usage_error() -> None:
    assert _run("check", "--council", "torbay", "--role", "team_manager").returncode == 2
    assert _run("check", "--council", "torbay", "--decision", "apply_epo").returncode == 2
