"""``remit diff OLD NEW``: the schedule of changes between two versions of a scheme.

Each side is a scheme file (``policies/schemes/torbay.yaml``, with its ``torbay.d/`` parts),
a schemes directory, a compiled bundle (a directory with ``manifest.json``) or a git
revision (its ``policies/schemes`` and ``policies/sources``, read with ``git show``).
Schemes are compiled in memory, so both sides are compared as the engine would serve them.

The comparison is per decision and per post named by a rule: authority gained or lost and
under which conditions, ceilings and thresholds raised or lowered, deputies (rules for a
post's absence) added or removed, obligations changed, prohibitions added or removed. It is
written as Markdown in the scheme's own words (titles, amounts, sections and quotes): the
schedule of in-year changes a council approves (Torbay 3.1).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from remit.compiler import build as _compiler
from remit.engine.explain import describe_term
from remit.model import paths as _paths
from remit.model.conditions import Term
from remit.model.facts import FactType
from remit.model.policy import (
    CouncilPolicy,
    Decision,
    Obligation,
    PolicySet,
    Rule,
    load_dir,
    load_files,
)


def _from_files(files: dict[str, bytes]) -> PolicySet:
    return load_files(files, json.loads(files["manifest.json"]))


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, timeout=60
    ).stdout


def _from_git(rev: str, schemes_rel: str, council: str) -> PolicySet:
    root = _paths.project_root()
    probe = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
        timeout=30,
    )
    if probe.returncode != 0:
        raise ValueError(f"{rev!r} is neither a file, a directory nor a git revision")
    sources_rel = str(Path(schemes_rel).parent / "sources")
    names = _git(root, "ls-tree", "-r", "--name-only", rev, "--", schemes_rel, sources_rel)
    with tempfile.TemporaryDirectory(prefix="remit-diff-") as tmp:
        for name in names.decode().splitlines():
            target = Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_git(root, "show", f"{rev}:{name}"))
        return _from_files(
            _compiler.compile_all(
                Path(tmp) / schemes_rel, Path(tmp) / sources_rel, {council} if council else None
            )
        )


def load_side(spec: str, schemes_dir: Path, council: str = "") -> PolicySet:
    """Compile or load one side of a diff. Raises CompileError, PolicyError or ValueError."""
    path = Path(spec)
    wanted = {council} if council else None
    if path.is_dir() and (path / "manifest.json").is_file():
        return load_dir(path)
    if path.is_dir():
        sources = path.parent / "sources"
        return _from_files(
            _compiler.compile_all(
                path, sources if sources.is_dir() else _paths.sources_dir(), wanted
            )
        )
    if path.is_file():
        sources = path.parent.parent / "sources"
        parts = sorted((path.parent / f"{path.stem}.d").glob("*.yaml"))
        with tempfile.TemporaryDirectory(prefix="remit-diff-") as tmp:
            # compile_all wants a schemes directory: give it this file and its parts only
            scheme_dir = Path(tmp)
            (scheme_dir / path.name).write_bytes(path.read_bytes())
            if parts:
                (scheme_dir / f"{path.stem}.d").mkdir()
                for part in parts:
                    (scheme_dir / f"{path.stem}.d" / part.name).write_bytes(part.read_bytes())
            return _from_files(
                _compiler.compile_all(
                    scheme_dir, sources if sources.is_dir() else _paths.sources_dir()
                )
            )
    root = _paths.project_root()
    try:
        schemes_rel = str(schemes_dir.resolve().relative_to(root.resolve()))
    except ValueError:
        schemes_rel = "policies/schemes"
    return _from_git(spec, schemes_rel, council)


# -- the comparison -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Alt:
    """One way a post may (or may not) take a decision: one compiled line of a rule."""

    role: str  # "*" for anyone
    area: str
    effect: str
    cond: tuple[Term, ...]
    rule: Rule

    @property
    def absent(self) -> tuple[str, ...]:
        return tuple(
            sorted(str(t.value) for t in self.cond if t.fact == "absent_roles" and t.op == "has")
        )


def _alts(policy: CouncilPolicy, decision: Decision) -> list[_Alt]:
    return [
        _Alt(line.role, line.area, line.effect, line.cond, policy.rules[line.rule])
        for line in sorted(decision.lines, key=lambda line: line.position)
    ]


def _is_bound(policy: CouncilPolicy, term: Term) -> bool:
    spec = policy.facts.get(term.fact)
    return (
        spec is not None
        and spec.type in (FactType.MONEY, FactType.INT)
        and term.op in ("<=", "<", ">=", ">")
    )


def _shape(policy: CouncilPolicy, alt: _Alt) -> tuple[object, ...]:
    """What identifies an alternative across versions: all but its numeric bounds."""
    rest = tuple(sorted(t.text() for t in alt.cond if not _is_bound(policy, t)))
    bounds = tuple(sorted((t.fact, t.op in ("<=", "<")) for t in alt.cond if _is_bound(policy, t)))
    return (alt.role, alt.area, alt.effect, rest, bounds)


def _who(policy: CouncilPolicy, role: str) -> str:
    return "Anyone" if role == "*" else policy.roles[role].title


def _when(policy: CouncilPolicy, alt: _Alt) -> str:
    words = [describe_term(policy, t) for t in alt.cond]
    if alt.area != "*":
        words.insert(0, f"in {policy.areas[alt.area].name}")
    return "; ".join(words)


def _cite(rule: Rule, policy: CouncilPolicy | None = None) -> str:
    """The rule's section, and its quote when it is not the decision's own (shown above)."""
    decision = policy.decisions.get(rule.decision) if policy is not None else None
    if decision is not None and decision.quote == rule.quote:
        return f"({rule.section})"
    return f'({rule.section}: "{rule.quote}")'


def _obligation(o: Obligation) -> str:
    who = o.role or o.party or o.casenote or o.fact
    timescale = f", {o.timescale.replace('_', ' ')}" if o.timescale else ""
    return f"{o.kind} ({who}{timescale}): {o.text}"


def _bound_changes(old: CouncilPolicy, new: CouncilPolicy, a: _Alt, b: _Alt) -> list[str]:
    out: list[str] = []
    old_b = {(t.fact, t.op in ("<=", "<")): t for t in a.cond if _is_bound(old, t)}
    new_b = {(t.fact, t.op in ("<=", "<")): t for t in b.cond if _is_bound(new, t)}
    for (fact, upper), t_old in sorted(old_b.items()):
        t_new = new_b[(fact, upper)]
        if t_old == t_new:
            continue
        spec = new.facts[fact]
        # compare on the same footing: the highest allowed value / lowest allowed value
        v_old = _edge(t_old)
        v_new = _edge(t_new)
        kind = "Ceiling" if upper else "Threshold"
        way = "raised" if v_new > v_old else "lowered" if v_new < v_old else "reworded"
        shown_old = _amount(old, t_old)
        shown_new = _amount(new, t_new)
        out.append(
            f"**{kind} {way}**: {_who(new, b.role)} — {spec.label}: {shown_old} → {shown_new}"
            f" {_cite(b.rule, new)}"
        )
    return out


def _edge(term: Term) -> int:
    """The highest (``<=``, ``<``) or lowest (``>=``, ``>``) value a bound allows."""
    v = term.value
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{term.fact}: not a number")
    return v - (term.op == "<") + (term.op == ">")


def _amount(policy: CouncilPolicy, term: Term) -> str:
    """A bound without its fact's label: "up to £2,000.00"."""
    label = policy.facts[term.fact].label
    return describe_term(policy, term).removeprefix(label).strip()


