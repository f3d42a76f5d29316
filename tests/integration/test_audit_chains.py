"""The decision log's per-writer chains, in one process: several ``AuditLog`` writers on one
file, interleaved, each verified on its own and reported by name."""

from __future__ import annotations

import functools
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from remit.audit.log import (
    AnchorSigner,
    AnchorVerifier,
    AuditLog,
    CallInfo,
    FileSink,
    Pseudonymiser,
    canonical,
    entry_hash,
    read_lines,
    to_entry,
    verify_lines,
    writer_id,
)
from remit.distribution.signing import generate_keypair
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
    assert "writer rep/w2/1/1: 5 entries to seq 5, 0 anchor(s), chain intact" in out.stdout


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


# -- anchors -----------------------------------------------------------------------------

PRIVATE, PUBLIC = generate_keypair()
SIGNER = AnchorSigner(PRIVATE)
CHECK = AnchorVerifier(PUBLIC)


def signed(path: Path, name: str, seconds: float = 3600) -> AuditLog:
    return AuditLog(
        FileSink(path), "strict", KEY, writer=name, signer=SIGNER, anchor_seconds=seconds
    )


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def rewrite(path: Path, entries: list[dict[str, Any]]) -> None:
    path.write_text("".join(canonical(e).decode() + "\n" for e in entries))


def two_closed_writers(path: Path) -> None:
    """Writer a (3 decisions), then writer b, started while a runs (5), both closed."""
    a = signed(path, "a")
    write(a, 3)
    b = signed(path, "b")  # its start anchor witnesses a's
    write(b, 5)
    a.flush()
    b.flush()


