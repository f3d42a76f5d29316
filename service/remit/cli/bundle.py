"""``remit publish``, ``remit rollback`` and ``remit bundles``: the shared bundle in Redis."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from remit.cli.probe import utc_text
from remit.distribution.bundle import DEFAULT_KEEP, BundleStore, from_directory
from remit.distribution.signing import Signer
from remit.model import paths as _paths
from remit.model.errors import PolicyError

EXIT_POLICY = 4
EXIT_REDIS = 6


def _store(args: argparse.Namespace) -> BundleStore:
    url = args.redis_url or os.environ.get("REMIT_REDIS_URL", "")
    if not url:
        raise SystemExit("remit: --redis-url or REMIT_REDIS_URL is required")
    return BundleStore.from_url(url, args.prefix)


def _failures(
    command: str, action: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """Refused bundles exit 4, Redis faults exit 6, each with one line on stderr."""

    def run(args: argparse.Namespace) -> int:
        try:
            return action(args)
        except PolicyError as exc:
            print(f"remit {command}: refused: {exc}", file=sys.stderr)
            return EXIT_POLICY
        except redis.RedisError as exc:
            print(f"remit {command}: Redis: {exc}", file=sys.stderr)
            return EXIT_REDIS

    return run


def _publish(args: argparse.Namespace) -> int:
    directory = Path(args.policy_dir) if args.policy_dir else _paths.generated_dir()
    mappings = Path(args.mappings_dir) if args.mappings_dir else None
    bundle = from_directory(directory, mappings_dir=mappings)
    store = _store(args)
    key = args.signing_key or os.environ.get("REMIT_BUNDLE_SIGNING_KEY", "")
    signer = Signer.from_file(Path(key)) if key else None
    store.publish(bundle, keep=args.keep, signer=signer)
    signed = "signed, " if signer else ""
    tables = sum(1 for rel in bundle.files if rel.startswith("adapters/mappings/"))
    print(
        f"published and activated {bundle.version} "
        f"({signed}{len(bundle.manifest['councils'])} councils, {tables} mapping tables)"
    )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.version not in store.history():
        print(f"remit rollback: {args.version} is not in the kept history", file=sys.stderr)
        return EXIT_POLICY
    store.rollback(args.version)
    print(f"activated {args.version}")
    return 0


def _bundles(args: argparse.Namespace) -> int:
    store = _store(args)
    active = store.active()
    rows: list[dict[str, Any]] = []
    for version in store.history():
        raw = store.r.get(store.key("bundle", version, "manifest"))
        manifest = json.loads(raw) if isinstance(raw, bytes) else {}
        rows.append(
            {
                "version": version,
                "active": version == active,
                "created": manifest.get("created"),
                "councils": manifest.get("councils", []),
            }
        )
    if args.json:
        print(json.dumps({"active": active, "history": rows}, indent=2))
        return 0
    print(f"active: {active or '(none)'}")
    for row in rows:
        mark = "*" if row["active"] else " "
        councils = ", ".join(row["councils"])
        print(f"{mark} {row['version']}  published {utc_text(row['created'])}  {councils}")
    return 0


def register(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--redis-url", default="", help="default: $REMIT_REDIS_URL")
        p.add_argument("--prefix", default="remit", help="Redis key prefix")

    p = sub.add_parser("publish", help="publish compiled policy to Redis and activate it")
    common(p)
    p.add_argument("--policy-dir", default="", help="compiled policy (default policies/generated)")
    p.add_argument(
        "--mappings-dir",
        default="",
        help="LCS/PARIS mapping tables, <council>/<system>.yaml (default: the installed "
        "adapters/mappings)",
    )
    p.add_argument("--keep", type=int, default=DEFAULT_KEEP, help="versions of history to keep")
    p.add_argument(
        "--signing-key",
        default="",
        help="Ed25519 private key PEM (default: $REMIT_BUNDLE_SIGNING_KEY)",
    )
    p.set_defaults(func=_failures("publish", _publish))

    r = sub.add_parser("rollback", help="make an earlier published version active again")
    common(r)
    r.add_argument("version")
    r.set_defaults(func=_failures("rollback", _rollback))

    b = sub.add_parser("bundles", help="list published versions and the active one")
    common(b)
    b.add_argument("--json", action="store_true", help="JSON (times as unix seconds)")
    b.set_defaults(func=_failures("bundles", _bundles))
