"""The decision log: one ``remit.audit.v1.DecisionLogEntry`` per answered decision.

An entry records who asked, which council and decision, the actor's opaque id and roles,
a keyed HMAC of the case reference, the effect, the deciding rule, the obligation kinds,
the policy version and the latency. It never records context facts, names, dates of birth
or free text; ``masked_fields`` lists what the request carried that was not logged as given.

Every writer (one process: a replica's worker, :func:`writer_id`) keeps its own hash chain
(see audit.proto), so several writers may share one file or Redis stream, their lines
interleaved, and ``remit audit verify`` can still show, per writer, years later, that no
entry was edited, dropped or inserted.

Sinks: :class:`StreamSink` (JSON lines to stdout, the default), :class:`FileSink`
(append-only file, fsync'd), :class:`RedisStreamSink` (XADD to a Redis Stream).
Durability (:class:`AuditLog`): ``strict`` writes before the answer is returned (a sink
failure fails the call, never returns an unlogged decision); ``best-effort`` queues to a
bounded buffer written by a background thread, and counts every drop.

Exceptions: :class:`AuditUnavailable` (strict mode, the sink refused an entry).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import os
import queue
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json import encoder as _json_encoder
from pathlib import Path
from typing import Any, Protocol, TextIO

from cryptography.hazmat.primitives import serialization
from google.protobuf import json_format

from remit.audit.v1 import audit_pb2
from remit.distribution.signing import Signer, Verifier
from remit.engine.authorise import Outcome
from remit.model.errors import PolicyError
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


def key_id(public_pem: bytes) -> str:
    """First 16 hex characters of the SHA-256 of an Ed25519 public key's raw bytes."""
    key = serialization.load_pem_public_key(public_pem)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class AnchorSigner:
    """Signs a writer's anchors with the log's Ed25519 private key (PEM)."""

    def __init__(self, private_pem: bytes) -> None:
        self._signer = Signer(private_pem)
        private = serialization.load_pem_private_key(private_pem, password=None)
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = key_id(public)

    @classmethod
    def from_file(cls, path: Path) -> AnchorSigner:
        return cls(path.read_bytes())

    def sign(self, anchor_entry: dict[str, Any]) -> str:
        """The base64 signature of an anchor line (its ``hash`` and ``signature`` unset)."""
        return base64.b64encode(self._signer.sign(_signed_bytes(anchor_entry))).decode()


class AnchorVerifier:
    """Checks anchors against the log's Ed25519 public key (PEM)."""

    def __init__(self, public_pem: bytes) -> None:
        self._verifier = Verifier(public_pem)
        self.key_id = key_id(public_pem)

    @classmethod
    def from_file(cls, path: Path) -> AnchorVerifier:
        return cls(path.read_bytes())

    def problem(self, anchor_entry: dict[str, Any]) -> str:
        """What is wrong with an anchor's signature ("" if it verifies)."""
        anchor = anchor_entry.get("anchor")
        if not isinstance(anchor, dict):
            return "anchor is not an object"
        if anchor.get("key_id") != self.key_id:
            return f"anchor signed by another key (key_id {str(anchor.get('key_id'))[:16]!r})"
        try:
            signature = base64.b64decode(str(anchor.get("signature", "")), validate=True)
            self._verifier.verify(_signed_bytes(anchor_entry), signature)
        except (ValueError, PolicyError):
            return (
                "anchor signature does not verify: the entries before it were edited and "
                "re-chained, or the anchor was forged"
            )
        return ""


def _signed_bytes(anchor_entry: dict[str, Any]) -> bytes:
    anchor = dict(anchor_entry["anchor"], signature="")
    return canonical(dict(anchor_entry, hash="", anchor=anchor))


class AuditUnavailable(Exception):
    """Strict mode: the sink did not accept an entry, so no decision may be returned."""


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


class Sink(Protocol):
    """Appends chained entries. ``last()`` gives (seq, hash) to continue a chain."""

    def last(self) -> tuple[int, str]: ...

    def append(self, line: str) -> None: ...

    def close(self) -> None: ...


