"""Ed25519 signatures over bundle manifests (the ``cryptography`` library).

``remit publish --signing-key KEY`` signs the manifest bytes it stores; a replica given
``REMIT_BUNDLE_PUBLIC_KEY`` refuses any bundle that is unsigned or wrongly signed and keeps
its last good version.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from remit.model.errors import PolicyError


def generate_keypair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


class Signer:
    def __init__(self, pem: bytes) -> None:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("signing key is not an Ed25519 private key")
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        return cls(path.read_bytes())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


class Verifier:
    def __init__(self, pem: bytes) -> None:
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("public key is not an Ed25519 public key")
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> Verifier:
        return cls(path.read_bytes())

    def verify(self, data: bytes, signature: bytes | None) -> None:
        if not signature:
            raise PolicyError("bundle is not signed")
        try:
            self._key.verify(signature, data)
        except InvalidSignature as exc:
            raise PolicyError("bundle signature does not verify") from exc
