"""Who is calling, and which councils they may query.

The caller's identity comes from the transport: the client certificate (mTLS: subject
common name and subject alternative names), or — for development only — a bearer token
whose SHA-256 is listed. An access file (``REMIT_ACCESS_FILE``) binds identities to
councils::

    callers:
      - identity: cn:torbay-lcs.example        # or san:torbay-lcs.example
        councils: [torbay]
    dev_tokens:                                # never in production
      - name: dev-halton
        sha256: 3b6a...                        # sha256 of the token, not the token
        councils: [halton]

An identity not in the file, or a council not bound to it, is PERMISSION_DENIED and logged.
Without an access file every caller may query every council — allowed only when the
server listens on plaintext loopback (see the server's start-up checks).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

from remit.model.errors import RequestError

log = logging.getLogger("remit.access")
_COUNCIL_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")


class PermissionDenied(RequestError):
    """The caller may not query this council (gRPC PERMISSION_DENIED)."""


@dataclass(frozen=True)
class Caller:
    identity: str
    councils: frozenset[str] | None  # None: every council (open access)

    def may(self, council: str) -> bool:
        return self.councils is None or council in self.councils


ANONYMOUS = Caller("anonymous", None)
CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("remit_caller", default=ANONYMOUS)


def check_council(council: str, field: str = "council") -> None:
    """Raise PermissionDenied unless the current caller may query ``council``."""
    caller = CALLER.get()
    if not caller.may(council):
        # a request's text reaches the log only when it has the shape of a council id
        shown = council if _COUNCIL_ID.fullmatch(council) else "(not a council id)"
        log.warning("permission denied: %s asked about council %s", caller.identity, shown)
        raise PermissionDenied(
            field, f"caller {caller.identity!r} may not query council {council!r}"
        )


def _auth_values(context: grpc.ServicerContext, key: str) -> list[str]:
    auth: dict[str, list[bytes]] = context.auth_context()  # type: ignore[assignment]
    return [v.decode(errors="replace") for v in auth.get(key, [])]


class AccessPolicy:
    def __init__(
        self,
        identities: dict[str, frozenset[str]] | None,
        tokens: dict[str, tuple[str, frozenset[str]]] | None = None,
    ) -> None:
        self._identities = identities  # None: open access
        self._tokens = tokens or {}

    @property
    def open(self) -> bool:
        return self._identities is None

    @classmethod
    def open_access(cls) -> AccessPolicy:
        return cls(None)

    @classmethod
    def from_file(cls, path: Path) -> AccessPolicy:
        try:
            data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"REMIT_ACCESS_FILE {path}: cannot read ({exc})") from exc
        identities: dict[str, frozenset[str]] = {}
        for i, entry in enumerate(data.get("callers", []) or []):
            ident, councils = entry.get("identity"), entry.get("councils")
            if not isinstance(ident, str) or not isinstance(councils, list) or not councils:
                raise ValueError(
                    f"REMIT_ACCESS_FILE {path}: callers[{i}] needs identity and councils"
                )
            if not ident.startswith(("cn:", "san:")):
                raise ValueError(
                    f"REMIT_ACCESS_FILE {path}: callers[{i}].identity must start cn: or san:"
                )
            identities[ident] = frozenset(str(c) for c in councils)
        tokens: dict[str, tuple[str, frozenset[str]]] = {}
        for i, entry in enumerate(data.get("dev_tokens", []) or []):
            name, digest, councils = entry.get("name"), entry.get("sha256"), entry.get("councils")
            if not (isinstance(name, str) and isinstance(digest, str) and len(digest) == 64):
                raise ValueError(f"REMIT_ACCESS_FILE {path}: dev_tokens[{i}] needs name and sha256")
            tokens[digest.lower()] = (f"token:{name}", frozenset(str(c) for c in councils or []))
        return cls(identities, tokens)

    def resolve(self, context: grpc.ServicerContext) -> Caller | None:
        """The caller, or None when the identity is not known (PERMISSION_DENIED)."""
        if self._identities is None:
            names = _auth_values(context, "x509_common_name")
            return Caller(f"cn:{names[0]}" if names else f"peer:{context.peer()}", None)
        for cn in _auth_values(context, "x509_common_name"):
            councils = self._identities.get(f"cn:{cn}")
            if councils is not None:
                return Caller(f"cn:{cn}", councils)
        for san in _auth_values(context, "x509_subject_alternative_name"):
            councils = self._identities.get(f"san:{san}")
            if councils is not None:
                return Caller(f"san:{san}", councils)
        for key, value in context.invocation_metadata():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                digest = hashlib.sha256(value.removeprefix("Bearer ").encode()).hexdigest()
                for known, (name, councils) in self._tokens.items():
                    if hmac.compare_digest(known, digest):
                        return Caller(name, councils)
        return None
