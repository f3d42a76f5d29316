"""``remit audit query`` and ``remit audit report`` on a large decision log: wall time and
peak RSS of each, as the CLI runs them (``/usr/bin/time -v`` when present).

    .venv/bin/python -m benchmarks.audit_query [--entries 1000000] [--log PATH]

Makes the log first (when ``--log`` does not exist yet): real entries, built from the
engine's own answers to a mix of Torbay and Kirklees requests (allow, deny, a deviation and
a retrospective decision time among them), chained by ``AuditLog`` onto a file sink in
groups of 1,000, 5,000 case references; then times a selective query (one case, by its
reference and the HMAC key), a full CSV export, and a report of the entries awaiting
review. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HMAC_KEY = "6b" * 32


def make_log(path: Path, entries: int) -> None:
    """``entries`` decisions chained onto ``path`` by one writer."""
    from google.protobuf.timestamp_pb2 import Timestamp
    from remit.audit.log import AuditLog, CallInfo, FileSink, Pseudonymiser
    from remit.model.policy import load_dir
    from remit.server.servicers import answer
    from remit.v1 import remit_pb2 as pb

    policies = load_dir(ROOT / "policies" / "generated")
    past = Timestamp()
    past.FromDatetime(datetime.now(UTC) - timedelta(days=3))
    requests = [
        pb.AuthoriseRequest(
            council="torbay",
            decision="s17_payment",
            actor=pb.Actor(id="tm-1", roles=["team_manager"]),
            context=pb.Context(amount_pence=150000, cumulative_amount_pence=150000),
        ),
        pb.AuthoriseRequest(
            council="torbay",
            decision="s17_payment",
            actor=pb.Actor(id="sw-9", roles=["social_worker"]),
            context=pb.Context(amount_pence=900000, cumulative_amount_pence=900000),
        ),
        pb.AuthoriseRequest(
            council="torbay",
            decision="s17_payment",
            actor=pb.Actor(id="tm-2", roles=["team_manager"]),
            context=pb.Context(amount_pence=150000, cumulative_amount_pence=150000),
            decision_time=past,
        ),
    ]
    outcomes = [answer(policies, r)[0] for r in requests]
    log = AuditLog(
        FileSink(path), "strict", Pseudonymiser(bytes.fromhex(HMAC_KEY)), writer="bench/1/1"
    )
    batch: list[Any] = []
    for i in range(entries):
        call = CallInfo("cn:bench", 0.0002, case_reference=f"CASE-{i % 5000}")
        batch.append((outcomes[i % len(outcomes)], call))
        if len(batch) == 1000:
            log.write_decisions(batch)
            batch = []
    log.write_decisions(batch)
    log.flush()


def timed(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Wall seconds and peak RSS (MiB) of one CLI run, its output to /dev/null."""
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else "")
    cmd = [sys.executable, "-m", "remit.cli", *args]
    started = time.perf_counter()
    if gnu_time:
        out = subprocess.run(
            [gnu_time, "-v", *cmd],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=True,
        )
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))  # type: ignore[union-attr]
        cpu = sum(
            float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", out.stderr)
        )
        mib = round(rss / 1024, 1)
    else:
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=True)
        mib = cpu = float("nan")
    wall = round(time.perf_counter() - started, 2)
    return {"seconds": wall, "cpu_seconds": round(cpu, 2), "peak_rss_mib": mib}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--log", default="")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="remit-audit-query-"))
    path = Path(args.log) if args.log else tmp / "decisions.jsonl"
    made = 0.0
    if not path.exists():
        started = time.perf_counter()
        make_log(path, args.entries)
        made = round(time.perf_counter() - started, 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMIT_")}
    env["REMIT_AUDIT_HMAC_KEY"] = HMAC_KEY
    src = str(path)
    result = {
        "entries": sum(1 for _ in path.open("rb")),
        "log_mib": round(path.stat().st_size / 2**20, 1),
        "made_seconds": made,
        "query_one_case_table": timed(["audit", "query", src, "--case", "CASE-42"], env),
        "query_all_csv": timed(["audit", "query", src, "--format", "csv"], env),
        "query_actor_json": timed(
            ["audit", "query", src, "--actor", "tm-2", "--format", "json"], env
        ),
        "report_review": timed(
            ["audit", "report", src, "--review", "--out", str(tmp / "review.html")], env
        ),
        "report_one_case": timed(
            ["audit", "report", src, "--case", "CASE-42", "--out", str(tmp / "case.html")], env
        ),
        "verify": timed(["audit", "verify", src], env),
    }
    print(json.dumps(result, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
