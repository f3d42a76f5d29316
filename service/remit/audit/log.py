"""The decision log: one ``remit.audit.v1.DecisionLogEntry`` per answered decision.

An entry records who asked, which council and decision, the actor's opaque id and roles,
a keyed HMAC of the case reference, the effect, the deciding rule, the obligation kinds,
the policy version and the latency. It never records context facts, names, dates of birth
or free text; ``masked_fields`` lists what the request carried that was not logged as given.

Every writer (one process: a replica's worker, :func:`writer_id`) keeps its own hash chain
(see audit.proto), so several writers may share one file or Redis stream, their lines
interleaved, and ``remit audit verify`` can still show, per writer, years later, that no
entry was edited, dropped or inserted.

This module gathers the package's parts under their old names: ``entry`` (fields, hash,
writer id, pseudonym), ``anchors``, ``writer`` (:class:`AuditLog`), ``verify``, ``query`` and
``report``, ``watermark``, and ``sinks/``: :class:`StreamSink` (JSON lines to stdout, the
default), :class:`FileSink` (append-only file, fsync'd, optionally rotated),
:class:`RedisStreamSink` (XADD to a Redis Stream), ``PostgresSink`` (a table).
Durability (:class:`AuditLog`): ``strict`` writes before the answer is returned (a sink
failure fails the call, never returns an unlogged decision); ``best-effort`` queues to a
bounded buffer written by a background thread, and counts every drop.

Exceptions: :class:`AuditUnavailable` (strict mode, the sink refused an entry).
"""

from remit.audit.anchors import AnchorSigner, AnchorVerifier, key_id
from remit.audit.entry import (
    CLAIMED_TOLERANCE,
    GENESIS,
    CallInfo,
    Pseudonymiser,
    build_entry,
    canonical,
    canonical_text,
    entry_hash,
    obligation_kind_name,
    parse_lines,
    to_dict,
    to_entry,
    writer_id,
)
from remit.audit.sinks import sink_from_spec
from remit.audit.sinks.base import Sink
from remit.audit.sinks.file import FileSink, last_entry, read_lines
from remit.audit.sinks.redis_stream import RedisStreamSink
from remit.audit.sinks.stdout import StreamSink
from remit.audit.verify import VerifyResult, WriterReport, verify_lines
from remit.audit.writer import AuditLog, AuditStats, AuditUnavailable

__all__ = [
    "CLAIMED_TOLERANCE",
    "GENESIS",
    "AnchorSigner",
    "AnchorVerifier",
    "AuditLog",
    "AuditStats",
    "AuditUnavailable",
    "CallInfo",
    "FileSink",
    "Pseudonymiser",
    "RedisStreamSink",
    "Sink",
    "StreamSink",
    "VerifyResult",
    "WriterReport",
    "build_entry",
    "canonical",
    "canonical_text",
    "entry_hash",
    "key_id",
    "last_entry",
    "obligation_kind_name",
    "parse_lines",
    "read_lines",
    "sink_from_spec",
    "to_dict",
    "to_entry",
    "verify_lines",
    "writer_id",
]
