"""Owner-signed unlock requests: how the cluster's owner unlocks an admin when no admin can log in.

The owner signs a request offline with the key of its CA, the trust anchor given at ``InitializeCluster``
(:mod:`strongroom.trust.cluster_certificate`). The request names the cluster, the admin, a random nonce and an
expiry; an HSM accepts it once (the nonce is kept with the user until the expiry) and only before the expiry,
which may lie at most :data:`MAX_VALIDITY_S` ahead.

The file is JSON: ``{"claims": {"cluster_id", "username", "nonce", "not_after"}, "signature": base64}``. The
signature covers :data:`DOMAIN` followed by the claims' canonical JSON (the fields in that order, no spaces):
ECDSA with SHA-256 (DER) for an EC key, PKCS#1 v1.5 with SHA-256 for an RSA key.
"""

from __future__ import annotations

import secrets
import time

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ..errors import ArgumentsBad, SignatureInvalid

DOMAIN = b"strongroom owner-unlock v1\n"
MAX_VALIDITY_S = 7 * 24 * 3600
MAX_REQUEST_BYTES = 4096
NONCE_BYTES = 16


class UnlockClaims(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the owner signs.

    Attributes:
        cluster_id: the cluster the request is for.
        username: the admin to unlock.
        nonce: 32 lowercase hex characters (16 random bytes).
        not_after: the request's expiry, UTC seconds since the epoch.
    """

    cluster_id: str
    username: str
    nonce: str
    not_after: int


class UnlockRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A signed request: the claims and the owner CA key's signature over :func:`signed_bytes`."""

    claims: UnlockClaims
    signature: bytes


def signed_bytes(claims: UnlockClaims) -> bytes:
    """What the signature covers: :data:`DOMAIN` and the claims' canonical JSON."""
    return DOMAIN + msgspec.json.encode(claims)


def sign(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cluster_id: str, username: str, valid_for_s: int,
         *, now: float | None = None) -> bytes:
    """A signed unlock request (JSON) for ``username`` of ``cluster_id``, valid for ``valid_for_s`` seconds.

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a validity outside 1 s … :data:`MAX_VALIDITY_S`, or a key that is
            neither EC nor RSA.
    """
    if not 0 < valid_for_s <= MAX_VALIDITY_S:
        raise ArgumentsBad(f"an unlock request is valid for 1-{MAX_VALIDITY_S} seconds, got {valid_for_s}")
    claims = UnlockClaims(cluster_id, username.lower(), secrets.token_hex(NONCE_BYTES),
                          int(time.time() if now is None else now) + valid_for_s)
    data = signed_bytes(claims)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise ArgumentsBad("the owner CA key must be an EC or RSA private key")
    return msgspec.json.encode(UnlockRequest(claims, signature))


def _signed_by(certificate: x509.Certificate, data: bytes, signature: bytes) -> bool:
    public = certificate.public_key()
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def verify(data: bytes, trust_anchor_pem: bytes, cluster_id: str, *, now: float | None = None) -> UnlockClaims:
    """The claims of a request signed by a certificate of the owner's trust anchor, for ``cluster_id``, not
    expired and expiring at most :data:`MAX_VALIDITY_S` from ``now``. Whether its nonce was used is the
    caller's to check.

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a request that is not the JSON above or exceeds
            :data:`MAX_REQUEST_BYTES`.
        SignatureInvalid: ``CKR_SIGNATURE_INVALID`` when no certificate of the trust anchor signed it, or it
            names another cluster, has expired or is valid too long.
    """
    if not isinstance(data, bytes) or len(data) > MAX_REQUEST_BYTES:
        raise ArgumentsBad(f"an unlock request is JSON of at most {MAX_REQUEST_BYTES} bytes")
    try:
        request = msgspec.json.decode(data, type=UnlockRequest)
    except msgspec.DecodeError as exc:
        raise ArgumentsBad(f"not an owner-signed unlock request: {str(exc)[:80]}") from None
    claims = request.claims
    if len(claims.nonce) != 2 * NONCE_BYTES or claims.nonce.strip("0123456789abcdef"):
        raise ArgumentsBad(f"the nonce must be {2 * NONCE_BYTES} lowercase hex characters")
    try:
        anchors = x509.load_pem_x509_certificates(trust_anchor_pem)
    except ValueError:
        raise SignatureInvalid("the cluster's trust anchor is unreadable") from None
    if not any(_signed_by(anchor, signed_bytes(claims), request.signature) for anchor in anchors):
        raise SignatureInvalid("the unlock request is not signed by the cluster owner's CA")
    if claims.cluster_id != cluster_id:
        raise SignatureInvalid(f"the unlock request is for cluster {claims.cluster_id[:64]!r}, not {cluster_id}")
    now = time.time() if now is None else now
    if claims.not_after < now:
        raise SignatureInvalid("the unlock request has expired")
    if claims.not_after > now + MAX_VALIDITY_S:
        raise SignatureInvalid(f"an unlock request may be valid for at most {MAX_VALIDITY_S} seconds")
    return claims
