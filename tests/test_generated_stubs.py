"""The committed protobuf stubs are what scripts/gen-proto produces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
