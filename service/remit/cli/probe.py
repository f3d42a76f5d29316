"""``remit health``: probe a running server's ``grpc.health.v1`` (a Kubernetes exec probe).

Kubernetes runs it every few seconds in a 1-CPU pod, so this module imports only what the
probe needs: grpc, the health stubs and :mod:`remit.config` (standard library only) — never
the compiler, the engine, the adapters or the other commands. :func:`remit.cli.main.main`
hands ``remit health ...`` here before it imports anything else.

Exit codes: 0 SERVING (or, with ``--live``, whenever the server answers at all); 1 not
serving or no answer; 2 an invalid address (the message names the flag or variable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

EXIT_FAILED = 1
EXIT_USAGE = 2

#: Trailing-metadata keys that carry unix seconds, shown as ISO 8601 UTC in text output.
TIME_KEYS = frozenset({"policy-last-reload"})


def utc_text(seconds: str | float | None) -> str:
    """Unix seconds as ISO 8601 UTC to the second (``2026-12-01T23:04:16Z``); a value that is
    not a number is returned as given, and none (or 0) as ``never``."""
    if seconds is None or seconds == "":
        return "never"
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return str(seconds)
    if value <= 0:
        return "never"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def probe_target(address: str) -> str:
    """Where a local probe connects: a wildcard bind address means this host's loopback."""
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "", "*"):  # noqa: S104 (read, not bound)
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    return f"{host}:{port}"


def add_arguments(h: argparse.ArgumentParser) -> None:
    """The ``remit health`` flags (shared by ``remit --help`` and the fast path)."""
    h.add_argument("--address", default="", help="HOST:PORT (REMIT_ADDRESS; 127.0.0.1:50051)")
    h.add_argument("--service", default="", help="service name ('' = the whole server)")
    h.add_argument("--timeout", type=float, default=2.0)
    h.add_argument("--json", action="store_true")
    h.add_argument("--live", action="store_true", help="liveness: exit 0 if it answers at all")


def health(args: argparse.Namespace) -> int:
    """Probe ``grpc.health.v1.Health/Check`` and print the status and the server's detail."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from remit.config import ConfigError, parse_address

    raw = args.address or os.environ.get("REMIT_ADDRESS", "127.0.0.1:50051")
    try:
        target = probe_target(parse_address(raw))
    except ValueError as exc:
        name = "--address" if args.address else "REMIT_ADDRESS"
        print(
            f"remit health: invalid configuration: {ConfigError(name, str(exc))}", file=sys.stderr
        )
        return EXIT_USAGE
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response, call = stub.Check.with_call(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            print(f"remit health: {target}: {code.name if code else 'ERROR'}", file=sys.stderr)
            return EXIT_FAILED
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    detail = {
        k.removeprefix("remit-"): v
        for k, v in (call.trailing_metadata() or ())
        if isinstance(v, str) and k.startswith("remit-")
    }
    if args.json:
        print(
            json.dumps(
                {"target": target, "service": args.service, "status": status, **detail},
                sort_keys=True,
            )
        )
    else:
        shown = {k: utc_text(v) if k in TIME_KEYS else v for k, v in detail.items()}
        extra = " ".join(f"{k}={v}" for k, v in sorted(shown.items()) if v)
        print(f"{status} {target} {args.service or '(server)'} {extra}".rstrip())
    if args.live:  # liveness: the process answers at all
        return 0
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else EXIT_FAILED


def main(argv: Sequence[str]) -> int:
    """``remit health ARGS`` without loading the rest of the command line."""
    parser = argparse.ArgumentParser(
        prog="remit health",
        description="probe a running server's grpc.health.v1 (exit 0 SERVING)",
    )
    add_arguments(parser)
    return health(parser.parse_args(list(argv)))
