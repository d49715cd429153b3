"""A newcomer's proof that it is a genuine Strongroom HSM, checked by the member it joins through.

The newcomer asks a member for a challenge (``CHALLENGE_BYTES`` random bytes, one per connection) and answers
with its fleet certificate and an ECDSA-SHA256 signature over the challenge, the cluster id and its replication
address. The member checks that the certificate was issued by its fleet CA and is valid now, and the signature;
it then adds the address to the Raft membership and wraps the masking key to the certificate's key
(:mod:`strongroom.trust.masking_key`).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import SignatureInvalid
from .fleet import Identity, verify_fleet_certificate

CHALLENGE_BYTES = 32
_CONTEXT = b"strongroom join v1\x00"


def _signed_text(challenge: bytes, cluster_id: str, address: str) -> bytes:
    return _CONTEXT + challenge + cluster_id.encode() + b"\x00" + address.encode()


def sign_join(identity: Identity, challenge: bytes, cluster_id: str, address: str) -> bytes:
    """The newcomer's proof of possession: ECDSA-SHA256 (DER) over the challenge, cluster id and address."""
    return identity.key.sign(_signed_text(challenge, cluster_id, address), ec.ECDSA(hashes.SHA256()))


def verify_newcomer(fleet_ca_pem: bytes, certificate_pem: bytes, signature: bytes, challenge: bytes,
                    cluster_id: str, address: str) -> ec.EllipticCurvePublicKey:
    """Check a join request; return the newcomer's public key.

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a certificate that is not PEM X.509 with a P-256 key.
        SignatureInvalid: ``CKR_SIGNATURE_INVALID`` when the certificate was not issued by the fleet CA, is
            outside its validity period, or the signature does not verify.
    """
    key = verify_fleet_certificate(fleet_ca_pem, certificate_pem).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)  # noqa: S101 - verify_fleet_certificate checked it
    try:
        key.verify(signature, _signed_text(challenge, cluster_id, address), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureInvalid("the join signature does not verify") from None
    return key
