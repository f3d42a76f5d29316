"""Who is calling, and which councils they may query.

The caller's identity comes from the transport: the verified client certificate (mTLS),
read from the peer's PEM certificate with its types kept — ``cn:`` the subject common name,
``dns:`` / ``uri:`` / ``email:`` / ``ip:`` a subject alternative name of that type (a DNS
name never matches a URI or an e-mail SAN). Or, in an explicit development mode only, a
bearer token whose SHA-256 is listed. An access file (``REMIT_ACCESS_FILE``) binds
identities to councils::

    callers:
      - identity: dns:torbay-lcs.example       # or cn:, uri:, email:, ip:
        councils: [torbay]
    dev_mode: true                             # dev tokens only; never with mTLS
    dev_tokens:
      - name: dev-halton
        sha256: 3b6a...                        # sha256 of the token, not the token
        councils: [halton]

An identity not in the file, or a council not bound to it, is PERMISSION_DENIED and logged.
Dev tokens without ``dev_mode: true`` refuse to load, and a server with a client CA (mTLS)
refuses to start in dev mode: a token must never lift a certificate to a council. Without
an access file every caller may query every council — allowed only on loopback, or
plaintext explicitly accepted behind a mesh (see the server's start-up checks).
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

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


IDENTITY_KINDS = ("cn:", "dns:", "uri:", "email:", "ip:")


def _auth_values(context: grpc.ServicerContext, key: str) -> list[str]:
    auth: dict[str, list[bytes]] = context.auth_context()  # type: ignore[assignment]
    return [v.decode(errors="replace") for v in auth.get(key, [])]


@functools.lru_cache(maxsize=256)
def certificate_names(pem: str) -> tuple[str, ...]:
    """The typed names of a PEM certificate: ``cn:`` for each subject common name, then
    ``dns:``, ``uri:``, ``email:``, ``ip:`` for each subject alternative name of that type
    (other SAN types are not identities). A certificate that does not parse has none."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return ()
    names = [
        f"cn:{a.value!s}" if isinstance(a.value, str) else f"cn:{a.value.decode(errors='replace')}"
        for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return tuple(names)
    for kind, cls in (
        ("dns", x509.DNSName),
        ("uri", x509.UniformResourceIdentifier),
        ("email", x509.RFC822Name),
        ("ip", x509.IPAddress),
    ):
        names.extend(f"{kind}:{value}" for value in sans.get_values_for_type(cls))
    return tuple(names)


def peer_names(context: grpc.ServicerContext) -> tuple[str, ...]:
    """The verified peer certificate's typed names (empty without a client certificate)."""
    certs = _auth_values(context, "x509_pem_cert")
    return certificate_names(certs[0]) if certs else ()


class AccessPolicy:
    def __init__(
        self,
        identities: dict[str, frozenset[str]] | None,
        tokens: dict[str, tuple[str, frozenset[str]]] | None = None,
        dev_mode: bool = False,
    ) -> None:
        if tokens and not dev_mode:
            raise ValueError("dev tokens need dev_mode: true (never in production)")
        self._identities = identities  # None: open access
        self._tokens = tokens or {}
        self.dev_mode = dev_mode

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
            if ident.startswith("san:"):
                raise ValueError(
                    f"REMIT_ACCESS_FILE {path}: callers[{i}].identity: san: matched every kind "
                    "of subject alternative name; write dns:, uri:, email: or ip:"
                )
            if not ident.startswith(IDENTITY_KINDS):
                raise ValueError(
                    f"REMIT_ACCESS_FILE {path}: callers[{i}].identity must start "
                    f"{', '.join(IDENTITY_KINDS)}"
                )
            identities[ident] = frozenset(str(c) for c in councils)
        tokens: dict[str, tuple[str, frozenset[str]]] = {}
        for i, entry in enumerate(data.get("dev_tokens", []) or []):
            name, digest, councils = entry.get("name"), entry.get("sha256"), entry.get("councils")
            if not (isinstance(name, str) and isinstance(digest, str) and len(digest) == 64):
                raise ValueError(f"REMIT_ACCESS_FILE {path}: dev_tokens[{i}] needs name and sha256")
            tokens[digest.lower()] = (f"token:{name}", frozenset(str(c) for c in councils or []))
        dev_mode = data.get("dev_mode", False)
        if not isinstance(dev_mode, bool):
            raise ValueError(f"REMIT_ACCESS_FILE {path}: dev_mode must be true or false")
        if tokens and not dev_mode:
            raise ValueError(
                f"REMIT_ACCESS_FILE {path}: dev_tokens are honoured only with dev_mode: true "
                "(development only; a server with a client CA refuses dev mode)"
            )
        return cls(identities, tokens, dev_mode)

    def resolve_names(
        self, names: tuple[str, ...], authorization: str, anonymous: str
    ) -> Caller | None:
        """The caller, from the verified client certificate's typed ``names`` (mTLS) or,
        in dev mode only, the ``Authorization: Bearer`` token; None when neither is known.
        Without an access file, the open caller (named by its certificate, else
        ``anonymous``). gRPC (:meth:`resolve`) and HTTP both ask here."""
        if self._identities is None:
            return Caller(names[0] if names else anonymous, None)
        for name in names:
            councils = self._identities.get(name)
            if councils is not None:
                return Caller(name, councils)
        if not self.dev_mode or not authorization.startswith("Bearer "):
            return None
        digest = hashlib.sha256(authorization.removeprefix("Bearer ").encode()).hexdigest()
        for known, (name, councils) in self._tokens.items():
            if hmac.compare_digest(known, digest):
                return Caller(name, councils)
        return None

    def resolve(self, context: grpc.ServicerContext) -> Caller | None:
        """The gRPC caller, or None when the identity is not known (PERMISSION_DENIED)."""
        authorization = next(
            (
                value
                for key, value in context.invocation_metadata()
                if key == "authorization" and isinstance(value, str)
            ),
            "",
        )
        return self.resolve_names(peer_names(context), authorization, f"peer:{context.peer()}")


def check_transport(
    kind: str,
    address: str,
    loopback: bool,
    tls: bool,
    client_ca: bool,
    access: AccessPolicy,
    allow_plaintext: bool,
) -> None:
    """The start-up checks gRPC and HTTP share; ValueError says what is unsafe and why."""
    if not tls and not loopback and not allow_plaintext:
        raise ValueError(
            f"refusing plaintext {kind} on {address}: set REMIT_TLS_CERT/REMIT_TLS_KEY, "
            "or REMIT_ALLOW_PLAINTEXT=1 to accept the risk"
        )
    if tls and client_ca and access.open:
        raise ValueError("mTLS needs REMIT_ACCESS_FILE: which caller may query which councils")
    if tls and client_ca and access.dev_mode:
        raise ValueError(
            "REMIT_ACCESS_FILE sets dev_mode with mTLS: a dev token must never lift a client "
            "certificate to a council; drop dev_mode (and dev_tokens) in an mTLS deployment"
        )
    if tls and not client_ca and access.open and not loopback:
        raise ValueError(
            f"refusing TLS without client authentication on {address} ({kind}) with no "
            "REMIT_ACCESS_FILE: every caller could query every council; set "
            "REMIT_TLS_CLIENT_CA and REMIT_ACCESS_FILE"
        )
