"""The compiled rule table (``<council>/rules.json``): its schema, its one loader, and its
Casbin export. A malformed table is a PolicyError naming the council and the field, never a
crash and never a policy that loads with something silently dropped."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from remit.model.errors import PolicyError
from remit.model.export import MODEL_CONF
from remit.model.policy import PolicySet, council_policy, load_files, rules_schema

from tests.conftest import GENERATED

COUNCILS = sorted(json.loads((GENERATED / "manifest.json").read_text())["councils"])


def _table(council: str) -> dict[str, Any]:
    table: dict[str, Any] = json.loads((GENERATED / council / "rules.json").read_text())
    return table


def _files() -> tuple[dict[str, bytes], dict[str, Any]]:
    manifest: dict[str, Any] = json.loads((GENERATED / "manifest.json").read_text())
    return {rel: (GENERATED / rel).read_bytes() for rel in manifest["files"]}, manifest


def test_the_compiled_set_is_a_table_and_an_export_per_council_and_one_model() -> None:
    _, manifest = _files()
    want = {"model.conf"} | {f"{c}/{f}" for c in COUNCILS for f in ("rules.json", "policy.csv")}
    assert set(manifest["files"]) == want
    assert (GENERATED / "model.conf").read_text() == MODEL_CONF
    assert not list(GENERATED.rglob("index.json"))


@pytest.mark.parametrize("council", COUNCILS)
def test_every_table_validates_against_its_schema(council: str) -> None:
    schema = rules_schema()
    Draft202012Validator.check_schema(schema)
    errors = list(Draft202012Validator(schema).iter_errors(_table(council)))
    assert errors == []


def test_the_schema_refuses_a_table_the_format_does_not_describe() -> None:
    validator = Draft202012Validator(rules_schema())
    table = _table("kirklees")
    table["decisions"][0]["lines"][0]["priority"] = 25
    table["roles"]["team_manager"]["seniority"] = 1
    messages = sorted(e.message for e in validator.iter_errors(table))
    assert any("25 is not one of" in m for m in messages), messages
    assert any("'seniority' was unexpected" in m for m in messages), messages


def _casbin_lines(text: str) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """The g pairs and p lines of a policy.csv, read here independently of remit."""
    g, p = [], []
    for raw in text.splitlines():
        tokens = [t.strip() for t in raw.split(",")]
        if tokens[0] == "g":
            g.append((tokens[1], tokens[2]))
        elif tokens[0] == "p":
            p.append(tokens[1:])
    return g, p


@pytest.mark.parametrize("council", COUNCILS)
def test_policy_csv_is_the_tables_export(council: str, policies: PolicySet) -> None:
    policy = policies.councils[council]
    text = (GENERATED / council / "policy.csv").read_text()
    assert policy.policy_text == text
    assert policy.model_text == MODEL_CONF
    g, p = _casbin_lines(text)
    assert g == list(policy.edges)
    # Casbin's order (a stable sort by priority) of each decision's p lines is the order of
    # the table's lines, field for field
    for did, decision in policy.decisions.items():
        mine = [x for x in p if x[0] == did]
        mine.sort(key=lambda x: int(x[5]))
        assert [
            [did, ln.role, ln.area, ln.cond_text, ln.effect, str(ln.priority), ln.rule]
            for ln in decision.lines
        ] == mine


@pytest.mark.parametrize("council", COUNCILS)
def test_the_tables_closure_is_the_transitive_closure_of_the_g_lines(council: str) -> None:
    g, _ = _casbin_lines((GENERATED / council / "policy.csv").read_text())
    table = _table(council)
    roles = list(table["roles"])
    inherits = {(s, j) for s, j in g}
    for k in roles:  # Warshall, computed here and nowhere in remit
        for i in roles:
            for j in roles:
                if (i, k) in inherits and (k, j) in inherits:
                    inherits.add((i, j))
    for rid, role in table["roles"].items():
        assert role["inherited_by"] == sorted(s for s, j in inherits if j == rid), rid


def _line(table: dict[str, Any], did: str, k: int = 0) -> dict[str, Any]:
    decision = next(d for d in table["decisions"] if d["id"] == did)
    line: dict[str, Any] = decision["lines"][k]
    return line


def _decision(table: dict[str, Any], did: str) -> dict[str, Any]:
    decision: dict[str, Any] = next(d for d in table["decisions"] if d["id"] == did)
    return decision


def _set(path: list[str | int], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(table: dict[str, Any]) -> None:
        node: Any = table
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return apply


def _drop(path: list[str | int]) -> Callable[[dict[str, Any]], None]:
    def apply(table: dict[str, Any]) -> None:
        node: Any = table
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return apply


def _s17_line(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(table: dict[str, Any]) -> None:
        line = next(ln for ln in _decision(table, "s17_payment")["lines"] if ln["rule"] == "2.4-tm")
        if field.startswith("term."):
            line["condition"]["terms"][0][field[5:]] = value
        elif field == "text":
            line["condition"]["text"] = value
        else:
            line[field] = value

    return apply


def _reverse_lines(table: dict[str, Any]) -> None:
    _decision(table, "apply_epo")["lines"].reverse()


def _drop_line(table: dict[str, Any]) -> None:
    _decision(table, "apply_epo")["lines"].pop()


def _cycle(table: dict[str, Any]) -> None:
    table["roles"]["director"]["inherited_by"] = ["social_worker"]


def _self_senior(table: dict[str, Any]) -> None:
    table["roles"]["director"]["inherited_by"] = ["director"]


def _exception_to_allow(table: dict[str, Any]) -> None:
    table["rules"]["2.4-tm"]["exception_to"] = "2.4-hos"  # an allow, not a prohibition


def _unsorted_edges(table: dict[str, Any]) -> None:
    table["edges"].reverse()


def _obligation_field(table: dict[str, Any]) -> None:
    rule = next(r for r in table["rules"].values() if r["obligations"])
    rule["obligations"][0]["due"] = "tomorrow"


def _audience(table: dict[str, Any]) -> None:
    next(iter(table["notifications"].values()))["audience"] = [{"role": "archmage"}]


def _implies(table: dict[str, Any]) -> None:
    next(d for d in table["decisions"] if d["implies"])["implies"] = ["a1_nope"]


def _unlisted_rule(table: dict[str, Any]) -> None:
    decision = _decision(table, "apply_epo")
    decision["rules"] = decision["rules"][:-1]


# (what is wrong, the change, the start of the message after "torbay/rules.json: ")
MALFORMED: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("format", _set(["format"], 2), "format 2"),
    ("council", _set(["council"], "halton"), "council 'halton' is another council"),
    ("no decisions", _drop(["decisions"]), "decisions: missing"),
    ("roles a list", _set(["roles"], []), "roles: expected an object"),
    ("role title type", _set(["roles", "director", "titles"], "Director"), "roles.director.titles"),
    ("role id", _set(["roles", "Director"], {}), "roles: id 'Director' is not a valid name"),
    ("rule id", _set(["rules", "a, b"], {}), "rules: rule id 'a, b'"),
    ("fact type", _set(["facts"], {"x": {"type": "date"}}), "facts.x.type"),
    ("term value type", _s17_line("term.value", "200000"), "decisions.s17_payment.lines"),
    ("term op", _s17_line("term.op", "=="), "decisions.s17_payment.lines"),
    ("term fact", _s17_line("term.fact", "moon_phase"), "decisions.s17_payment.lines"),
    ("text and terms", _s17_line("text", "amount_pence<=1"), "decisions.s17_payment.lines"),
    ("text grammar", _s17_line("text", "__import__('os')"), "decisions.s17_payment.lines"),
    ("line role", _s17_line("role", "archmage"), "decisions.s17_payment.lines"),
    ("line area", _s17_line("area", "atlantis"), "decisions.s17_payment.lines"),
    ("line priority", _s17_line("priority", 10), "decisions.s17_payment.lines"),
    ("line effect", _s17_line("effect", "deny"), "decisions.s17_payment.lines"),
    ("line position", _s17_line("position", -1), "decisions.s17_payment.lines"),
    ("lines order", _reverse_lines, "decisions.apply_epo.lines"),
    ("line missing", _drop_line, "decisions.apply_epo.lines: no line for rule"),
    ("rule not listed", _unlisted_rule, "decisions.apply_epo.lines"),
    ("closure cycle", _cycle, "roles."),
    ("own senior", _self_senior, "roles.director.inherited_by: the role is its own senior"),
    ("closure unknown", _set(["roles", "director", "inherited_by"], ["pope"]), "roles.director"),
    ("edges unsorted", _unsorted_edges, "edges: not sorted"),
    ("edge unknown", _set(["edges", 0], ["pope", "director"]), "edges[0]"),
    ("exception to an allow", _exception_to_allow, "rules."),
    ("obligation field", _obligation_field, "rules."),
    ("notification audience", _audience, "notifications."),
    ("implies", _implies, "decisions."),
    ("deviation role", _set(["deviation", "roles"], ["pope"]), "deviation.roles: unknown role"),
]


@pytest.mark.parametrize(
    ("change", "message"), [(c, m) for _, c, m in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_a_malformed_table_is_a_policy_error_naming_council_and_field(
    change: Callable[[dict[str, Any]], None], message: str
) -> None:
    table = _table("torbay")
    council_policy("torbay", copy.deepcopy(table))  # the unchanged table loads
    change(table)
    with pytest.raises(PolicyError) as info:
        council_policy("torbay", table)
    assert str(info.value).startswith(f"torbay/rules.json: {message}"), str(info.value)


def _paths(node: Any, here: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    out = [here] if here else []
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*here, key)))
    elif isinstance(node, list):
        for k, value in enumerate(node):
            out.extend(_paths(value, (*here, k)))
    return out


TORBAY_BYTES = (GENERATED / "torbay" / "rules.json").read_bytes()
TORBAY_PATHS = _paths(json.loads(TORBAY_BYTES))
JUNK = st.sampled_from([None, True, 0, -1, 10**30, "", "x", "*", [], [None], {}, {"x": 1}, 1.5])


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(TORBAY_PATHS), JUNK, st.booleans()), max_size=3))
def test_any_damage_to_a_table_is_refused_cleanly_or_harmless(
    damage: list[tuple[tuple[str | int, ...], Any, bool]],
) -> None:
    """Whatever is replaced or deleted, the loader answers with a PolicyError or a policy;
    never KeyError, TypeError, AttributeError... (those would be a crash at start or swap)."""
    table = json.loads(TORBAY_BYTES)  # a fresh copy (faster than deepcopy)
    for path, junk, delete in damage:
        node: Any = table
        try:
            for key in path[:-1]:
                node = node[key]
            if delete:
                del node[path[-1]]
            else:
                node[path[-1]] = junk
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    try:
        council_policy("torbay", table)
    except PolicyError as exc:
        message = str(exc)
    else:
        return
    assert re.match(r"torbay/rules\.json: \S", message), message


def test_load_files_refuses_an_export_or_model_that_is_not_the_tables() -> None:
    files, manifest = _files()
    load_files(files, manifest)
    edited = dict(files)
    edited["torbay/policy.csv"] = files["torbay/policy.csv"].replace(
        b"p, apply_epo, team_manager,", b"p, apply_epo, social_worker,"
    )
    with pytest.raises(PolicyError, match=r"torbay/policy.csv: not the export of"):
        load_files(edited, manifest)
    edited = dict(files, **{"model.conf": files["model.conf"].replace(b"|| deny", b"|| allow")})
    with pytest.raises(PolicyError, match=r"model.conf: missing or not remit's Casbin model"):
        load_files(edited, manifest)
    edited = {k: v for k, v in files.items() if k != "halton/rules.json"}
    with pytest.raises(PolicyError, match=r"halton: missing compiled file"):
        load_files(edited, manifest)
    with pytest.raises(PolicyError, match=r"not JSON"):
        load_files(dict(files, **{"halton/rules.json": b"[" * 100_000}), manifest)


def test_a_compiled_set_of_the_old_format_is_refused_with_what_to_do() -> None:
    files, manifest = _files()
    with pytest.raises(PolicyError, match=r"format 1, .*run `remit compile`"):
        load_files(files, dict(manifest, format=1))
