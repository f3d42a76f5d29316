"""``remit audit verify``: check every writer's hash chain in a decision log;
``remit keygen``: bundle keys."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from remit.audit.log import (
    AnchorVerifier,
    RedisStreamSink,
    parse_lines,
    read_lines,
    verify_lines,
)

EXIT_BROKEN = 1
EXIT_USAGE = 2


def _verify(args: argparse.Namespace) -> int:
    anchors = None
    if args.public_key:
        try:
            anchors = AnchorVerifier.from_file(Path(args.public_key))
        except (OSError, ValueError) as exc:
            print(f"remit audit verify: --public-key {args.public_key}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.redis_url:
        sink = RedisStreamSink(args.redis_url, args.stream)
        result = verify_lines(parse_lines(sink.entries()), anchors, args.allow_open)
        where = f"stream {args.stream}"
    elif args.file:
        path = Path(args.file)
        if not path.is_file():
            print(f"remit audit verify: no such file {path}", file=sys.stderr)
            return EXIT_USAGE
        result = verify_lines(read_lines(path), anchors, args.allow_open)
        where = str(path)
    else:
        print("remit audit verify: give a FILE or --redis-url", file=sys.stderr)
        return EXIT_USAGE
    for w in result.writers:
        name = w.writer or "(no writer named)"
        state = f"broken at line {w.line}: {w.problem}" if w.problem else "chain intact"
        if w.gaps:
            state += f", {w.dropped} entries lost in {w.gaps} gap(s)"
        if w.anchors and not w.problem:
            state += ", closed" if w.closed else f", open: {w.unanchored} entries unanchored"
        print(
            f"  writer {name}: {w.entries} entries to seq {w.last_seq}, "
            f"{w.anchors} anchor(s), {state}"
        )
    if not result.anchors_checked and any(w.anchors for w in result.writers):
        print("  anchors not checked: give --public-key to detect cut tails and re-chaining")
    writers = len(result.writers)
    if result.ok:
        print(f"{where}: {result.entries} entries, chain intact ({writers} writer(s))")
        return 0
    print(
        f"{where}: line {result.line}: {result.problem} "
        f"({result.entries} entries verified in {writers} writer(s))"
    )
    return EXIT_BROKEN


def _keygen(args: argparse.Namespace) -> int:
    from remit.distribution.signing import generate_keypair

    private, public = generate_keypair()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = out / "bundle-signing.key", out / "bundle-signing.pub"
    if key_path.exists() and not args.force:
        print(f"remit keygen: {key_path} exists (use --force)", file=sys.stderr)
        return EXIT_USAGE
    key_path.write_bytes(private)
    key_path.chmod(0o600)
    pub_path.write_bytes(public)
    print(f"wrote {key_path} (keep secret) and {pub_path} (give to replicas)")
    return 0


def register(sub: Any) -> None:
    a = sub.add_parser("audit", help="decision log tools")
    asub = a.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser(
        "verify", help="check every writer's chain; report each writer and its first broken link"
    )
    v.add_argument("file", nargs="?", default="")
    v.add_argument("--redis-url", default="")
    v.add_argument("--stream", default="remit:audit")
    v.add_argument(
        "--public-key",
        default="",
        help="Ed25519 public key (PEM) of REMIT_AUDIT_SIGNING_KEY: check anchors, closing "
        "anchors and witnessed writers",
    )
    v.add_argument(
        "--allow-open",
        action="store_true",
        help="with --public-key: accept writers without a closing anchor (still running or "
        "killed), reporting their unanchored entries",
    )
    v.set_defaults(func=_verify)

    k = sub.add_parser("keygen", help="make an Ed25519 key pair for signing bundles")
    k.add_argument("--out", default=".")
    k.add_argument("--force", action="store_true")
    k.set_defaults(func=_keygen)
