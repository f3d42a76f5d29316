"""Best-effort mode's high-water mark (``REMIT_AUDIT_STATE_DIR``): the entries a killed
process answered but had not written are recorded, by the next process of the same writer
name, as a gap entry naming the killed writer."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from remit.audit.log import AuditLog, FileSink, read_lines, verify_lines
from remit.audit.watermark import Watermark
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.integration.test_audit_chains import KEY, write
from tests.integration.test_ops import EPO_ALLOW, Server


class StuckSink:
    """A sink whose writes never return (the process is killed before they would)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def last(self) -> tuple[int, str]:
        return 0, "0" * 64

    def append(self, line: str) -> None:
        self.release.wait()
        raise OSError("gone")

    def close(self) -> None:
        self.release.set()


def test_the_next_process_of_a_name_records_what_a_killed_one_left_queued(
    tmp_path: Path,
) -> None:
    state, path = tmp_path / "state", tmp_path / "decisions.jsonl"
    stuck = StuckSink()
    first = AuditLog(
        stuck,
        "best-effort",
        KEY,
        writer="rep-a/w0/100/1",
        watermark=Watermark(state, "rep-a/w0/100/1"),
    )
    write(first, 30)  # answered; one is being written, the rest queued, when "killed"
    # killed -9: nothing more of that process runs (its mapped counters are in the file)
    second = AuditLog(
        FileSink(path),
        "best-effort",
        KEY,
        writer="rep-a/w0/200/2",
        watermark=Watermark(state, "rep-a/w0/200/2"),
    )
    write(second, 5)
    second.flush()
    stuck.release.set()
    entries = [e for _, e, _ in read_lines(path) if e]
    gap = entries[0]["gap"]
    assert gap["writer"] == "rep-a/w0/100/1" and int(gap["dropped"]) == 30
    assert entries[0]["writer"] == "rep-a/w0/200/2"
    result = verify_lines(read_lines(path))
    assert result.ok and result.writers[0].dropped == 30, result
    # written and closed: the third process of the name owes nothing
    third = Watermark(state, "rep-a/w0/300/3")
    assert third.lost == 0
    # another name (another worker) has its own mark
    assert Watermark(state, "rep-a/w1/300/3").lost == 0


@pytest.mark.slow
def test_kill_9_in_best_effort_mode_every_lost_entry_is_in_a_gap_after_restart(
    tmp_path: Path,
) -> None:
    path, state = tmp_path / "decisions.jsonl", tmp_path / "state"
    env = {
        "REMIT_AUDIT_SINK": f"file:{path}",
        "REMIT_AUDIT_MODE": "best-effort",
        "REMIT_AUDIT_WRITER": "rep-a",
        "REMIT_AUDIT_STATE_DIR": str(state),
    }
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
                        return

    s = Server(env)
    try:
        s.wait_serving()
        threads = [threading.Thread(target=load, args=(s.address,)) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(answered) < 500 and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        os.kill(s.proc.pid, signal.SIGKILL)
        for t in threads:
            t.join(30)
    finally:
        stop.set()
        s.kill()
    logged = {e.get("decision_id") for _, e, _ in read_lines(path) if e}
    lost = len(set(answered) - logged)
    again = Server(env)  # the same writer name, restarted
    try:
        again.wait_serving()
        rc, _, err = again.stop()
    finally:
        again.kill()
    assert rc == 0, err[-3000:]
    gaps = [e["gap"] for _, e, _ in read_lines(path) if e and "gap" in e]
    recorded = sum(int(g["dropped"]) for g in gaps if g.get("writer", "").startswith("rep-a/"))
    assert recorded >= lost  # every lost entry accounted for (at most a group more)
    assert verify_lines(read_lines(path)).ok
    print(f"answered {len(answered)}, lost {lost}, recorded in gaps {recorded}")