def _obligation_changes(new: CouncilPolicy, a: _Alt, b: _Alt) -> list[str]:
    before = {_obligation(o) for o in a.rule.obligations if o.kind != "precondition"}
    after = {_obligation(o) for o in b.rule.obligations if o.kind != "precondition"}
    who = _who(new, b.role)
    out = [
        f"**Obligation added**: {who} — {o} {_cite(b.rule, new)}" for o in sorted(after - before)
    ]
    out += [
        f"**Obligation removed**: {who} — {o} {_cite(a.rule, new)}" for o in sorted(before - after)
    ]
    return out


def _describe_alt(policy: CouncilPolicy, alt: _Alt, gained: bool) -> str:
    when = _when(policy, alt)
    who = _who(policy, alt.role)
    if alt.effect == "deny":
        label = "Prohibition added" if gained else "Prohibition removed"
        outside = f"; decided by {alt.rule.decided_outside}" if alt.rule.decided_outside else ""
        cond = f" when {when}" if when else ""
        return f"**{label}**: {who} may not decide{cond}{outside} {_cite(alt.rule, policy)}"
    if alt.absent:
        absent = " or ".join(policy.roles[r].title for r in alt.absent)
        label = "Deputy added" if gained else "Deputy removed"
        verb = "deputises" if gained else "no longer deputises"
        return f"**{label}**: {who} {verb} for the {absent} ({when}) {_cite(alt.rule, policy)}"
    label = "Authority gained" if gained else "Authority lost"
    verb = "may now decide" if gained else "may no longer decide"
    return f"**{label}**: {who} {verb}{' — ' + when if when else ''} {_cite(alt.rule, policy)}"


