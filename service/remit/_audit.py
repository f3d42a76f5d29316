"""The decision log: one JSON line per answered Authorise.

An entry records who asked (transport peer), which council/decision, the actor's opaque id
and roles, the effect, the deciding rule and its section, obligation kinds, the policy
version and latency. It never records context facts, names, dates of birth or free text.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from remit.v1 import remit_pb2 as pb


def entry(
    request: pb.AuthoriseRequest, response: pb.AuthoriseResponse, peer: str, seconds: float
) -> dict[str, Any]:
    return {
        "type": "decision",
        "decision_id": response.decision_id,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "peer": peer,
        "council": request.council,
        "decision": request.decision,
        # with host records the actor comes from the mapping (response.mapped)
        "actor_id": request.actor.id or _mapped(response, "actor.id"),
        "actor_roles": list(request.actor.roles) or _mapped_all(response, "actor.roles"),
        "matched_role": response.matched_role,
        "effect": pb.Effect.Name(response.effect),
        "rule_id": response.rule_id,
        "section": response.citation.section,
        "obligations": [pb.ObligationKind.Name(o.kind) for o in response.obligations],
        "policy_version": response.policy_version,
        "request_id": response.request_id,
        "latency_ms": round(seconds * 1000, 3),
    }


def _mapped_all(response: pb.AuthoriseResponse, field: str) -> list[str]:
    return [m.canonical for m in response.mapped if m.field == field]


def _mapped(response: pb.AuthoriseResponse, field: str) -> str:
    found = _mapped_all(response, field)
    return found[0] if found else ""


class AuditSink(Protocol):
    def write_decision(
        self,
        request: pb.AuthoriseRequest,
        response: pb.AuthoriseResponse,
        peer: str,
        seconds: float,
    ) -> None: ...


class JsonLinesSink:
    """Writes entries as JSON lines to a text stream (stdout by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()

    def write_decision(
        self,
        request: pb.AuthoriseRequest,
        response: pb.AuthoriseResponse,
        peer: str,
        seconds: float,
    ) -> None:
        line = json.dumps(entry(request, response, peer, seconds), sort_keys=True)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class MemorySink:
    """Keeps entries in memory (tests)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def write_decision(
        self,
        request: pb.AuthoriseRequest,
        response: pb.AuthoriseResponse,
        peer: str,
        seconds: float,
    ) -> None:
        with self._lock:
            self.entries.append(entry(request, response, peer, seconds))
