"""The decision log's canonical encoding: the fast field-by-field encoder of a decision entry
gives exactly the bytes of ``json.dumps(sort_keys=True)``, which every log so far was written
and hashed with, so old logs verify and new ones need no new encoding version; an entry of
any other shape or type is encoded by json.dumps itself."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from remit.audit.log import canonical, canonical_text

_TEXT = ("actor_id", "caller", "case_ref_hmac", "correlation_id", "council", "decision",
         "decision_id", "decision_time", "deviation_agreed_by", "effect", "hash", "matched_role",
         "policy_version", "prev_hash", "request_id", "rule_id", "section", "seq", "time",
         "writer")  # fmt: skip
_LISTS = ("actor_roles", "masked_fields", "obligations")
_BOOLS = ("deviation", "review", "time_claimed")


def reference(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict.fromkeys(_TEXT, "x")
    base.update({key: ["a", "b"] for key in _LISTS}, **dict.fromkeys(_BOOLS, False))
    base["latency_us"] = 12
    base.update(changes)
    return base


# every character json escapes, and beyond the BMP
_ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    texts=st.fixed_dictionaries({k: _ANY_TEXT for k in _TEXT}),
    lists=st.fixed_dictionaries({k: st.lists(_ANY_TEXT, max_size=3) for k in _LISTS}),
    bools=st.fixed_dictionaries({k: st.booleans() for k in _BOOLS}),
    latency=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_a_decision_entry_encodes_as_json_dumps_sorted(
    texts: dict[str, str], lists: dict[str, list[str]], bools: dict[str, bool], latency: int
) -> None:
    e = {**texts, **lists, **bools, "latency_us": latency}
    assert canonical_text(e) == reference(e)
    assert canonical(e) == reference(e).encode()


def test_quotes_backslashes_controls_and_non_ascii_are_escaped_as_json_does() -> None:
    e = entry(caller='a"b\\c\n\x00\x1f\u2028é☃😀', actor_roles=['"', "\t"])
    assert canonical_text(e) == reference(e)


def test_another_shape_or_type_is_encoded_by_json_dumps() -> None:
    missing = entry()
    del missing["writer"]
    extra = entry(anchor={"final": True})
    del extra["writer"]  # 27 keys again, but not the decision's
    for e in (
        missing,
        extra,
        entry(latency_us=True),
        entry(latency_us=1.5),
        entry(deviation=1),
        entry(review=None),
        entry(actor_roles="ab"),
        entry(actor_roles=("a", "b")),
        entry(obligations=[1, 2]),
        entry(seq=12),
        {"seq": "1", "anchor": {"signature": "", "witnessed": []}},
    ):
        assert canonical_text(e) == reference(e)
