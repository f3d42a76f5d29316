"""The ``remit`` command line: compile, test, check, serve, health.

Exit codes: 0 success; 1 a test or check failed / a decision was denied with ``--exit-code``
/ ``remit health`` found the service not serving; 2 usage error or invalid configuration
(the message names the variable); 3 compile errors (or a broken adapters mapping file);
4 compiled policy stale or unloadable; 5 lint errors (``remit lint``, in
:mod:`remit.cli.tools` with ``remit diff`` and ``remit matrix``); 6 Redis unreachable
(``remit publish`` / ``rollback`` / ``bundles``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from remit.cli import probe as _probe
from remit.model import paths as _paths
from remit.model.errors import CompileError, PolicyError, RequestError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_COMPILE = 3
EXIT_POLICY = 4


def _cmd_compile(args: argparse.Namespace) -> int:
    from remit.compiler import build as _compiler

    out_dir = Path(args.out) if args.out else _paths.project_root() / "policies" / "generated"
    try:
        files = _compiler.compile_all(
            Path(args.schemes), Path(args.sources), set(args.council) or None
        )
    except CompileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"remit compile: {len(exc.problems)} problem(s)", file=sys.stderr)
        return EXIT_COMPILE
    if args.check:
        stale = _compiler.stale(files, out_dir)
        if stale:
            for rel in stale:
                print(f"stale: {out_dir / rel}", file=sys.stderr)
            print(
                "remit compile --check: generated policy is stale; run `remit compile`",
                file=sys.stderr,
            )
            return EXIT_POLICY
        print(f"remit compile --check: {len(files)} files up to date")
        return 0
    _compiler.write(files, out_dir)
    councils = sorted({p.split("/")[0] for p in files if "/" in p})
    print(f"compiled {len(councils)} council(s) into {out_dir}: {', '.join(councils)}")
    return 0


def _load_policies(args: argparse.Namespace) -> Any:
    from remit.model.policy import load_dir

    return load_dir(Path(args.policy_dir) if args.policy_dir else _paths.generated_dir())


def _cmd_test(args: argparse.Namespace) -> int:
    from remit.tools import suites as _testing

    try:
        policies = _load_policies(args)
    except PolicyError as exc:
        print(f"remit test: {exc}", file=sys.stderr)
        return EXIT_POLICY
    report = _testing.run(policies, Path(args.tests), set(args.council) if args.council else None)
    for result in report.failed:
        print(f"FAIL {result.id}: {result.message}")
    for council, (ok, bad) in sorted(report.by_council().items()):
        print(f"{council}: {ok} passed, {bad} failed")
    total_ok = sum(ok for ok, _ in report.by_council().values())
    print(f"{total_ok} passed, {len(report.failed)} failed")
    if args.junit:
        Path(args.junit).write_bytes(_testing.junit_xml(report))
    return EXIT_FAILED if report.failed or not report.results else 0


def _parse_kv(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"remit: --fact wants NAME=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def _answer_json(answer: Any) -> dict[str, Any]:
    from dataclasses import asdict, replace

    data = asdict(replace(answer, trace=None))
    data.pop("trace")
    data["effect"] = "ALLOW" if data.pop("allowed") else "DENY"
    return data


def _request_error(exc: RequestError, as_json: bool, command: str = "check") -> int:
    """A refused request on stderr: one plain sentence naming the field, or with ``--json``
    the ``{error, field, message}`` object (the gRPC status code, field and message)."""
    not_found = type(exc).__name__ == "NotFound"
    if as_json:
        code = "NOT_FOUND" if not_found else "INVALID_ARGUMENT"
        print(
            json.dumps({"error": code, "field": exc.field, "message": exc.message}),
            file=sys.stderr,
        )
    else:
        what = "not found" if not_found else "invalid"
        print(f"remit {command}: {exc.field} {what}: {exc.message}", file=sys.stderr)
    return EXIT_USAGE


def _due_text(when: Any) -> str:
    return f", due {when.isoformat()}" if when is not None else ""


def _check_query(args: argparse.Namespace, policies: Any, req: Any) -> int:
    """--permitted, --authorisers, --event: the list queries beside a single decision."""
    from dataclasses import asdict
    from datetime import UTC, datetime

    from remit.engine.due import due
    from remit.engine.notify import notifications
    from remit.engine.queries import permitted_decisions, who_may_decide

    when = req.decision_time or datetime.now(UTC)
    if args.permitted:
        found = permitted_decisions(
            policies, req.council, req.actor, dict(req.facts), req.service_area, req.grant, when
        )
        if args.json:
            print(json.dumps([asdict(p) for p in found], indent=2, ensure_ascii=False))
            return 0
        print(f"{len(found)} decision(s) {', '.join(req.actor.roles)} may take here:")
        for p in found:
            cond = f" — {p.summary}" if p.summary else ""
            print(f"  {p.decision} ({p.section}, rule {p.rule}){cond}")
            for o in p.obligations:
                who = o.role or o.party or o.casenote or o.fact
                owed = due(o.timescale, when) if o.timescale else None
                print(f"      {o.kind} ({who}){_due_text(owed)}")
        return 0
    if args.authorisers:
        deciders = who_may_decide(
            policies, req.council, req.decision, dict(req.facts), req.service_area, req.grant, when
        )
        if args.json:
            print(json.dumps(asdict(deciders), indent=2, ensure_ascii=False))
            return 0
        if deciders.decided_outside:
            print(f"{req.decision} is not decided within the department here: decided by")
            print(f"  {deciders.decided_outside}")
            return 0
        print(f"who may decide {req.decision} here, lowest post first:")
        for a in deciders.authorisers:
            cond = f": {a.conditions}" if a.conditions else ""
            print(f"  {a.title} [{a.role}] (rule {a.rule}, {a.section}){cond}")
        return 0
    notes = notifications(policies, req.council, args.event, dict(req.facts), when)
    if args.json:
        print(json.dumps([asdict(n) for n in notes], indent=2, ensure_ascii=False, default=str))
        return 0
    if not notes:
        print(f"{args.event}: not owed in this context")
    for n in notes:
        print(f"{n.event}: {n.wording} ({n.section})")
        print(f"  tell: {', '.join(n.audience) or '(no one: an expectation)'}")
        print(f"  by:   {', '.join(n.by)}")
        print(f"  when: {n.timescale}{_due_text(n.due)}")
        if n.conditions:
            print(f"  only if: {n.conditions}")
    return 0


def _outcome_json(outcome: Any) -> dict[str, Any]:
    """The answer as JSON, with the due times the use case computed and the notifications
    an allow implies."""
    from dataclasses import asdict

    data = _answer_json(outcome.answer)
    for obligation, owed in zip(data["obligations"], outcome.obligation_due, strict=True):
        obligation["due"] = owed.isoformat() if owed is not None else None
    data["notifications"] = [
        dict(asdict(n), due=n.due.isoformat() if n.due is not None else None)
        for n in outcome.notices
    ]
    data["decision_time"] = outcome.decided_at.isoformat()
    return data


def _cmd_check(args: argparse.Namespace) -> int:
    from adapters._errors import MappingFileError
    from remit.engine.authorise import HostRecords, authorise
    from remit.tools.suites import build_request

    modes = sum(bool(m) for m in (args.permitted, args.authorisers, args.event))
    if modes > 1:
        print("remit check: choose one of --permitted, --authorisers, --event", file=sys.stderr)
        return EXIT_USAGE
    if not args.decision and not (args.permitted or args.event):
        print("remit check: --decision is required", file=sys.stderr)
        return EXIT_USAGE
    if not args.role and not (args.authorisers or args.event or args.host_system):
        print("remit check: --role is required (or --host-system with --records)", file=sys.stderr)
        return EXIT_USAGE
    try:
        policies = _load_policies(args)
    except PolicyError as exc:
        print(f"remit check: {exc}", file=sys.stderr)
        return EXIT_POLICY
    context = _parse_kv(args.fact)
    if args.context:
        context.update(json.loads(Path(args.context).read_text(encoding="utf-8")))
    if args.service_area:
        context["service_area"] = args.service_area
    if args.at:
        context["decision_time"] = args.at
    actor = {
        "id": args.actor_id or ("" if args.host_system else "cli-user"),
        "roles": args.role,
        "service_areas": args.area,
        "agency": args.agency,
    }
    try:
        req = build_request(policies, args.council, args.decision or "", actor, context)
        if modes:
            if args.host_system:  # raw host records, mapped per council (adapters package)
                from adapters._cli import apply_files

                req, _ = apply_files(req, args.host_system, args.records, policies.mappings)
            return _check_query(args, policies, req)
        host = None
        if args.host_system:
            from adapters._cli import read_records

            host = HostRecords(args.host_system, read_records(args.records))
        # the same use case as the gRPC API and `remit test`
        outcome = authorise(policies, req, host)
    except MappingFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_COMPILE
    except RequestError as exc:
        return _request_error(exc, args.json)
    answer, req = outcome.answer, outcome.request
    data = _outcome_json(outcome)
    if outcome.host is not None:
        from adapters._cli import mapped_json

        data["mapped"] = mapped_json(outcome.host, answer.obligations)
    if args.reference:
        from remit.tools.reference import ReferenceEvaluator

        allowed, rule, _ = ReferenceEvaluator(policies.councils[args.council]).decide(req)
        data["reference"] = {"effect": "ALLOW" if allowed else "DENY", "rule": rule}
    if args.trace and answer.trace is not None:
        from remit.engine.trace import view

        data["trace"] = view(answer.trace)
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(f"{data['effect']}: {answer.reason}")
        if answer.citation:
            c = answer.citation
            print(f'  rule {answer.rule}: {c.document}, {c.section}: "{c.quote}"')
        for o, owed in zip(answer.obligations, outcome.obligation_due, strict=True):
            who = o.role or o.party or o.casenote or o.fact
            timing = f" {o.timescale}{_due_text(owed)}" if o.timescale else ""
            print(f"  obligation {o.kind} ({who}){timing}: {o.text}")
        for n in outcome.notices:
            print(
                f"  notify {', '.join(n.audience)} by {', '.join(n.by)}, {n.timescale}"
                f"{_due_text(n.due)}: {n.wording} ({n.section})"
            )
        if answer.missing_facts:
            print(
                f"  facts the rules needed but the request did not carry: "
                f"{', '.join(answer.missing_facts)}"
            )
        for a in answer.authorisers:
            print(
                f"  may decide: {a.title} ({a.section})"
                + (f": {a.conditions}" if a.conditions else "")
            )
        for m in data.get("mapped", []):
            print(f"  mapped {m['field']}: {m['raw']!r} -> {m['canonical']} ({m['source']})")
        print(f"  policy {answer.policy_version}, decision {answer.decision_id}")
        if "reference" in data:
            print(f"  casbin reference: {data['reference']['effect']} {data['reference']['rule']}")
        for step in data.get("trace", []):
            terms = ", ".join(f"{t['term']} {t['state']}" for t in step["terms"]) or "always"
            mark = "decides" if step["decides"] else step["effect"]
            print(
                f"  trace {step['rule']} ({mark}; {step['via']} {step['via_role'] or ''}; "
                f"area {step['area_state']}): {terms}"
            )
    return EXIT_FAILED if args.exit_code and not answer.allowed else 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from remit import config as _config

    flags = {
        "address": args.address,
        "policy_dir": args.policy_dir,
        "metrics_address": args.metrics_address,
        "workers": args.workers,
    }
    try:
        config = _config.load(flags=flags)
    except _config.ConfigError as exc:
        print(f"remit serve: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from remit.server.serve import serve_forever

    return serve_forever(config)


def _cmd_catalogue(args: argparse.Namespace) -> int:
    """The ids a request may name: every council, or one council's decisions, roles, areas,
    facts and notification events (what CatalogueService/ListCouncils and GetScheme answer
    over gRPC)."""
    from remit.engine.evaluate import council_policy
    from remit.model.facts import ACTOR_FACTS

    try:
        policies = _load_policies(args)
    except PolicyError as exc:
        print(f"remit catalogue: {exc}", file=sys.stderr)
        return EXIT_POLICY
    if not args.council:
        rows = [(c, p.name or p.title) for c, p in sorted(policies.councils.items())]
        if args.json:
            print(json.dumps([{"council": c, "name": n} for c, n in rows], indent=2))
        for c, n in rows if not args.json else ():
            print(f"{c}\t{n}")
        return 0
    try:
        policy = council_policy(policies, args.council)
    except RequestError as exc:
        return _request_error(exc, args.json, "catalogue")
    listing = {
        "decisions": {d: policy.decisions[d].wording for d in policy.scheme_order},
        "roles": {r.id: r.titles[0] if r.titles else "" for r in policy.roles.values()},
        "areas": {a.id: a.name for a in policy.areas.values()},
        "facts": {
            f.id: f"{f.label} ({f.type.value})"
            for f in policy.facts.values()
            if not f.derived and f.id not in ACTOR_FACTS
        },
        "notifications": {e.id: e.wording for e in policy.events.values()},
    }
    if args.json:
        print(json.dumps({"council": policy.council, **listing}, indent=2, ensure_ascii=False))
        return 0
    print(f"{policy.council}: {policy.name or policy.title}")
    for kind, ids in listing.items():
        print(f"{kind}:")
        for key, text in ids.items():
            print(f"  {key}  {text}".rstrip())
    return 0


# Modules that add their own subcommands: each has register(subparsers) -> None.
COMMAND_MODULES: tuple[str, ...] = ("remit.cli.bundle", "remit.cli.audit", "remit.cli.tools")


def build_parser() -> argparse.ArgumentParser:
    root = _paths.project_root()
    p = argparse.ArgumentParser(
        prog="remit", description=__doc__.splitlines()[0] if __doc__ else None
    )
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="compile schemes into Casbin policy")
    c.add_argument("--schemes", default=str(root / "policies" / "schemes"))
    c.add_argument("--sources", default=str(root / "policies" / "sources"))
    c.add_argument("--out", default="")
    c.add_argument("--check", action="store_true", help="fail if committed output is stale")
    c.add_argument(
        "--council",
        action="append",
        default=[],
        help="compile only this council (repeatable; use with --out for a scratch build)",
    )
    c.set_defaults(func=_cmd_compile)

    t = sub.add_parser("test", help="run the YAML policy test suites")
    t.add_argument("--tests", default=str(root / "policies" / "tests"))
    t.add_argument("--policy-dir", default="")
    t.add_argument("--council", action="append", default=[])
    t.add_argument("--junit", default="", help="also write JUnit XML to this file")
    t.set_defaults(func=_cmd_test)

    k = sub.add_parser(
        "check",
        help="decide one request; or list what an actor may decide (--permitted), who may "
        "decide (--authorisers), or who must be told of an event (--event)",
    )
    k.add_argument("--council", required=True)
    k.add_argument("--decision", default="")
    k.add_argument("--role", action="append", default=[], help="actor role (repeatable)")
    k.add_argument(
        "--permitted", action="store_true", help="list every decision the actor may take here"
    )
    k.add_argument("--authorisers", action="store_true", help="list who may take --decision here")
    k.add_argument("--event", default="", help="who must be told of this event, by whom, when")
    k.add_argument("--at", default="", help="decision time, ISO 8601 (default now)")
    k.add_argument("--area", action="append", default=[], help="actor service area (repeatable)")
    k.add_argument("--actor-id", default="", help="default cli-user; the worker with --host-system")
    k.add_argument("--agency", action="store_true")
    k.add_argument("--service-area", default="")
    k.add_argument("--fact", action="append", default=[], help="NAME=VALUE (JSON values)")
    k.add_argument("--context", default="", help="JSON file of facts")
    k.add_argument("--policy-dir", default="")
    k.add_argument("--json", action="store_true")
    k.add_argument("--reference", action="store_true", help="also decide with the Casbin reference")
    k.add_argument(
        "--trace", action="store_true", help="show the engine's walk: each line, area and term"
    )
    k.add_argument("--exit-code", action="store_true", help="exit 1 on DENY")
    k.add_argument("--host-system", default="", help="lcs or paris: map --records per council")
    k.add_argument(
        "--records", default="", help="with --host-system: JSON files of records, comma-separated"
    )
    k.set_defaults(func=_cmd_check)

    g = sub.add_parser(
        "catalogue", help="list the councils, or one council's decisions, roles, areas, facts"
    )
    g.add_argument("council", nargs="?", default="")
    g.add_argument("--policy-dir", default="")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=_cmd_catalogue)

    s = sub.add_parser(
        "serve", help="serve the gRPC API (settings: REMIT_* env, REMIT_CONFIG file, flags)"
    )
    s.add_argument("--address", default=None, help="HOST:PORT (REMIT_ADDRESS; 127.0.0.1:50051)")
    s.add_argument("--policy-dir", default=None, help="compiled policy (REMIT_POLICY_DIR)")
    s.add_argument(
        "--metrics-address", default=None, help="HOST:PORT for /metrics (REMIT_METRICS_ADDRESS)"
    )
    s.add_argument(
        "--workers", default=None, help="N processes sharing the port (REMIT_WORKERS; 1)"
    )
    s.set_defaults(func=_cmd_serve)

    h = sub.add_parser("health", help="probe a running server's grpc.health.v1 (exit 0 SERVING)")
    _probe.add_arguments(h)
    h.set_defaults(func=_probe.health)
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["health"]:  # the exec probe: grpc and the health stubs only
        return _probe.main(argv[1:])
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
