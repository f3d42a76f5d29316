"""A decision-log entry: its fields (built from the core's outcome), its canonical bytes and
hash, the writer id that names its chain, and the keyed pseudonym of its case reference."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json import encoder as _json_encoder
from typing import Any

from google.protobuf import json_format

from remit.audit.v1 import audit_pb2
from remit.engine.authorise import Outcome
from remit.v1 import remit_pb2 as pb

log = logging.getLogger("remit.audit")


GENESIS = "0" * 64
_WRITERS = itertools.count()


def writer_id(name: str = "", worker: int = -1) -> str:
    """A stable id for this process's chain: ``NAME[/wN]/PID/START`` with NAME the configured
    replica name (REMIT_AUDIT_WRITER) or the host name, N the worker index under ``--workers``,
    and START the process's start in unix milliseconds, so a restarted process (same pid,
    other start) begins a new chain instead of forking the old one."""
    base = (name or socket.gethostname() or "remit").replace("/", "_")
    worker_part = f"/w{worker}" if worker >= 0 else ""
    n = next(_WRITERS)  # a second log in one process (tests, tools) is another writer
    again = f"-{n}" if n else ""
    return f"{base}{worker_part}/{os.getpid()}/{int(time.time() * 1000)}{again}"


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes an entry is logged and hashed as: compact JSON, keys sorted, UTF-8."""
    return canonical_text(entry).encode()


def canonical_text(entry: dict[str, Any]) -> str:
    """``canonical`` as text: ``json.dumps(entry, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)``, character for character, so every log ever written verifies as
    before and the encoding needs no new version. A decision entry (:func:`build_entry`,
    the one written per answer) is encoded field by field in its fixed (sorted) order, each
    string by json's own escaper, at a third of the cost; any other entry (anchors, gaps,
    an entry of another shape or with a value of another type) goes through json.dumps.
    ``tests/unit/test_audit_encoding.py`` checks the two agree."""
    if len(entry) == _DECISION_FIELDS:
        try:
            return _decision_text(entry)
        except (KeyError, TypeError):
            pass  # not the decision shape: json.dumps encodes whatever it is
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_s: Any = _json_encoder.encode_basestring  # the escaper json.dumps(ensure_ascii=False) uses
_BOOL = ("false", "true")
_DECISION_FIELDS = 27


def _strs(values: Any) -> str:
    if type(values) is not list and type(values) is not tuple:
        raise TypeError(type(values).__name__)
    return "[" + ",".join(map(_s, values)) + "]"


def _decision_text(e: dict[str, Any]) -> str:
    """A decision entry's 27 fields in sorted order (KeyError / TypeError otherwise)."""
    latency, deviation, review, claimed = (
        e["latency_us"],
        e["deviation"],
        e["review"],
        e["time_claimed"],
    )
    if type(latency) is not int or not type(deviation) is type(review) is type(claimed) is bool:
        raise TypeError("latency_us, deviation, review or time_claimed")
    s = _s
    return (
        f'{{"actor_id":{s(e["actor_id"])},"actor_roles":{_strs(e["actor_roles"])},'
        f'"caller":{s(e["caller"])},"case_ref_hmac":{s(e["case_ref_hmac"])},'
        f'"correlation_id":{s(e["correlation_id"])},"council":{s(e["council"])},'
        f'"decision":{s(e["decision"])},"decision_id":{s(e["decision_id"])},'
        f'"decision_time":{s(e["decision_time"])},"deviation":{_BOOL[deviation]},'
        f'"deviation_agreed_by":{s(e["deviation_agreed_by"])},"effect":{s(e["effect"])},'
        f'"hash":{s(e["hash"])},"latency_us":{latency},'
        f'"masked_fields":{_strs(e["masked_fields"])},"matched_role":{s(e["matched_role"])},'
        f'"obligations":{_strs(e["obligations"])},"policy_version":{s(e["policy_version"])},'
        f'"prev_hash":{s(e["prev_hash"])},"request_id":{s(e["request_id"])},'
        f'"review":{_BOOL[review]},"rule_id":{s(e["rule_id"])},"section":{s(e["section"])},'
        f'"seq":{s(e["seq"])},"time":{s(e["time"])},"time_claimed":{_BOOL[claimed]},'
        f'"writer":{s(e["writer"])}}}'
    )


def entry_hash(entry: dict[str, Any]) -> str:
    body = dict(entry, hash="")
    return hashlib.sha256(canonical(body)).hexdigest()


