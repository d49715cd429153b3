"""TLS 1.3 contexts of the replication channel: both ends present a certificate and verify the other's.

A node with a fleet identity uses its fleet certificate, verified against the fleet CA
(:func:`strongroom.trust.fleet_tls.replication_tls`). A log assembled without one (an in-process cluster) uses a
CA derived from the cluster secret (:func:`secret_peer_tls`): only holders of the masking key can issue a
certificate that CA vouches for, so the channel is just as closed, without a fleet.
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID


def cluster_secret(masking_key: bytes, cluster_id: str) -> bytes:
    """The key of the replication channel: HKDF-SHA256 (RFC 5869) of the masking key, 32 bytes."""
    return HKDF(hashes.SHA256(), 32, salt=cluster_id.encode(), info=b"strongroom replication v1").derive(masking_key)


_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True)
class PeerTLS:
    """The contexts one member accepts (``server``) and opens (``client``) replication connections with, and
    ``accepts``: a last word on a verified peer certificate (DER), e.g. refusing an identity of the right CA
    that is not a member's."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    accepts: Callable[[bytes], bool] | None = None


def peer_tls(key: ec.EllipticCurvePrivateKey, certificate_pem: bytes, ca_pem: bytes,
             accepts: Callable[[bytes], bool] | None = None) -> PeerTLS:
    """Mutual TLS 1.3 contexts presenting ``certificate_pem`` (its key ``key``) and requiring a peer
    certificate that chains to ``ca_pem``. Members are addressed by IP: no host name is checked.

    Raises:
        ssl.SSLError: the certificate does not match the key, or the CA is not PEM X.509.
    """
    # ssl loads keys from files only: the key file is encrypted under a one-time password and removed at once.
    password = os.urandom(32).hex().encode()
    with tempfile.TemporaryDirectory(prefix="strongroom-peer-tls-") as tmp:
        key_file, cert_file = Path(tmp) / "key.pem", Path(tmp) / "cert.pem"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.BestAvailableEncryption(password)))
        cert_file.write_bytes(certificate_pem)
        contexts = []
        for purpose in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS_CLIENT):
            ctx = ssl.SSLContext(purpose)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=ca_pem.decode())
            ctx.load_cert_chain(cert_file, key_file, password=password)
            contexts.append(ctx)
    server, client = contexts
    server.num_tickets = 0  # connections are long-lived; nothing resumes a session
    return PeerTLS(server, client, accepts)


def secret_peer_tls(secret: bytes) -> PeerTLS:
    """Contexts for a log without fleet identities: a P-256 CA key derived from the 32-byte cluster secret
    (HKDF-SHA256, RFC 5869) signs this member's fresh certificate; peers must chain to the same CA."""
    scalar = int.from_bytes(HKDF(hashes.SHA256(), 48, salt=None, info=b"strongroom replication ca v1")
                            .derive(secret), "big") % (_P256_ORDER - 1) + 1
    ca_key = ec.derive_private_key(scalar, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "strongroom replication")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
          .not_valid_after(datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "strongroom replication member")]))
            .issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return peer_tls(key, leaf.public_bytes(pem), ca.public_bytes(pem))