class StreamSink:
    """JSON lines to a text stream (stdout by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def last(self) -> tuple[int, str]:
        return 0, GENESIS

    def append(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def append_many(self, lines: list[str]) -> None:
        """Several lines in one write and one flush."""
        self._stream.write("".join(line + "\n" for line in lines))
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


class FileSink:
    """An append-only file; every entry is flushed and fsync'd before ``append`` returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def last(self) -> tuple[int, str]:
        """(seq, hash) of the last entry, read from the file's tail: start-up costs the same
        for a million-line log as for an empty one."""
        entry = last_entry(self.path)
        if entry is None:
            return 0, GENESIS
        return int(entry.get("seq", 0)), str(entry.get("hash", ""))

    def append(self, line: str) -> None:
        self.append_many([line])

    def append_many(self, lines: list[str]) -> None:
        """Several lines in one write and one fsync (a group commit)."""
        data = "".join(line + "\n" for line in lines).encode()
        view = memoryview(data)
        while view:  # a regular file takes it all at once; a short write is continued
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def recent_anchors(self, limit: int = 1 << 20) -> dict[str, tuple[int, str]]:
        """Each writer's latest anchor (seq, hash) in the file's last ``limit`` bytes."""
        with self.path.open("rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, end - limit))
            tail = fh.read()
        return _latest_anchors(tail.decode("utf-8", errors="replace").splitlines()[::-1])

    def close(self) -> None:
        os.close(self._fd)


class RedisStreamSink:
    """XADD to a Redis Stream; the reply is the acceptance."""

    def __init__(self, url: str, stream: str = "remit:audit") -> None:
        import redis

        self._r = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.stream = stream

    def last(self) -> tuple[int, str]:
        rows = self._r.xrevrange(self.stream, count=1)
        if not rows:
            return 0, GENESIS
        entry = json.loads(rows[0][1][b"entry"])  # type: ignore[index]
        return int(entry["seq"]), str(entry["hash"])

    def append(self, line: str) -> None:
        self._r.xadd(self.stream, {"entry": line})

    def append_many(self, lines: list[str]) -> None:
        """Several XADDs in one pipelined round trip (MULTI/EXEC: all or none)."""
        pipe = self._r.pipeline(transaction=True)
        for line in lines:
            pipe.xadd(self.stream, {"entry": line})
        pipe.execute()

    def recent_anchors(self, limit: int = 5000) -> dict[str, tuple[int, str]]:
        """Each writer's latest anchor (seq, hash) in the stream's last ``limit`` entries."""
        rows: list[tuple[bytes, dict[bytes, bytes]]] = self._r.xrevrange(  # type: ignore[assignment]
            self.stream, count=limit
        )
        return _latest_anchors(fields[b"entry"].decode() for _, fields in rows)

    def entries(self) -> Iterator[str]:
        rows: list[tuple[bytes, dict[bytes, bytes]]] = self._r.xrange(self.stream)  # type: ignore[assignment]
        for _, fields in rows:
            yield fields[b"entry"].decode()

    def close(self) -> None:
        self._r.close()


def _latest_anchors(newest_first: Iterable[str]) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for text in newest_first:
        if '"anchor":' not in text:
            continue
        for _, entry, _ in parse_lines([text]):
            if entry is not None and isinstance(entry.get("anchor"), dict):
                writer = str(entry.get("writer", ""))
                if writer not in found:
                    found[writer] = (int(entry.get("seq", 0)), str(entry.get("hash", "")))
    return found


@dataclass
class AuditStats:
    written: int = 0
    dropped: int = 0
    failed: int = 0
    groups: int = 0  # sink writes (each one fsync for a file): entries / groups = group size


@dataclass
class _Ticket:
    """One caller's entries waiting for a strict group commit."""

    entries: list[dict[str, Any]]
    done: bool = False
    error: BaseException | None = None


class AuditLog:
    """Chains entries and writes them to one sink in the declared durability mode."""

    def __init__(
        self,
        sink: Sink,
        mode: str = "strict",
        pseudonymiser: Pseudonymiser | None = None,
        buffer: int = 10_000,
        writer: str | None = None,
        signer: AnchorSigner | None = None,
        anchor_seconds: float = 60.0,
        group_window: float = 0.0,
    ) -> None:
        if mode not in ("strict", "best-effort"):
            raise ValueError(f"audit mode {mode!r}: strict or best-effort")
        self.sink = sink
        self.mode = mode
        self.pseudonymise = pseudonymiser or Pseudonymiser(None)
        self.stats = AuditStats()
        self._lock = threading.Lock()
        # each process is its own writer with its own chain, from seq 1: a writer never
        # continues another's chain (which is what made interleaved writers unverifiable)
        self.writer = writer if writer is not None else writer_id()
        self._seq, self._prev = 0, GENESIS
        self.signer = signer
        self.anchor_seconds = anchor_seconds
        # (seq, unix time) of this writer's last anchor: health detail and metrics
        self.last_anchor: tuple[int, float] = (0, 0.0)
        self._closed = False
        self._stop_anchors = threading.Event()
        self._anchors: threading.Thread | None = None
        if signer is not None:
            try:
                self.write_anchor()  # the chain starts signed, naming the writers before it
            except Exception as exc:
                raise OSError(
                    f"decision log: cannot write the start anchor ({type(exc).__name__})"
                ) from exc
            self._anchors = threading.Thread(
                target=self._anchor_loop, name="remit-audit-anchor", daemon=True
            )
            self._anchors.start()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(buffer)
        # strict group commit: callers queue tickets; one of them (the leader) writes every
        # ticket waiting, after ``group_window`` seconds, in one sink write, and wakes the rest
        self.group_window = group_window
        self._group = threading.Condition()
        self._pending: list[_Ticket] = []
        self._leading = False
        # best-effort: entries lost (buffer full, sink failing) not yet recorded as a gap
        self._gap: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None
        if mode == "best-effort":
            self._thread = threading.Thread(target=self._drain, name="remit-audit", daemon=True)
            self._thread.start()

    def _chain_and_write(self, entries: list[dict[str, Any]]) -> None:
        """Chain ``entries`` onto this writer's head and write them in one sink write; the
        head moves only once the sink has accepted them all."""
        with self._lock:
            seq, prev, lines = self._seq, self._prev, []
            for entry in entries:
                seq += 1
                entry["seq"], entry["prev_hash"], entry["hash"] = str(seq), prev, ""
                entry["writer"] = self.writer
                body = canonical_text(entry)  # with "hash":"" — what the hash covers
                prev = hashlib.sha256(body.encode()).hexdigest()
                # keys are sorted and quotes inside values are escaped, so this is the hash key
                lines.append(body.replace('"hash":""', f'"hash":"{prev}"', 1))
                entry["hash"] = prev
            append_many = getattr(self.sink, "append_many", None)
            if append_many is not None:
                append_many(lines)
            else:
                for line in lines:
                    self.sink.append(line)
            self._seq, self._prev = seq, prev
            self.stats.written += len(lines)
            self.stats.groups += 1

    def write_anchor(self, final: bool = False) -> None:
        """Write a signed anchor of this writer's head now (``final``: the closing one)."""
        if self.signer is None:
            return
        peers = self.sink.recent_anchors() if hasattr(self.sink, "recent_anchors") else {}
        with self._lock:
            seq = self._seq + 1
            witnessed = [
                {"writer": name, "seq": str(s), "hash": h}
                for name, (s, h) in sorted(peers.items())
                if name != self.writer
            ]
            entry: dict[str, Any] = {
                "seq": str(seq),
                "prev_hash": self._prev,
                "hash": "",
                "writer": self.writer,
                "time": _rfc3339(datetime.now(UTC)),
                "anchor": {
                    "final": final,
                    "witnessed": witnessed,
                    "key_id": self.signer.key_id,
                    "signature": "",
                },
            }
            entry["anchor"]["signature"] = self.signer.sign(entry)
            entry["hash"] = entry_hash(entry)
            self.sink.append(canonical(entry).decode())
            self._seq, self._prev = seq, entry["hash"]
            self.last_anchor = (seq, time.time())

    def _anchor_loop(self) -> None:
        """Every ``anchor_seconds``: an anchor, when the chain has grown since the last."""
        while not self._stop_anchors.wait(self.anchor_seconds):
            if self._seq == self.last_anchor[0]:
                continue
            try:
                self.write_anchor()
            except Exception as exc:
                log.error(
                    "audit anchor not written (%s); next try in %.0fs",
                    type(exc).__name__,
                    self.anchor_seconds,
                )

    def write_decision(self, outcome: Outcome, call: CallInfo) -> None:
        """Log one answered decision: :meth:`write_decisions` of one."""
        self.write_decisions([(outcome, call)])

    def write_decisions(self, decided: Sequence[tuple[Outcome, CallInfo]]) -> None:
        """Log answered decisions (a batch, a stream message, or one call). Strict: written
        (and for a file, fsync'd) before this returns, in one group with whatever other
        callers are waiting, else :class:`AuditUnavailable` for all of them (none of the
        answers may be returned); best-effort: queued, and a full queue counts drops that
        the log itself then records in a gap entry."""
        entries = [build_entry(outcome, call, self.pseudonymise) for outcome, call in decided]
        if not entries:
            return
        if self.mode == "strict":
            self._commit(entries)
            return
        for entry in entries:
            try:
                self._queue.put_nowait(entry)
            except queue.Full:
                self._lost(1)

    def _commit(self, entries: list[dict[str, Any]]) -> None:
        """Strict group commit: wait until ``entries`` are durable, leading the group when
        no one else is writing."""
        ticket = _Ticket(entries)
        with self._group:
            self._pending.append(ticket)
            while self._leading and not ticket.done:
                self._group.wait()
            lead = not ticket.done
            if lead:
                self._leading = True
        if lead:
            if self.group_window > 0:
                time.sleep(self.group_window)  # let concurrent calls join this group
            with self._group:
                group, self._pending = self._pending, []
            error: BaseException | None = None
            try:
                self._chain_and_write([e for t in group for e in t.entries])
            except Exception as exc:
                error = exc
            with self._group:
                for t in group:
                    t.done, t.error = True, error
                self._leading = False
                self._group.notify_all()
        if ticket.error is not None:
            with self._lock:
                self.stats.failed += len(entries)
            log.error(
                "audit sink refused an entry (%s): no decision returned",
                type(ticket.error).__name__,
            )
            raise AuditUnavailable(
                "decision log unavailable; no decision was returned"
            ) from ticket.error

    def _lost(self, count: int) -> None:
        """Best-effort: ``count`` entries will never be written; count them for the stats
        and for the next gap entry."""
        now = _rfc3339(datetime.now(UTC))
        with self._lock:
            self.stats.dropped += count
            dropped = self.stats.dropped
            if self._gap is None:
                self._gap = {"dropped": 0, "first": now}
            self._gap["dropped"] += count
            self._gap["last"] = now
        if dropped == count or dropped // 1000 != (dropped - count) // 1000:
            log.warning("audit entries dropped: %d so far, recorded as gap entries", dropped)

    def _take_gap(self) -> dict[str, Any] | None:
        """The gap entry for the entries lost since the last one (None if none were)."""
        with self._lock:
            gap, self._gap = self._gap, None
        if gap is None:
            return None
        return {
            "seq": "0",
            "prev_hash": "",
            "hash": "",
            "writer": "",
            "time": _rfc3339(datetime.now(UTC)),
            "gap": {"dropped": str(gap["dropped"]), "first": gap["first"], "last": gap["last"]},
        }

    def _write_best_effort(self, entries: list[dict[str, Any]]) -> None:
        """One group: a gap entry first when entries were lost since the last group."""
        gap = self._take_gap()
        group = [gap, *entries] if gap is not None else entries
        try:
            self._chain_and_write(group)
        except Exception as exc:
            log.error("audit sink failed (%s): entries dropped and counted", type(exc).__name__)
            with self._lock:  # the gap not written is still owed, with these entries
                if gap is not None:
                    owed = self._gap or {"dropped": 0, "last": gap["gap"]["last"]}
                    owed["dropped"] += int(gap["gap"]["dropped"])
                    owed["first"] = gap["gap"]["first"]
                    self._gap = owed
            if entries:
                self._lost(len(entries))

    def _drain(self) -> None:
        """Best-effort writer: everything queued so far (up to 1,000 entries) per group."""
        while True:
            item = self._queue.get()
            stop, entries = item is None, [] if item is None else [item]
            while not stop and len(entries) < 1000:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    entries.append(item)
            if entries:
                self._write_best_effort(entries)
            if stop:
                return

    def flush(self, timeout: float = 10.0) -> None:
        """Write everything queued (best-effort), the closing anchor (when anchors are
        signed), and close the sink. Once only."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
            if self._gap is not None:
                self._write_best_effort([])  # the last drops, recorded before closing
        if self._anchors is not None:
            self._stop_anchors.set()
            self._anchors.join(timeout)
            try:
                self.write_anchor(final=True)
            except Exception as exc:
                log.error("audit closing anchor not written (%s)", type(exc).__name__)
        self.sink.close()


def parse_lines(texts: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, parsed entry or None, raw text) for each logged line."""
    for n, text in enumerate(texts, 1):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        yield n, value if isinstance(value, dict) else None, text


def last_entry(path: Path, block: int = 1 << 16) -> dict[str, Any] | None:
    """The last line of a log file that parses as an entry, reading backwards from the end
    in blocks (a torn last line, from a crash mid-write, is passed over as the full scan
    would); None for an empty file or one with no entry."""
    with path.open("rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        tail = b""
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            tail = fh.read(end - start) + tail
            end = start
            lines = tail.split(b"\n")
            # the first piece may be a partial line unless the whole file has been read
            whole = lines if start == 0 else lines[1:]
            for raw in reversed(whole):
                for _, entry, _ in parse_lines([raw.decode("utf-8", errors="replace")]):
                    if entry is not None:
                        return entry
            tail = lines[0] if start > 0 else b""
    return None


def read_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """``parse_lines`` over a log file."""
    with path.open("rb") as fh:
        yield from parse_lines(raw.decode("utf-8", errors="replace").rstrip("\n") for raw in fh)


@dataclass
class WriterReport:
    """One writer's chain as verified: its entries, the lines of its first and last entry,
    its last seq and hash, its anchors (the last one's line and seq, whether the writer
    closed its chain); ``problem`` and ``line`` give its first problem ("" if none)."""

    writer: str
    entries: int = 0
    first_line: int = 0
    last_line: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    gaps: int = 0
    dropped: int = 0  # entries the writer lost (best-effort), as its gap entries count them
    anchors: int = 0
    anchor_line: int = 0
    anchor_seq: int = 0
    closed: bool = False
    line: int = 0
    problem: str = ""

    @property
    def unanchored(self) -> int:
        """Entries after the writer's last anchor."""
        return self.last_seq - self.anchor_seq


@dataclass(frozen=True)
class VerifyResult:
    """The whole log: ``ok`` when every writer's chain is intact (and, given the public key,
    anchored). ``line`` and ``problem`` are the log's first problem (a line that is not an
    entry, or the earliest writer's problem); ``writers`` reports each writer, in order of
    first appearance (a missing writer last); ``anchors_checked`` says whether signatures,
    closing anchors and witnesses were checked."""

    ok: bool
    entries: int
    line: int = 0
    problem: str = ""
    writers: tuple[WriterReport, ...] = ()
    anchors_checked: bool = False


@dataclass(frozen=True)
class _Witness:
    by: str
    line: int
    writer: str
    seq: int
    hash: str


def verify_lines(
    lines: Iterator[tuple[int, dict[str, Any] | None, str]],
    anchors: AnchorVerifier | None = None,
    allow_open: bool = False,
) -> VerifyResult:
    """Check every writer's chain in an interleaved log: every line parses, every entry
    hashes to itself, links to its writer's entry before it, and no writer's sequence
    number is missing. A line that is not an entry stops the check (its writer cannot be
    known); a problem stops that writer's check, the others go on.

    Given ``anchors`` (the public key) it also checks that every anchor's signature
    verifies (an edit re-chained through an anchor cannot re-sign it), that every writer
    ends with its closing anchor (a cut tail takes it away; ``allow_open`` accepts writers
    still running or killed, reporting their unanchored entries), and that every writer
    another writer's anchor witnessed is present up to the witnessed anchor (a writer
    removed whole, or cut below what a peer saw)."""
    writers: dict[str, WriterReport] = {}
    anchor_hashes: dict[tuple[str, int], str] = {}
    witnesses: list[_Witness] = []
    count = 0
    for n, entry, _ in lines:
        if entry is None:
            return _result(writers, count, n, "not a JSON log entry (truncated or edited)")
        name = str(entry.get("writer", ""))
        w = writers.get(name)
        if w is None:
            w = writers[name] = WriterReport(name, first_line=n)
        if w.problem:
            continue
        problem = _link_problem(entry, w)
        anchor = entry.get("anchor")
        if not problem and w.closed:
            problem = "entry after the writer's closing anchor"
        if not problem and anchor is not None and anchors is not None:
            problem = anchors.problem(entry)
        if problem:
            w.line, w.problem = n, problem
            continue
        w.entries, w.last_line, w.last_seq = w.entries + 1, n, int(entry.get("seq", 0))
        w.last_hash = str(entry["hash"])
        gap = entry.get("gap")
        if isinstance(gap, dict):
            w.gaps, w.dropped = w.gaps + 1, w.dropped + max(_int(gap.get("dropped")), 0)
        if isinstance(anchor, dict):
            w.anchors, w.anchor_line, w.anchor_seq = w.anchors + 1, n, w.last_seq
            w.closed = anchor.get("final") is True
            anchor_hashes[(name, w.last_seq)] = w.last_hash
            for seen in anchor.get("witnessed") or ():
                if isinstance(seen, dict):
                    witnesses.append(
                        _Witness(
                            name,
                            n,
                            str(seen.get("writer", "")),
                            _int(seen.get("seq")),
                            str(seen.get("hash", "")),
                        )
                    )
        count += 1
    if anchors is not None:
        _check_anchoring(writers, anchor_hashes, witnesses, allow_open)
    return _result(writers, count, anchors_checked=anchors is not None)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _check_anchoring(
    writers: dict[str, WriterReport],
    anchor_hashes: dict[tuple[str, int], str],
    witnesses: list[_Witness],
    allow_open: bool,
) -> None:
    """The checks that need the whole log: closing anchors and witnessed writers."""
    for seen in witnesses:
        w = writers.get(seen.writer)
        where = f"at seq {seen.seq} by writer {seen.by}'s anchor on line {seen.line}"
        if w is None:
            writers[seen.writer] = WriterReport(
                seen.writer,
                line=seen.line,
                problem=f"writer missing: witnessed {where}, but none of its lines are in the log",
            )
        elif w.problem or anchor_hashes.get((seen.writer, seen.seq)) == seen.hash:
            continue  # already reported, or the witnessed anchor is there as seen
        elif w.last_seq < seen.seq:
            w.line, w.problem = (
                w.last_line,
                (
                    f"cut: its chain ends at seq {w.last_seq} (line {w.last_line}) but it was "
                    f"witnessed {where}"
                ),
            )
        else:
            w.line, w.problem = (
                w.last_line,
                (
                    f"its anchor at seq {seen.seq} is not the one witnessed {where}: edited "
                    "and re-chained"
                ),
            )
    for w in writers.values():
        if w.problem or w.closed or allow_open:
            continue
        if not w.anchors:
            w.line, w.problem = w.last_line, "no anchor: the chain was never signed"
        else:
            w.line, w.problem = (
                w.last_line,
                (
                    f"no closing anchor: {w.unanchored} entries after its last anchor (line "
                    f"{w.anchor_line}, seq {w.anchor_seq}), to seq {w.last_seq} on line "
                    f"{w.last_line}; the log was cut there, or the writer is still running or "
                    "was killed"
                ),
            )


def _link_problem(entry: dict[str, Any], w: WriterReport) -> str:
    """What is wrong with ``entry`` as the next link of writer ``w``'s chain ("" if none)."""
    if entry.get("hash") != entry_hash(entry):
        return "entry was edited: its hash does not match"
    try:
        seq = int(entry.get("seq", 0))
    except (TypeError, ValueError):
        return "entry was edited: seq is not a number"
    if seq != w.last_seq + 1:
        return f"missing link: seq {seq} follows {w.last_seq}"
    if entry.get("prev_hash") != w.last_hash:
        return "broken link: prev_hash is not the previous entry's hash"
    return ""


def _result(
    writers: dict[str, WriterReport],
    count: int,
    line: int = 0,
    problem: str = "",
    anchors_checked: bool = False,
) -> VerifyResult:
    reports = tuple(writers.values())
    if not problem:
        broken = [w for w in reports if w.problem]
        if broken:
            first = min(broken, key=lambda w: w.line)
            who = f" (writer {first.writer})" if first.writer else ""
            line, problem = first.line, f"{first.problem}{who}"
    return VerifyResult(not problem, count, line, problem, reports, anchors_checked)


def sink_from_spec(spec: str) -> Sink:
    """``stdout`` | ``file:PATH`` | ``redis:URL`` (stream key remit:audit, or URL#stream)."""
    if spec in ("", "stdout"):
        return StreamSink()
    if spec.startswith("file:"):
        return FileSink(Path(spec.removeprefix("file:")))
    if spec.startswith("redis:") or spec.startswith("rediss:"):
        url, _, stream = spec.partition("#")
        url = url.removeprefix("redis:") if url.startswith("redis:redis") else url
        return RedisStreamSink(url, stream or "remit:audit")
    raise ValueError(f"audit sink {spec!r}: stdout, file:PATH or redis:URL")