def test_anchored_writers_verify_closed_and_are_signed(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    two_closed_writers(path)
    entries = lines_of(path)
    anchors = [e for e in entries if "anchor" in e]
    assert [(e["writer"], e["seq"], e["anchor"]["final"]) for e in anchors] == [
        ("a", "1", False),
        ("b", "1", False),
        ("a", "5", True),
        ("b", "7", True),
    ]
    assert anchors[1]["anchor"]["witnessed"] == [
        {"writer": "a", "seq": "1", "hash": anchors[0]["hash"]}
    ]
    assert all(to_entry(e).anchor.key_id == SIGNER.key_id for e in anchors)  # the proto's shape
    result = verify_lines(read_lines(path), CHECK)
    assert result.ok and result.anchors_checked, result
    assert [(w.writer, w.anchors, w.closed) for w in result.writers] == [
        ("a", 2, True),
        ("b", 2, True),
    ]
    # another key does not verify them
    other = AnchorVerifier(generate_keypair()[1])
    assert verify_lines(read_lines(path), other).problem.startswith("anchor signed by another key")


def test_a_cut_tail_is_detected_naming_writer_and_position(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    two_closed_writers(path)
    entries = lines_of(path)
    assert verify_lines(read_lines(path)).ok  # the hash chain alone cannot tell
    rewrite(path, entries[:-1])  # the last line: b's closing anchor
    result = verify_lines(read_lines(path), CHECK)
    assert verify_lines(read_lines(path)).ok and not result.ok
    assert result.line == len(entries) - 2  # b's last line left
    assert result.problem.startswith(
        "no closing anchor: 5 entries after its last anchor (line 5, seq 1), to seq 6 on "
        f"line {len(entries) - 2}"
    )
    assert result.problem.endswith("(writer b)")
    rewrite(path, entries[:-4])  # the last 4 lines: both closing anchors and 2 of b's
    result = verify_lines(read_lines(path), CHECK)
    problems = {w.writer: w.problem for w in result.writers}
    assert problems["a"].startswith(
        "no closing anchor: 3 entries after its last anchor (line 1, seq 1), to seq 4 on line 4"
    )
    assert problems["b"].startswith(
        "no closing anchor: 3 entries after its last anchor (line 5, seq 1), to seq 4 on line 8"
    )
    # a writer still running (or killed) may be accepted, its unanchored entries reported
    result = verify_lines(read_lines(path), CHECK, allow_open=True)
    assert result.ok and {w.writer: w.unanchored for w in result.writers} == {"a": 3, "b": 3}


def test_a_writer_removed_whole_is_named_by_the_writer_that_witnessed_it(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    two_closed_writers(path)
    rewrite(path, [e for e in lines_of(path) if e["writer"] != "a"])
    assert verify_lines(read_lines(path)).ok  # b's chain alone is intact
    result = verify_lines(read_lines(path), CHECK)
    assert not result.ok
    assert result.problem == (
        "writer missing: witnessed at seq 1 by writer b's anchor on line 1, but none of its "
        "lines are in the log (writer a)"
    )


def test_edit_then_rechain_is_detected_at_the_next_anchor(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    two_closed_writers(path)
    entries = lines_of(path)
    assert entries[2]["writer"] == "a" and "anchor" not in entries[2]  # a's second decision
    entries[2]["effect"] = (
        "EFFECT_DENY" if entries[2]["effect"] == "EFFECT_ALLOW" else "EFFECT_ALLOW"
    )
    prev = ""
    for e in entries:  # re-chain writer a from its edited entry on, anchors included
        if e["writer"] != "a":
            continue
        if prev:
            e["prev_hash"] = prev
        if int(e["seq"]) >= 2:
            e["hash"] = entry_hash(e)
        prev = e["hash"]
    rewrite(path, entries)
    assert verify_lines(read_lines(path)).ok  # the unkeyed chain is fooled
    result = verify_lines(read_lines(path), CHECK)
    closing = next(
        n for n, e in enumerate(entries, 1) if e["writer"] == "a" and "anchor" in e and n > 1
    )
    assert (result.ok, result.line) == (False, closing)
    assert result.problem.startswith("anchor signature does not verify")
    assert result.problem.endswith("(writer a)")
    # dropping a's anchors after the edit leaves it without its closing anchor
    rewrite(path, [e for n, e in enumerate(entries, 1) if n != closing])
    result = verify_lines(read_lines(path), CHECK)
    # (b's closing anchor witnessed a's, so a is reported as cut below what b saw)
    assert result.problem == (
        f"cut: its chain ends at seq 4 (line 4) but it was witnessed at seq 5 by writer b's "
        f"anchor on line {len(entries) - 1} (writer a)"
    )


def test_anchors_are_written_at_the_interval_while_the_chain_grows(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = signed(path, "a", seconds=0.05)
    for i in range(4):
        write(log, 1, i)
        deadline = time.monotonic() + 5
        while log.last_anchor[0] != log._seq and time.monotonic() < deadline:
            time.sleep(0.01)
    quiet = log.last_anchor
    time.sleep(0.2)
    assert log.last_anchor == quiet  # nothing new: no anchor
    log.flush()
    anchors = [e for e in lines_of(path) if "anchor" in e]
    assert len(anchors) == 6  # start, one after each decision, closing
    assert verify_lines(read_lines(path), CHECK).ok


def test_verify_cli_checks_anchors_with_the_public_key(tmp_path: Path) -> None:
    path, pub = tmp_path / "log.jsonl", tmp_path / "audit.pub"
    pub.write_bytes(PUBLIC)
    two_closed_writers(path)

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*REMIT, "audit", "verify", str(path), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=CLEAN_ENV,
        )

    out = verify()
    assert out.returncode == 0 and "anchors not checked" in out.stdout
    out = verify("--public-key", str(pub))
    assert out.returncode == 0, out.stdout
    assert "writer b: 7 entries to seq 7, 2 anchor(s), chain intact, closed" in out.stdout
    rewrite(path, lines_of(path)[:-1])
    out = verify("--public-key", str(pub))
    assert out.returncode == 1 and "no closing anchor" in out.stdout
    assert verify("--public-key", str(pub), "--allow-open").returncode == 0
    assert verify("--public-key", str(tmp_path / "nope.pub")).returncode == 2
