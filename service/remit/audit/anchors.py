"""Signed anchors: Ed25519 checkpoints of a writer's chain head."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from remit.audit.entry import canonical
from remit.distribution.signing import Signer, Verifier
from remit.model.errors import PolicyError


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
