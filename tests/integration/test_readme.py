"""The README's first run, read from the README itself: the two set-up commands have the shape
a fresh clone needs, every later `remit` command names a real subcommand and real flags, the
files its examples name exist, and the documented first call, pasted as written, answers
against a real `remit serve` on a free port."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import grpc
from remit.cli.main import build_parser

from tests.support import ROOT
from tests.support.ports import free_port

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M)
SH_BLOCKS = [body for lang, body in BLOCKS if lang == "sh"]


def _first_call() -> str:
    """The Python heredoc of the README's first-call block."""
    block = next(b for b in SH_BLOCKS if b.startswith(".venv/bin/python - <<'EOF'"))
    match = re.search(r"<<'EOF'\n(.*?)^EOF$", block, flags=re.S | re.M)
    assert match, block
    return match.group(1)


def test_first_two_blocks_serve_then_test_with_the_second_in_another_terminal() -> None:
    serve, tests = SH_BLOCKS[0].strip(), SH_BLOCKS[1].strip()
    # one line that installs and ends in the foreground server, alone in its block, so
    # pasting it never swallows the test command; the tests are their own block
    assert serve == ("python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/remit serve")
    assert tests == "./scripts/test"
    intro = README[: README.index(SH_BLOCKS[0])]
    assert "second terminal" in intro


def test_every_remit_command_names_a_real_subcommand_and_flags() -> None:
    first = README.index("\nremit ")
    assert ". .venv/bin/activate" in README[:first]
    assert "`.venv/bin/remit`" in README[:first]
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "check" in a.choices)
    choices = subparsers.choices
    assert isinstance(choices, dict)
    seen = 0
    for body in SH_BLOCKS:
        text = body.replace("\\\n", " ")
        for line in text.splitlines():
            for part in re.split(r"\|", line.split("#")[0]):
                words = part.split()
                while words and "=" in words[0]:  # REMIT_REDIS_URL=... remit serve
                    words = words[1:]
                if not words or words[0] != "remit":  # e.g. `docker run ... remit`
                    continue
                words = words[1:]
                sub = choices[words[0]]  # KeyError: the README names no such command
                rest = words[1:]
                while rest:  # nested subcommands (`remit audit verify`)
                    nested = next((a for a in sub._actions if a.choices), None)
                    if nested is None or not isinstance(nested.choices, dict):
                        break
                    if rest[0] not in nested.choices:
                        break
                    sub, rest = nested.choices[rest[0]], rest[1:]
                flags = {o for a in sub._actions for o in a.option_strings}
                for word in rest:
                    flag = word.strip("[]").split("=")[0]
                    if flag.startswith("--"):
                        assert flag in flags, f"README: remit {words[0]} has no {flag}"
                seen += 1
    assert seen >= 15


def test_records_files_the_readme_names_exist() -> None:
    named = re.findall(r"--records (\S+)", README.replace("\\\n", " "))
    assert named
    for arg in named:
        for path in arg.split(","):
            assert (ROOT / path).is_file(), path


def test_the_first_call_pasted_as_written_answers_from_a_real_server(tmp_path: Path) -> None:
    port = free_port()
    code = _first_call()
    assert '"127.0.0.1:50051"' in code
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMIT_")}
    env["REMIT_ADDRESS"] = f"127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "remit.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            grpc.channel_ready_future(ch).result(timeout=30)
        out = subprocess.run(
            [sys.executable, "-"],
            input=code.replace("127.0.0.1:50051", f"127.0.0.1:{port}"),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert out.returncode == 0, out.stderr
    first, reason = out.stdout.splitlines()[:2]
    # what the README says it prints
    assert first == "EFFECT_ALLOW 6.7-tm-exceptional"
    assert f"`{first}`" in README
    assert "Torbay 6.7" in reason
    # a first run warns of nothing: the per-process case-reference key is one INFO line
    # saying what it means and how to set one (a WARNING only in a deployment's config)
    lines = log.read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if " WARNING " in line or " ERROR " in line] == []
    (notice,) = [line for line in lines if "per-process random key" in line]
    assert " INFO " in notice and "REMIT_AUDIT_HMAC_KEY" in notice


def test_the_readme_records_example_runs_as_written() -> None:
    body = next(b for b in SH_BLOCKS if "--records tests/fixtures" in b)
    args = shlex.split(body.replace("\\\n", " "))
    assert args[0] == "remit"
    out = subprocess.run(
        [sys.executable, "-m", "remit.cli", *args[1:]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ALLOW: ")


def test_the_readme_holds_no_suite_counts_that_go_stale() -> None:
    """A count of policy cases changes with every suite edit: the README says N instead."""
    assert re.findall(r"\b[a-z_]+: [0-9][0-9,]* passed", README) == []
