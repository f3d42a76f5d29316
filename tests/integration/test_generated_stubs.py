"""The committed protobuf stubs are what scripts/gen-proto produces."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import ROOT


def test_proto_stubs_are_up_to_date() -> None:
    env = dict(os.environ, PYTHON=sys.executable)
    out = subprocess.run(
        ["bash", "scripts/gen-proto", "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr


def test_proto_is_buf_lint_clean() -> None:
    buf = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
    if not buf.exists():
        pytest.skip("buf is not installed (scripts/test installs it with npm)")
    out = subprocess.run(
        [str(buf), "lint", "proto"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
