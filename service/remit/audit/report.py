"""``remit audit report``: a self-contained HTML report of the decisions a filter selects,
for an auditor to file: each decision with its rule, section and the scheme's own words,
the policy version, the deviation flag and who agreed it.

The scheme's words are not in the log (an entry keeps the rule's id, not its text): they are
looked up in the compiled policy of the entry's own policy version, from the policy
directories given (``--policy``); an entry of a version not given says so rather than quote
another version's words. Rendered by Jinja2 with autoescaping on (every value from the log
or the policy is escaped, a hostile actor id stays text), streamed row by row, so the report
of a million-line log costs no more memory than one of ten lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jinja2

from remit.model.policy import PolicySet


@dataclass
class Totals:
    decisions: int = 0
    allowed: int = 0
    denied: int = 0
    deviations: int = 0
    review: int = 0
    unquoted: int = 0  # decisions whose policy version was not given
    by_council: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Row:
    time: str
    council: str
    decision: str
    heading: str
    effect: str
    rule_id: str
    section: str
    quote: str
    policy_version: str
    known_version: bool
    actor_id: str
    case: str
    deviation: bool
    agreed_by: str
    review: bool
    time_claimed: bool
    decision_time: str
    decision_id: str


def scheme_words(policies: Mapping[str, PolicySet], e: dict[str, Any]) -> tuple[bool, str, str]:
    """(the entry's policy version was given, the decision's heading, the scheme's quoted
    words for the deciding rule) from the compiled policy of the entry's version."""
    policy_set = policies.get(str(e.get("policy_version", "")))
    if policy_set is None:
        return False, "", ""
    council = policy_set.councils.get(str(e.get("council", "")))
    if council is None:
        return True, "", ""
    decision = council.decisions.get(str(e.get("decision", "")))
    heading = decision.heading if decision is not None else ""
    rule_id = str(e.get("rule_id", ""))
    rule = council.rules.get(rule_id)
    if rule is not None:
        return True, heading, rule.quote
    if rule_id == "deviation" and council.deviation is not None:
        return True, heading, council.deviation.quote
    return True, heading, ""


def rows(
    entries: Iterable[dict[str, Any]], policies: Mapping[str, PolicySet], totals: Totals
) -> Iterator[Row]:
    for e in entries:
        known, heading, quote = scheme_words(policies, e)
        allowed = e.get("effect") == "EFFECT_ALLOW"
        totals.decisions += 1
        totals.allowed += allowed
        totals.denied += not allowed
        totals.deviations += e.get("deviation") is True
        totals.review += e.get("review") is True
        totals.unquoted += not known
        totals.by_council[str(e.get("council", ""))] += 1
        yield Row(
            time=str(e.get("time", "")),
            council=str(e.get("council", "")),
            decision=str(e.get("decision", "")),
            heading=heading,
            effect="allow" if allowed else "deny",
            rule_id=str(e.get("rule_id", "")),
            section=str(e.get("section", "")),
            quote=quote,
            policy_version=str(e.get("policy_version", "")),
            known_version=known,
            actor_id=str(e.get("actor_id", "")),
            case=str(e.get("case_ref_hmac", "")),
            deviation=e.get("deviation") is True,
            agreed_by=str(e.get("deviation_agreed_by", "")),
            review=e.get("review") is True,
            time_claimed=e.get("time_claimed") is True,
            decision_time=str(e.get("decision_time", "")),
            decision_id=str(e.get("decision_id", "")),
        )


def _template() -> jinja2.Template:
    from importlib import resources

    text = resources.files("remit").joinpath("audit/report.html.j2").read_text(encoding="utf-8")
    return _ENV.from_string(text)


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def render(
    entries: Iterable[dict[str, Any]],
    policies: Mapping[str, PolicySet],
    source: str,
    filters: str,
) -> Iterator[str]:
    """The report, in pieces as it is produced (write them as they come)."""
    totals = Totals()
    template = _template()
    return template.generate(
        rows=rows(entries, policies, totals),
        totals=totals,
        source=source,
        filters=filters,
        versions=", ".join(sorted(policies)),
        produced=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
