"""A rotated file log (``REMIT_AUDIT_ROTATE_BYTES``): once the file is full the next group
goes to a new segment, which every writer begins with an anchor to its head and ends, when
it is rotated in turn, with another; so each segment verifies on its own, the segments
verify together, and a segment removed or edited is found."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from remit.audit.log import (
    AnchorSigner,
    AnchorVerifier,
    AuditLog,
    FileSink,
    read_lines,
    verify_lines,
)
from remit.audit.sinks.file import segments
from remit.config import ConfigError, load
from remit.distribution.signing import generate_keypair

from tests.integration.test_audit_chains import KEY, write
from tests.integration.test_audit_writers import _load
from tests.integration.test_ops import CLEAN_ENV, REMIT, Server
from tests.support import ROOT

PRIVATE, PUBLIC = generate_keypair()
VERIFIER = AnchorVerifier(PUBLIC)


def _rotated_log(path: Path, writers: int = 2, rounds: int = 40) -> list[Path]:
    """``writers`` logs (as separate processes would: each its own FileSink) on one file
    rotated every 6 KB, writing in turn; every segment, oldest first, the live file last."""
    logs = [
        AuditLog(
            FileSink(path, rotate_bytes=6000),
            "strict",
            KEY,
            writer=f"rep/w{i}/1/1",
            signer=AnchorSigner(PRIVATE),
        )
        for i in range(writers)
    ]
    for r in range(rounds):
        for log in logs:
            write(log, 1, r)
    for log in logs:
        log.flush()
    return [*segments(path), path]


def _verify(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    pub = paths[0].parent / "audit.pub"
    pub.write_bytes(PUBLIC)
    return subprocess.run(
        [*REMIT, "audit", "verify", *map(str, paths), "--public-key", str(pub)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=CLEAN_ENV,
        timeout=60,
    )


def _lines(paths: list[Path]) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    n = 0
    for p in paths:
        for _, entry, text in read_lines(p):
            n += 1
            yield n, entry, text


def test_each_segment_verifies_on_its_own_and_all_of_them_together(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    paths = _rotated_log(path)
    assert len(paths) >= 4, paths
    assert [p.name for p in paths[:2]] == ["decisions.jsonl.000001", "decisions.jsonl.000002"]
    for p in paths:
        result = verify_lines(read_lines(p), VERIFIER)
        assert result.ok, (p, result)
        assert {w.writer for w in result.writers} == {"rep/w0/1/1", "rep/w1/1/1"}
    # a later segment: each writer goes on from the previous one, begun by its anchor
    first = next(e for _, e, _ in read_lines(paths[1]) if e)
    assert first["anchor"]["segment_start"] is True and first["seq"] != "1"
    alone = verify_lines(read_lines(paths[1]), VERIFIER)
    assert all(w.continued and w.segment_ended for w in alone.writers)
    whole = verify_lines(_lines(paths), VERIFIER)
    assert whole.ok, whole
    assert all(w.closed and not w.continued for w in whole.writers)
    assert sum(w.entries for w in whole.writers) == sum(
        1 for p in paths for _, e, _ in read_lines(p) if e
    )
    out = _verify(paths)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "chain intact (2 writer(s))" in out.stdout
    alone_out = _verify([paths[1]])
    assert alone_out.returncode == 0, alone_out.stdout
    assert "goes on from an earlier segment" in alone_out.stdout
    assert "segment ended (goes on in the next segment)" in alone_out.stdout


def test_a_segment_removed_or_edited_is_found(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    paths = _rotated_log(path)
    out = _verify([paths[0], *paths[2:]])  # the second segment left out
    assert out.returncode == 1
    assert "missing link" in out.stdout
    # the last segment cut after its first anchor: no closing anchor
    last = paths[-1]
    last.write_text(last.read_text().splitlines(keepends=True)[0])
    out = _verify([last])
    assert out.returncode == 1 and "no closing anchor" in out.stdout
    # an edit inside a segment, verified alone
    seg = paths[1]
    lines = seg.read_text().splitlines(keepends=True)
    n = next(i for i, line in enumerate(lines) if '"EFFECT_ALLOW"' in line)
    lines[n] = lines[n].replace('"EFFECT_ALLOW"', '"EFFECT_DENY"', 1)
    seg.write_text("".join(lines))
    out = _verify([seg])
    assert out.returncode == 1 and f"line {n + 1}: entry was edited" in out.stdout


def test_the_rotate_setting_is_a_size_in_bytes() -> None:
    assert load({"REMIT_AUDIT_ROTATE_BYTES": "1048576"}).audit_rotate_bytes == 1 << 20
    assert load({}).audit_rotate_bytes == 0
    with pytest.raises(ConfigError, match="REMIT_AUDIT_ROTATE_BYTES"):
        load({"REMIT_AUDIT_ROTATE_BYTES": "1MB"})


@pytest.mark.slow
def test_two_workers_rotating_one_file_leave_segments_that_each_verify(tmp_path: Path) -> None:
    """``remit serve --workers 2``: two processes on one rotated file, each following the
    other's rotations; every segment verifies alone, and all of them together."""
    path, key = tmp_path / "decisions.jsonl", tmp_path / "audit.key"
    key.write_bytes(PRIVATE)
    s = Server(
        {
            "REMIT_WORKERS": "2",
            "REMIT_AUDIT_SINK": f"file:{path}",
            "REMIT_AUDIT_SIGNING_KEY": str(key),
            "REMIT_AUDIT_ROTATE_BYTES": "20000",
        },
        metrics_ports=2,
    )
    answered: list[str] = []
    try:
        s.wait_serving(workers=2)
        threads = [
            threading.Thread(target=_load, args=(s.address, 60, answered, True)) for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rc, _, err = s.stop()
    finally:
        s.kill()
    assert rc == 0, err[-3000:]
    paths = [*segments(path), path]
    assert len(paths) >= 4, paths
    for p in paths:
        assert verify_lines(read_lines(p), VERIFIER).ok, p
    whole = verify_lines(_lines(paths), VERIFIER)
    assert whole.ok and len(whole.writers) == 2, whole
    logged = {e.get("decision_id") for _, e, _ in _lines(paths) if e}
    assert len(answered) == 240 and set(answered) <= logged
