"""The one layer that encrypts at rest: AES-256-GCM envelopes under the cluster masking key.

Storage is untrusted. Every record the node stores (object, user) is sealed in an envelope that binds the
record's identity into the associated data, so a row moved to another handle, another cluster or an older
version fails authentication instead of being accepted.

Envelope layout (bytes): ``version (1) ‖ nonce (12) ‖ ciphertext ‖ tag (16)``; associated data:
``b"strongroom/v1" ‖ 0x00 ‖ cluster id ‖ 0x00 ‖ kind ‖ 0x00 ‖ record id ‖ 0x00 ‖ record version (8, big-endian)``.
Nonces are random (96 bits); NIST SP 800-38D §8.3 bounds one key to 2^32 invocations with random IVs, far above
what one cluster writes.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import StoreIntegrityError

ENVELOPE_VERSION = 1
MASKING_KEY_BYTES = 32
_NONCE_BYTES = 12


class Barrier:
    """Seals and opens store records under the masking key.

    Args:
        masking_key: the cluster masking key, 32 bytes.
        cluster_id: the cluster the records belong to; bound into every envelope.
    """

    def __init__(self, masking_key: bytes, cluster_id: str) -> None:
        if len(masking_key) != MASKING_KEY_BYTES:
            raise ValueError(f"masking key must be {MASKING_KEY_BYTES} bytes, got {len(masking_key)}")
        self._aead = AESGCM(masking_key)
        self._prefix = b"strongroom/v1\x00" + cluster_id.encode() + b"\x00"

    def _aad(self, kind: str, record_id: str | int, version: int) -> bytes:
        return b"".join((self._prefix, kind.encode(), b"\x00", str(record_id).encode(), b"\x00",
                         version.to_bytes(8, "big")))

    def seal(self, kind: str, record_id: str | int, version: int, plaintext: bytes) -> bytes:
        """Return the envelope of ``plaintext`` for the record ``(kind, record_id, version)``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, self._aad(kind, record_id, version))
        return bytes((ENVELOPE_VERSION,)) + nonce + sealed

    def open(self, kind: str, record_id: str | int, version: int, envelope: bytes) -> bytes:
        """Return the plaintext of an envelope.

        Raises:
            StoreIntegrityError: ``CKR_DEVICE_ERROR`` when the envelope was altered, moved or is of an unknown
                version.
        """
        if len(envelope) < 1 + _NONCE_BYTES + 16 or envelope[0] != ENVELOPE_VERSION:
            raise StoreIntegrityError(f"{kind} {record_id}: envelope is malformed")
        nonce, sealed = envelope[1:1 + _NONCE_BYTES], envelope[1 + _NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, sealed, self._aad(kind, record_id, version))
        except InvalidTag:
            raise StoreIntegrityError(f"{kind} {record_id}: envelope failed authentication") from None


def seal_masking_key(node_key: bytes, cluster_id: str, masking_key: bytes) -> bytes:
    """Seal the masking key under the node-local key (AES-256-GCM; associated data names the cluster)."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(node_key).encrypt(nonce, masking_key, b"strongroom/mk\x00" + cluster_id.encode())


def unseal_masking_key(node_key: bytes, cluster_id: str, sealed: bytes) -> bytes:
    """Return the masking key sealed by :func:`seal_masking_key`.

    Raises:
        StoreIntegrityError: ``CKR_DEVICE_ERROR`` when the sealed key does not open with this node key.
    """
    try:
        return AESGCM(node_key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:],
                                        b"strongroom/mk\x00" + cluster_id.encode())
    except (InvalidTag, ValueError):
        raise StoreIntegrityError("the sealed masking key does not open with this node's key") from None