def to_dict(msg: audit_pb2.DecisionLogEntry) -> dict[str, Any]:
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


class Pseudonymiser:
    """Keyed HMAC of case references: the same case gives the same token under one key.
    Without a key, a random one for this process (``ephemeral``): tokens then link only
    within the process's life (``remit serve`` says so at start, see ``key_notice``)."""

    def __init__(self, key: bytes | None) -> None:
        self.ephemeral = key is None
        self._key = secrets.token_bytes(32) if key is None else key

    def __call__(self, council: str, case_reference: str) -> str:
        if not case_reference:
            return ""
        mac = hmac.new(self._key, f"{council}\x00{case_reference}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]


@dataclass(frozen=True)
class CallInfo:
    """The call a decision answered, as the server saw it: never the request's content.

    ``caller`` is the caller's identity (mTLS or dev token; ``anonymous`` on open access),
    ``seconds`` the server's time answering this one decision, ``correlation_id`` the batch
    or stream item's, ``case_reference`` as sent (the entry keeps only its keyed HMAC) and
    ``masked_fields`` the request fields the entry does not keep as given."""

    caller: str
    seconds: float = 0.0
    correlation_id: str = ""
    case_reference: str = ""
    masked_fields: tuple[str, ...] = ()


_OBLIGATION_KIND_NAMES = frozenset(pb.ObligationKind.keys())


def obligation_kind_name(kind: str) -> str:
    """The ``ObligationKind`` enum name of an obligation kind (UNSPECIFIED if unknown)."""
    name = f"OBLIGATION_KIND_{kind.upper()}"
    return name if name in _OBLIGATION_KIND_NAMES else "OBLIGATION_KIND_UNSPECIFIED"


# A decision time further than this from the server's clock was claimed by the request (a
# retrospective decision): the entry keeps both times and is flagged for review.
CLAIMED_TOLERANCE = timedelta(minutes=5)


def build_entry(outcome: Outcome, call: CallInfo, pseudonymise: Pseudonymiser) -> dict[str, Any]:
    """The log entry for one answered decision (without its place in a chain), built from
    the core's outcome and the call, as the proto3 JSON mapping of ``DecisionLogEntry``
    with every field present (uint64 ``seq`` as a string). Built directly rather than
    through json_format, which costs more than the decision; ``to_entry`` parses it back
    into the message and the tests check the two agree."""
    req, answer = outcome.request, outcome.answer
    clock = datetime.now(UTC)
    claimed = abs(outcome.decided_at - clock) > CLAIMED_TOLERANCE
    # the request as decided: with host records, the actor the records settle
    return {
        "seq": "0",
        "prev_hash": "",
        "hash": "",
        "decision_id": answer.decision_id,
        "time": _rfc3339(clock),
        "caller": call.caller,
        "council": answer.council,
        "decision": answer.decision,
        "actor_id": req.actor.id,
        "actor_roles": [*req.actor.roles, *req.actor.acting_for],
        "matched_role": answer.matched_role,
        "case_ref_hmac": pseudonymise(answer.council, call.case_reference),
        "effect": "EFFECT_ALLOW" if answer.allowed else "EFFECT_DENY",
        "rule_id": answer.rule,
        "section": answer.citation.section if answer.citation is not None else "",
        "obligations": [obligation_kind_name(o.kind) for o in answer.obligations],
        "policy_version": answer.policy_version,
        "latency_us": min(max(int(call.seconds * 1e6), 0), 2**32 - 1),
        "masked_fields": list(call.masked_fields),
        "deviation": answer.deviation,
        "deviation_agreed_by": (
            req.deviation.agreed_by_id if answer.deviation and req.deviation is not None else ""
        ),
        "review": answer.deviation or claimed,
        "request_id": req.request_id,
        "correlation_id": call.correlation_id,
        "decision_time": _rfc3339(outcome.decided_at),
        "time_claimed": claimed,
        "writer": "",
    }


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_entry(data: dict[str, Any]) -> audit_pb2.DecisionLogEntry:
    """A logged entry as the ``remit.audit.v1.DecisionLogEntry`` message."""
    return json_format.ParseDict(data, audit_pb2.DecisionLogEntry())


def parse_lines(texts: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, parsed entry or None, raw text) for each logged line."""
    for n, text in enumerate(texts, 1):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        yield n, value if isinstance(value, dict) else None, text
