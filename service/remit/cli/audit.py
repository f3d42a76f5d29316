"""``remit audit verify``: check every writer's hash chain in a decision log;
``remit keygen``: bundle keys."""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from remit.audit.log import (
    AnchorVerifier,
    RedisStreamSink,
    parse_lines,
    verify_lines,
)
from remit.audit.query import (
    COLUMNS,
    EFFECTS,
    Filter,
    Progress,
    Scan,
    parse_when,
    raw_lines,
    row,
    select,
    table_header,
    table_row,
)
from remit.audit.sinks import postgres
from remit.audit.sinks.file import read_texts

DEFAULT_POLICY = Path("policies/generated")
EXIT_BROKEN = 1
EXIT_USAGE = 2


class SourceError(Exception):
    """The log named on the command line cannot be read (a usage error)."""


def log_lines(
    args: argparse.Namespace, parsed: bool = True
) -> tuple[Iterator[tuple[int, Any, str]], str]:
    """The decision log the arguments name, as numbered lines (``parsed``: each with its
    entry; else the text only), and how to name it: a file (or several, read as one log in
    the order given), ``--redis-url`` (a stream) or a ``postgresql://`` URL (the table, in
    arrival order)."""
    number = parse_lines if parsed else raw_lines
    sources: list[str] = list(args.source)
    pg = [s for s in sources if postgres.is_postgres_url(s)]
    if args.redis_url:
        sink = RedisStreamSink(args.redis_url, args.stream)
        return number(sink.entries()), f"stream {args.stream}"
    if pg:
        if len(sources) > 1:
            raise SourceError("give one postgresql:// URL, or files")
        return number(postgres.entries(pg[0])), f"table {postgres.TABLE}"
    if not sources:
        raise SourceError("give a FILE, a postgresql:// URL or --redis-url")
    paths = [Path(s) for s in sources]
    for path in paths:
        if not path.is_file():
            raise SourceError(f"no such file {path}")
    where = str(paths[0]) if len(paths) == 1 else f"{len(paths)} files"
    return number(itertools.chain.from_iterable(read_texts(p) for p in paths)), where


def add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source",
        nargs="*",
        help="the log: FILE (several: one log in the order given), or postgresql://URL",
    )
    p.add_argument("--redis-url", default="", help="read the Redis stream instead")
    p.add_argument("--stream", default="remit:audit")