def diff_decision(old: CouncilPolicy, new: CouncilPolicy, did: str) -> list[str]:
    """The changes to one decision present in both versions, as Markdown list items."""
    d_old, d_new = old.decisions[did], new.decisions[did]
    out: list[str] = []
    if d_old.wording != d_new.wording:
        out.append(f'**Wording changed**: "{d_old.wording}" → "{d_new.wording}"')
    if d_old.quote != d_new.quote:
        out.append(f'**Quoted text changed**: "{d_old.quote}" → "{d_new.quote}"')
    remaining = _alts(new, d_new)
    unmatched_old: list[_Alt] = []
    for a in _alts(old, d_old):
        match = next((b for b in remaining if _shape(old, a) == _shape(new, b)), None)
        if match is None:
            unmatched_old.append(a)
            continue
        remaining.remove(match)
        out.extend(_bound_changes(old, new, a, match))
        out.extend(_obligation_changes(new, a, match))
        pre_a = {o.text for o in a.rule.obligations if o.kind == "precondition"}
        pre_b = {o.text for o in match.rule.obligations if o.kind == "precondition"}
        if pre_a != pre_b:
            out.append(
                f"**Precondition changed**: {_who(new, match.role)} — "
                f"{'; '.join(sorted(pre_a)) or 'none'} → {'; '.join(sorted(pre_b)) or 'none'}"
                f" {_cite(match.rule, new)}"
            )
    out.extend(_describe_alt(old, a, gained=False) for a in unmatched_old)
    out.extend(_describe_alt(new, b, gained=True) for b in remaining)
    return list(dict.fromkeys(out))


def _who_may(policy: CouncilPolicy, decision: Decision) -> list[str]:
    return [_describe_alt(policy, a, gained=True) for a in _alts(policy, decision)]


def _titles(policy: CouncilPolicy, roles: Iterable[str]) -> str:
    return ", ".join(f"{policy.roles[r].title} (`{r}`)" for r in sorted(roles))


_NO_CHANGES = "No changes to who may take any decision.\n"


def render_council(old: CouncilPolicy, new: CouncilPolicy) -> str:
    lines = [
        f"# Schedule of changes: {new.name}",
        "",
        f"*{new.title}* — effective {old.effective} → {new.effective}.",
        "",
    ]
    body: list[str] = []
    added_roles = set(new.roles) - set(old.roles)
    removed_roles = set(old.roles) - set(new.roles)
    if added_roles:
        body.append(f"- **Posts added**: {_titles(new, added_roles)}")
    if removed_roles:
        body.append(f"- **Posts removed**: {_titles(old, removed_roles)}")
    for aid in sorted(set(new.areas) - set(old.areas)):
        body.append(f"- **Service area added**: {new.areas[aid].name}")
    for aid in sorted(set(old.areas) - set(new.areas)):
        body.append(f"- **Service area removed**: {old.areas[aid].name}")
    if body:
        lines += ["## Posts and service areas", "", *body, ""]
    order = list(new.decisions) + [d for d in old.decisions if d not in new.decisions]
    changed = 0
    for did in order:
        if did not in old.decisions:
            d = new.decisions[did]
            items = ["**Decision added**", *_who_may(new, d)]
        elif did not in new.decisions:
            d = old.decisions[did]
            items = ["**Decision removed** (no post may take it any longer)"]
        else:
            d = new.decisions[did]
            items = diff_decision(old, new, did)
        if not items:
            continue
        changed += 1
        lines += [f"## {d.section} — {d.wording}", "", f"> {d.quote}", ""]
        lines += [f"- {item}" for item in items]
        lines.append("")
    if not changed and not body:
        lines.append(_NO_CHANGES.strip())
        lines.append("")
    else:
        lines.append(f"{changed} decision(s) changed.")
        lines.append("")
    return "\n".join(lines)


def render(old: PolicySet, new: PolicySet, council: str | None = None) -> str:
    """The schedule of changes for every council on either side (or only ``council``)."""
    councils = sorted(set(old.councils) | set(new.councils))
    if council:
        councils = [council]
    parts: list[str] = []
    unchanged: list[str] = []
    for c in councils:
        if c not in new.councils:
            parts.append(f"# Schedule of changes: {c}\n\nScheme removed.\n")
        elif c not in old.councils:
            parts.append(f"# Schedule of changes: {c}\n\nNew scheme: {new.councils[c].title}.\n")
        else:
            text = render_council(old.councils[c], new.councils[c])
            if len(councils) > 1 and text.endswith(_NO_CHANGES):
                unchanged.append(new.councils[c].name)
            else:
                parts.append(text)
    if unchanged:
        parts.append(f"Unchanged: {', '.join(unchanged)}.\n")
    return "\n".join(parts)
