"""Masking-key transport: a member hands the cluster's masking key to a newcomer whose fleet identity it checked.

ECDH (P-256) between an ephemeral key and the newcomer's identity key (NIST SP 800-56A), HKDF-SHA256 (RFC 5869)
with the cluster id in its info, AES key wrap (RFC 3394 / NIST SP 800-38F KW) of the 32-byte masking key.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from ..errors import DeviceError
from .fleet import Identity


def _kek(shared: bytes, cluster_id: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"strongroom masking key v1\x00" + cluster_id.encode()
                ).derive(shared)


def wrap_masking_key(masking_key: bytes, recipient: ec.EllipticCurvePublicKey, cluster_id: str) -> tuple[bytes, bytes]:
    """Wrap the masking key to a newcomer: ``(ephemeral public point, X9.62 uncompressed; wrapped key)``."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    kek = _kek(ephemeral.exchange(ec.ECDH(), recipient), cluster_id)
    point = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.UncompressedPoint)
    return point, aes_key_wrap(kek, masking_key)


def unwrap_masking_key(identity: Identity, point: bytes, wrapped: bytes, cluster_id: str) -> bytes:
    """Raises:
        DeviceError: ``CKR_DEVICE_ERROR`` when the wrapped key does not open with this identity."""
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        return aes_key_unwrap(_kek(identity.key.exchange(ec.ECDH(), peer), cluster_id), wrapped)
    except (ValueError, InvalidUnwrap) as exc:
        raise DeviceError(f"the masking key did not unwrap: {exc}") from None