def _reading(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command that reads the log: a log that cannot be read (a database or Redis that
    refuses, a file that cannot be opened) is a one-line error, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        import psycopg
        import redis

        try:
            return command(args)
        except (psycopg.Error, redis.RedisError, OSError) as exc:
            print(
                f"remit audit {args.audit_command}: cannot read the log: "
                f"{type(exc).__name__}: {str(exc).strip()}",
                file=sys.stderr,
            )
            return EXIT_USAGE

    return run


def _verify(args: argparse.Namespace) -> int:
    anchors = None
    if args.public_key:
        try:
            anchors = AnchorVerifier.from_file(Path(args.public_key))
        except (OSError, ValueError) as exc:
            print(f"remit audit verify: --public-key {args.public_key}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        lines, where = log_lines(args)
    except SourceError as exc:
        print(f"remit audit verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    result = verify_lines(lines, anchors, args.allow_open)
    for w in result.writers:
        name = w.writer or "(no writer named)"
        state = f"broken at line {w.line}: {w.problem}" if w.problem else "chain intact"
        if w.gaps:
            state += f", {w.dropped} entries lost in {w.gaps} gap(s)"
        if w.continued:
            state += f", from seq {w.first_seq} (goes on from an earlier segment)"
        if w.anchors and not w.problem:
            if w.segment_ended:
                state += ", segment ended (goes on in the next segment)"
            else:
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


def add_filters(p: argparse.ArgumentParser) -> None:
    f = p.add_argument_group("which decisions (all given must match)")
    f.add_argument(
        "--case",
        default="",
        metavar="REFERENCE",
        help="the case reference as the case system gives it; with REMIT_AUDIT_HMAC_KEY "
        "(the log's key, hex) the pseudonym is computed as the service does",
    )
    f.add_argument("--actor", default="", metavar="ID", help="the actor's opaque id")
    f.add_argument("--council", default="")
    f.add_argument("--decision", default="")
    f.add_argument("--effect", default="", choices=["", *EFFECTS])
    f.add_argument("--rule", default="", metavar="RULE_ID")
    f.add_argument("--since", default="", help="from this ISO date or time (UTC unless given)")
    f.add_argument("--until", default="", help="before this ISO date or time")
    f.add_argument(
        "--review",
        action="store_true",
        help="flagged for review: deviations and retrospective (claimed) decision times",
    )
    f.add_argument("--deviation", action="store_true", help="deviations from the scheme only")


def filter_from(args: argparse.Namespace) -> Filter:
    """The filter the arguments give; ValueError naming the argument at fault."""
    key: bytes | None = None
    if args.case:
        raw = os.environ.get("REMIT_AUDIT_HMAC_KEY", "").strip()
        if not raw:
            raise ValueError("--case needs the log's key in REMIT_AUDIT_HMAC_KEY (hex)")
        try:
            key = bytes.fromhex(raw)
        except ValueError:
            raise ValueError("REMIT_AUDIT_HMAC_KEY: not hex") from None
    return Filter(
        case_reference=args.case,
        hmac_key=key,
        actor_id=args.actor,
        council=args.council,
        decision=args.decision,
        effect=EFFECTS.get(args.effect, ""),
        rule_id=args.rule,
        since=parse_when(args.since, "--since") if args.since else "",
        until=parse_when(args.until, "--until") if args.until else "",
        review=args.review,
        deviation=args.deviation,
    )


def _query(args: argparse.Namespace) -> int:
    try:
        where = filter_from(args)
        lines, _ = log_lines(args, parsed=False)
    except (ValueError, SourceError) as exc:
        print(f"remit audit query: {exc}", file=sys.stderr)
        return EXIT_USAGE
    scan, progress, out = Scan(), Progress(), sys.stdout
    found = select(lines, where, scan, progress)
    try:
        if args.format == "json":
            for _, text in found:
                out.write(text + "\n")
        elif args.format == "csv":
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(COLUMNS)
            for entry, _ in found:
                writer.writerow(row(entry))
        else:
            out.write(table_header() + "\n")
            for entry, _ in found:
                out.write(table_row(entry) + "\n")
        out.flush()
    except BrokenPipeError:  # | head: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    progress.done(scan)
    if scan.unreadable:
        print(f"remit audit query: {scan.unreadable} line(s) not entries", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from remit.audit.report import render
    from remit.model.errors import PolicyError
    from remit.model.policy import PolicySet, load_dir

    dirs = args.policy or ([DEFAULT_POLICY] if DEFAULT_POLICY.is_dir() else [])
    policies: dict[str, PolicySet] = {}
    for d in dirs:
        try:
            loaded = load_dir(Path(d))
        except PolicyError as exc:
            print(f"remit audit report: --policy {d}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        policies[loaded.version] = loaded
    try:
        where = filter_from(args)
        lines, source = log_lines(args, parsed=False)
    except (ValueError, SourceError) as exc:
        print(f"remit audit report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    scan, progress = Scan(), Progress()
    found = (entry for entry, _ in select(lines, where, scan, progress))
    out = Path(args.out)
    with out.open("w", encoding="utf-8") as fh:
        for piece in render(found, policies, source, _described(args)):
            fh.write(piece)
    progress.done(scan)
    print(f"wrote {out}: {scan.matched} decision(s) of {scan.lines} line(s)")
    return 0


def _described(args: argparse.Namespace) -> str:
    """The filter as given, for the report's header (the case reference itself is not
    repeated: it is personal data the report otherwise holds only as a pseudonym)."""
    parts = [
        f"--{name} {value}"
        for name, value in (
            ("actor", args.actor),
            ("council", args.council),
            ("decision", args.decision),
            ("effect", args.effect),
            ("rule", args.rule),
            ("since", args.since),
            ("until", args.until),
        )
        if value
    ]
    if args.case:
        parts.append("--case (one case, by its pseudonym)")
    parts += [f"--{flag}" for flag in ("review", "deviation") if getattr(args, flag)]
    return " ".join(parts)


def _init_db(args: argparse.Namespace) -> int:
    try:
        sql = postgres.ddl(args.grant)
    except ValueError as exc:
        print(f"remit audit init-db: --grant: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.print or not args.url:
        print(sql, end="")
        return 0
    if not postgres.is_postgres_url(args.url):
        print("remit audit init-db: want a postgresql:// URL", file=sys.stderr)
        return EXIT_USAGE
    import psycopg

    try:
        postgres.apply_ddl(args.url, args.grant)
    except psycopg.Error as exc:
        print(f"remit audit init-db: {type(exc).__name__}: {exc}".rstrip(), file=sys.stderr)
        return EXIT_BROKEN
    granted = f", SELECT and INSERT granted to {args.grant}" if args.grant else ""
    print(f"table {postgres.TABLE} ready{granted}")
    return 0


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
    add_source(v)
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
    v.set_defaults(func=_reading(_verify))

    q = asub.add_parser(
        "query",
        help="the decisions matching a filter, as a table, CSV or JSON lines (streamed)",
    )
    add_source(q)
    add_filters(q)
    q.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="json: each matching entry as logged, one per line",
    )
    q.set_defaults(func=_reading(_query))

    r = asub.add_parser(
        "report",
        help="a self-contained HTML report of the decisions matching a filter, with the "
        "scheme's words for each",
    )
    add_source(r)
    add_filters(r)
    r.add_argument("--out", required=True, help="the HTML file to write")
    r.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="DIR",
        help="a compiled policy directory whose version's words to quote (repeat for older "
        f"versions; default {DEFAULT_POLICY} when present)",
    )
    r.set_defaults(func=_reading(_report))

    d = asub.add_parser(
        "init-db",
        help="print or apply the PostgreSQL decision-log table (REMIT_AUDIT_SINK=postgresql://)",
    )
    d.add_argument(
        "url", nargs="?", default="", help="apply to this database (as the table's owner)"
    )
    d.add_argument(
        "--grant",
        default="",
        metavar="ROLE",
        help="the service's role: GRANT it SELECT and INSERT on the table, nothing more",
    )
    d.add_argument("--print", action="store_true", help="print the SQL instead of applying it")
    d.set_defaults(func=_init_db)

    k = sub.add_parser("keygen", help="make an Ed25519 key pair for signing bundles")
    k.add_argument("--out", default=".")
    k.add_argument("--force", action="store_true")
    k.set_defaults(func=_keygen)
