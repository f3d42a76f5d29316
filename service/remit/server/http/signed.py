"""Signed PDP metadata (the specification's ``signed_metadata``): a JWT (JWS compact
serialisation, RFC 7515/7519) signed with Ed25519 (``alg`` ``EdDSA``, RFC 8037), with the
project's signing keys (:mod:`remit.distribution.signing`, ``remit keygen``).

The claims are the metadata's own parameters (``policy_decision_point`` and the endpoint
URLs, never ``signed_metadata`` itself), ``iss`` the PDP identifier (the PDP attests its
own metadata) and ``iat``; the header's ``kid`` is the key id remit uses for the audit
anchors (the first 16 hex digits of the SHA-256 of the raw public key). A server signs only
with a configured base URL (``REMIT_HTTP_BASE_URL``): a signature over a URL taken from the
request's ``Host`` header would let any client obtain a signed statement naming any host.
:func:`verify` is what a PEP does with the public key.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from remit.audit.log import key_id
from remit.distribution.signing import Signer


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class MetadataSigner:
    """Signs PDP metadata with an Ed25519 private key (PEM)."""

    def __init__(self, private_pem: bytes) -> None:
        self._signer = Signer(private_pem)  # ValueError unless an Ed25519 private key
        private = serialization.load_pem_private_key(private_pem, password=None)
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = key_id(public)

    @classmethod
    def from_file(cls, path: Path) -> MetadataSigner:
        return cls(path.read_bytes())

    def token(self, metadata: dict[str, Any], now: float | None = None) -> str:
        """The signed JWT of ``metadata`` (its ``signed_metadata``, if any, left out)."""
        claims = {k: v for k, v in metadata.items() if k != "signed_metadata"}
        claims["iss"] = metadata["policy_decision_point"]
        claims["iat"] = int(time.time() if now is None else now)
        header = {"alg": "EdDSA", "typ": "JWT", "kid": self.key_id}
        signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}"
        return f"{signing_input}.{_b64(self._signer.sign(signing_input.encode()))}"


def verify(token: str, public_pem: bytes) -> dict[str, Any]:
    """The claims of a signed metadata JWT; ValueError unless it is an EdDSA JWS that
    verifies under ``public_pem`` and carries ``iss`` (and no ``signed_metadata``)."""
    key = serialization.load_pem_public_key(public_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWS in compact serialisation")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        key.verify(_unb64(parts[2]), f"{parts[0]}.{parts[1]}".encode())
    except (ValueError, InvalidSignature) as exc:
        raise ValueError(f"signed metadata does not verify ({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("alg") != "EdDSA":
        raise ValueError("signed metadata: alg must be EdDSA")
    if not isinstance(claims, dict) or not isinstance(claims.get("iss"), str):
        raise ValueError("signed metadata: no iss claim")
    if "signed_metadata" in claims:
        raise ValueError("signed metadata: signed_metadata must not be a claim")
    return claims
