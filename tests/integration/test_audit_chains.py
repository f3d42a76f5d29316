"""The decision log's per-writer chains, in one process: several ``AuditLog`` writers on one
file, interleaved, each verified on its own and reported by name."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

from remit.audit.log import (
    AuditLog,
    CallInfo,
    FileSink,
    Pseudonymiser,
    read_lines,
    verify_lines,
    writer_id,
)
from remit.model.policy import PolicySet, load_dir
from remit.server.servicers import answer
from remit.v1 import remit_pb2 as pb

from tests.integration.test_ops import CLEAN_ENV, REMIT
from tests.support import GENERATED, ROOT

KEY = Pseudonymiser(b"k" * 32)


@functools.cache
def _policies() -> PolicySet:
    return load_dir(GENERATED)


def write(log: AuditLog, n: int, start: int = 0) -> None:
    """n real decisions (Torbay s.17), logged as the server logs them."""
    for i in range(start, start + n):
        req = pb.AuthoriseRequest(
            council="torbay",
            decision="s17_payment",
            request_id=f"r{i}",
            case_reference=f"CASE-{i % 7}",
            actor=pb.Actor(id="tm-1", roles=["team_manager"]),
            context=pb.Context(amount_pence=150000, cumulative_amount_pence=150000),
        )
        outcome, _ = answer(_policies(), req)
        log.write_decision(outcome, CallInfo("cn:test", 0.0001, case_reference=f"CASE-{i}"))


def interleaved(path: Path, writers: int = 3, rounds: int = 5) -> list[AuditLog]:
    """``writers`` logs on one file, writing in turn, ``rounds`` entries each."""
    logs = [AuditLog(FileSink(path), "strict", KEY, writer=f"rep/w{i}/1/1") for i in range(writers)]
    for r in range(rounds):
        for log in logs:
            write(log, 1, r)
    return logs


def test_writer_ids_name_replica_worker_and_process() -> None:
    a, b = writer_id("rep-a", 1), writer_id("rep-a", 1)
    assert a.startswith("rep-a/w1/") and a != b  # a second log in one process is another writer
    assert writer_id("", -1).count("/") == 2  # host/pid/start


def test_interleaved_writers_each_verify_and_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    for log in interleaved(path):
        log.flush()
    entries = [e for _, e, _ in read_lines(path) if e]
    assert [e["writer"] for e in entries[:3]] == ["rep/w0/1/1", "rep/w1/1/1", "rep/w2/1/1"]
    assert [e["seq"] for e in entries if e["writer"] == "rep/w1/1/1"] == ["1", "2", "3", "4", "5"]
    result = verify_lines(read_lines(path))
    assert result.ok and result.entries == 15
    assert [(w.writer, w.entries, w.last_seq) for w in result.writers] == [
        (f"rep/w{i}/1/1", 5, 5) for i in range(3)
    ]
    out = subprocess.run(
        [*REMIT, "audit", "verify", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=CLEAN_ENV,
    )
    assert out.returncode == 0, out.stdout
    assert "15 entries, chain intact (3 writer(s))" in out.stdout
    assert "writer rep/w2/1/1: 5 entries to seq 5, chain intact" in out.stdout


def test_a_line_removed_from_one_writer_names_that_writer_and_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    for log in interleaved(path):
        log.flush()
    lines = path.read_text().splitlines(keepends=True)
    assert json.loads(lines[7])["writer"] == "rep/w1/1/1"  # its third entry
    del lines[7]
    path.write_text("".join(lines))
    result = verify_lines(read_lines(path))
    assert not result.ok
    assert result.line == 10  # w1's fourth entry, now on line 10, follows its second
    assert result.problem == "missing link: seq 4 follows 2 (writer rep/w1/1/1)"
    by_name = {w.writer: w for w in result.writers}
    assert by_name["rep/w1/1/1"].problem and by_name["rep/w1/1/1"].entries == 2
    # the other writers' chains still verify in full
    assert (by_name["rep/w0/1/1"].entries, by_name["rep/w0/1/1"].problem) == (5, "")
    assert (by_name["rep/w2/1/1"].entries, by_name["rep/w2/1/1"].problem) == (5, "")


def test_an_entry_moved_to_another_writer_breaks_both_chains(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    for log in interleaved(path, writers=2, rounds=3):
        log.flush()
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"writer":"rep/w0/1/1"', '"writer":"rep/w1/1/1"')
    path.write_text("".join(lines))
    result = verify_lines(read_lines(path))
    assert not result.ok
    assert result.line == 3 and result.problem.startswith("entry was edited")


def test_legacy_entries_without_a_writer_still_form_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = AuditLog(FileSink(path), "strict", KEY, writer="")
    write(log, 4)
    log.flush()
    result = verify_lines(read_lines(path))
    assert result.ok and [w.writer for w in result.writers] == [""]
