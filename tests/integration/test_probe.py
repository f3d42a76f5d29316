"""`remit health` as an exec probe: it loads grpc and the health stubs only (not the engine,
compiler, adapters or the other commands), stays well under the old 65 MB per call, and shows
the server's reload time as ISO 8601 UTC in text output (unix seconds stay in --json)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime

from remit.cli.probe import utc_text

from tests.support import ROOT

HEAVY = (
    "remit.engine",
    "remit.compiler",
    "remit.server",
    "remit.tools",
    "adapters",
    "jsonschema",
    "yaml",
    "casbin",
    "redis",
)

PROBE = """
import sys
from remit.cli.main import main
code = main(["health", "--address", sys.argv[1], *sys.argv[2:]])
print("LOADED", *sorted(m for m in sys.modules if m.startswith(%r)))
# VmHWM: this process's own peak RSS (ru_maxrss would carry the forking parent's over exec)
hwm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
print("PEAK_KB", hwm.split()[1])
sys.exit(code)
"""


def _probe(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = PROBE % (HEAVY,)
    return subprocess.run(
        [sys.executable, "-c", code, address, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_the_probe_loads_only_grpc_and_the_health_stubs(server_address: str) -> None:
    out = _probe(server_address)
    assert out.returncode == 0, out.stderr
    status, loaded, peak = out.stdout.splitlines()
    assert status.startswith(f"SERVING {server_address} (server) ")
    assert loaded.split() == ["LOADED"], loaded  # none of the heavy modules
    # the probe's own peak RSS (KB on Linux): ~40 MB now; it was ~69 MB importing everything
    assert int(peak.split()[1]) < 55 * 1024, peak


def test_text_output_shows_the_reload_time_in_utc(server_address: str) -> None:
    text = _probe(server_address)
    assert text.returncode == 0, text.stderr
    shown = re.search(r"policy-last-reload=(\S+)", text.stdout)
    assert shown and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", shown.group(1)), text.stdout
    raw = json.loads(_probe(server_address, "--json").stdout.splitlines()[0])
    seconds = float(raw["policy-last-reload"])  # --json keeps the machine form
    # the test server reports "now" as its reload time: the two probes are a moment apart
    shown_at = datetime.strptime(shown.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(shown_at.timestamp() - seconds) < 30


def test_utc_text() -> None:
    assert utc_text("1796166438.557") == "2026-12-01T23:07:18Z"
    assert utc_text(0) == "never" and utc_text("") == "never" and utc_text(None) == "never"
    assert utc_text("soon") == "soon"


def test_remit_health_help_still_works() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "remit.cli", "health", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0 and "--live" in out.stdout
