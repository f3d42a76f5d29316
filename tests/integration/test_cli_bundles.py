"""`remit bundles` against a real Redis on a free port: text output with publish times as
ISO 8601 UTC and the active version marked; `--json` keeps unix seconds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from remit.cli.probe import utc_text

from tests.support import ROOT
from tests.support.redis_server import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def _remit(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, REMIT_REDIS_URL=url)
    return subprocess.run(
        [sys.executable, "-m", "remit.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_bundles_prints_publish_times_in_utc(redis_server: RedisServer) -> None:
    published = _remit(redis_server.url, "publish")
    assert published.returncode == 0, published.stderr
    text = _remit(redis_server.url, "bundles")
    assert text.returncode == 0, text.stderr
    raw = json.loads(_remit(redis_server.url, "bundles", "--json").stdout)
    (row,) = raw["history"]
    assert isinstance(row["created"], float)
    lines = text.stdout.splitlines()
    assert lines[0] == f"active: {raw['active']}"
    when = utc_text(row["created"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", when)
    assert lines[1] == f"* {row['version']}  published {when}  {', '.join(row['councils'])}"
    assert str(row["created"]) not in text.stdout
