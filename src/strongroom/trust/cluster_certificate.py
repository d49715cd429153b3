"""The cluster's certificate: the key the first HSM makes, its CSR, the owner's signature, the HSMs' TLS certificates.

The first HSM of a control-plane-managed cluster generates the cluster key (ECDSA P-256) inside its boundary and
a certificate signing request for it. The owner signs the CSR with their own CA and hands the certificate and their
trust anchor to ``InitializeCluster``; from then on every HSM serves TLS under the owner's chain, so clients trust
only the owner's CA. Two forms, by the certificate the owner made:

- a CA certificate (``basicConstraints CA:TRUE``): every HSM serves a certificate of its own issued under the
  cluster key (the chain: HSM certificate ← cluster certificate ← owner's CA), naming its address and the
  cluster id;
- any other certificate (what the service's documented ``openssl x509 -req`` makes: no extensions): every HSM
  serves the cluster certificate itself, with the cluster key, as the service's HSMs do. It issues nothing (a
  certificate that is not a CA must never act as one: a verifier that let it would accept any name it signed),
  it must allow TLS server use (a key usage, when present, with digitalSignature; an extended key usage, when
  present, with serverAuth), and clients check the name it carries, the cluster id (``server_name`` in their
  configuration). The key is handed to TLS from memory only, never written to a file.

The key never leaves the boundary in clear: it travels in the replicated state sealed by the masking key (the
store's barrier), so every member, and every HSM that joins later, can issue its own TLS certificate.

The same record holds the cluster's client trust anchors for mutual TLS: the owner's trust anchor, plus the client
CAs an admin registers (``register_client_ca``), each a CA certificate valid when registered.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import ArgumentsBad, DeviceError, FunctionNotSupported, SignatureInvalid

if TYPE_CHECKING:
    from ..store.barrier import Barrier

TLS_KEY = "tls.key"
TLS_CERT = "tls.crt"  # the node's certificate, then the cluster certificate (the chain it serves)
MAX_CERTIFICATE_CHARS = 20_000  # the service's limit for SignedCert and TrustAnchor
MAX_CLIENT_CAS = 16
_KIND = "cluster-key"


class ClusterIdentity(msgspec.Struct, frozen=True):
    """What the replicated state holds about the cluster's certificate.

    Attributes:
        csr: the cluster CSR (PEM), for the owner to sign.
        sealed_key: the cluster key (PKCS#8 DER) sealed by the masking key.
        certificate: the signed cluster certificate (PEM), empty before initialisation.
        trust_anchor: the owner's CA certificate (PEM), empty before initialisation.
        client_cas: client CA certificates (PEM, one each) an admin registered, trusted beside the trust anchor.
    """

    csr: bytes
    sealed_key: bytes
    certificate: bytes = b""
    trust_anchor: bytes = b""
    client_cas: list[bytes] = []

    def client_anchors(self) -> list[bytes]:
        """Every client trust anchor (PEM): the owner's, then the registered client CAs; none before
        initialisation."""
        return [self.trust_anchor, *self.client_cas] if self.certificate else []

    def encode(self) -> bytes:
        return msgspec.msgpack.encode(self)

    @staticmethod
    def decode(data: bytes) -> ClusterIdentity:
        return msgspec.msgpack.decode(data, type=ClusterIdentity)


def _name(cluster_id: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Strongroom"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cluster_id)])


def new(cluster_id: str, barrier: Barrier) -> ClusterIdentity:
    """A fresh cluster key and its CSR (subject ``O=Strongroom, CN=<cluster id>``, signed with ECDSA-SHA256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name(cluster_id)).sign(key, hashes.SHA256())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return ClusterIdentity(csr.public_bytes(serialization.Encoding.PEM), barrier.seal(_KIND, cluster_id, 1, der))


def _certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    if not pem or len(pem) > MAX_CERTIFICATE_CHARS:
        raise ArgumentsBad(f"{what} must be PEM of at most {MAX_CERTIFICATE_CHARS} characters")
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ArgumentsBad(f"{what} is not a PEM X.509 certificate") from None


def initialized(identity: ClusterIdentity, certificate_pem: bytes, trust_anchor_pem: bytes) -> ClusterIdentity:
    """``identity`` with the owner's signed cluster certificate and trust anchor, after checking them.

    The certificate must carry the CSR's public key, fit one of the two forms of the module's docstring (a CA
    certificate whose key usage, when present, allows keyCertSign; or a certificate for TLS servers), and chain
    to the trust anchor: a self-signed root, with any intermediate CA certificates in ``trust_anchor_pem`` in any
    order, every one of them a CA certificate valid now.

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a certificate that is not PEM X.509.
        SignatureInvalid: ``CKR_SIGNATURE_INVALID`` when the certificate's key is not the CSR's, its usages fit
            neither form, it is not valid now, or it does not chain to the trust anchor.
    """
    [certificate, *_] = _certificates(certificate_pem, "the signed certificate")
    anchors = _certificates(trust_anchor_pem, "the trust anchor")
    csr = x509.load_pem_x509_csr(identity.csr)
    if certificate.public_key() != csr.public_key():
        raise SignatureInvalid("the signed certificate does not carry the cluster CSR's key")
    _check_usages(certificate)
    now = datetime.datetime.now(datetime.UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise SignatureInvalid("the signed certificate is not valid now")
    for anchor in anchors:
        if not _is_ca_valid_now(anchor):
            raise SignatureInvalid(f"the trust anchor's certificate {anchor.subject.rfc4514_string()!r:.80} is "
                                   "not a CA certificate valid now")
    # the chain from the cluster certificate up to a self-signed root, in whatever order the anchor lists them
    current, pool = certificate, list(anchors)
    while True:
        parent = next((c for c in pool if c.subject == current.issuer), None)
        if parent is None:
            raise SignatureInvalid("the signed certificate does not chain to the trust anchor")
        try:
            current.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise SignatureInvalid("the signed certificate does not chain to the trust anchor") from None
        if parent.subject == parent.issuer:
            break
        pool.remove(parent)
        current = parent
    return msgspec.structs.replace(identity, certificate=certificate_pem, trust_anchor=trust_anchor_pem)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _check_usages(certificate: x509.Certificate) -> None:
    """Refuse a cluster certificate fit for neither form: a CA whose key usage forbids signing certificates, or
    a non-CA certificate whose key usage or extended key usage forbids TLS server use."""
    try:
        usage: x509.KeyUsage | None = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if _is_ca(certificate):
        if usage is not None and not usage.key_cert_sign:
            raise SignatureInvalid("the cluster certificate is a CA certificate whose key usage lacks keyCertSign: "
                                   "it cannot issue the HSMs' certificates")
        return
    if usage is not None and not usage.digital_signature:
        raise SignatureInvalid("the cluster certificate is served by the HSMs for TLS: its key usage must allow "
                               "digitalSignature (or sign it as a CA, basicConstraints CA:TRUE)")
    try:
        purposes = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.SERVER_AUTH not in purposes:
        raise SignatureInvalid("the cluster certificate is served by the HSMs for TLS: its extended key usage must "
                               "include serverAuth (or sign it as a CA, basicConstraints CA:TRUE)")


def serves_itself(identity: ClusterIdentity) -> bool:
    """Whether the HSMs serve the cluster certificate itself (it is not a CA certificate), rather than
    certificates of their own issued under it; False before initialisation."""
    return bool(identity.certificate) and not _is_ca(x509.load_pem_x509_certificate(identity.certificate))


def cluster_key_pem(identity: ClusterIdentity, barrier: Barrier, cluster_id: str) -> bytes:
    """The cluster key (PKCS#8 PEM, unencrypted) for the node's TLS server, when it serves the cluster
    certificate itself: keep it in memory (:func:`strongroom.host.node_process` loads it from a memory file)."""
    key = serialization.load_der_private_key(barrier.open(_KIND, cluster_id, 1, identity.sealed_key), None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_served_certificate(identity: ClusterIdentity, data_dir: Path) -> Path:
    """Write the cluster certificate as ``tls.crt`` (the chain an HSM serves when it serves the cluster certificate
    itself) and remove a ``tls.key`` of an earlier certificate. Returns the certificate's path."""
    cert_path = data_dir / TLS_CERT
    cert_path.write_bytes(x509.load_pem_x509_certificate(identity.certificate).public_bytes(
        serialization.Encoding.PEM))
    (data_dir / TLS_KEY).unlink(missing_ok=True)
    return cert_path


def _is_ca_valid_now(cert: x509.Certificate) -> bool:
    now = datetime.datetime.now(datetime.UTC)
    return _is_ca(cert) and cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def client_ca_added(identity: ClusterIdentity, certificate_pem: bytes) -> tuple[ClusterIdentity, str]:
    """``identity`` with one more client CA, and that CA's SHA-256 fingerprint (hex).

    The certificate must be one PEM X.509 CA certificate (basicConstraints CA:TRUE) valid now; client
    certificates then chain to it (through intermediates the client sends, up to it).

    Raises:
        FunctionNotSupported: ``CKR_FUNCTION_NOT_SUPPORTED`` before the cluster is initialised.
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for anything but one PEM X.509 certificate, one already registered,
            or more than ``MAX_CLIENT_CAS``.
        SignatureInvalid: ``CKR_SIGNATURE_INVALID`` for a certificate that is not a CA certificate valid now.
    """
    if not identity.certificate:
        raise FunctionNotSupported("register client CAs once the cluster is initialised")
    certificates = _certificates(certificate_pem, "the client CA")
    if len(certificates) != 1:
        raise ArgumentsBad("register one client CA certificate at a time")
    [cert] = certificates
    if not _is_ca_valid_now(cert):
        raise SignatureInvalid("a client CA must be a CA certificate (basicConstraints CA:TRUE) valid now")
    pem = cert.public_bytes(serialization.Encoding.PEM)
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    if fingerprint in {c.fingerprint(hashes.SHA256()).hex() for c in _registered(identity)}:
        raise ArgumentsBad(f"client CA {fingerprint} is already registered")
    if len(identity.client_cas) >= MAX_CLIENT_CAS:
        raise ArgumentsBad(f"at most {MAX_CLIENT_CAS} client CAs; unregister one first")
    return msgspec.structs.replace(identity, client_cas=[*identity.client_cas, pem]), fingerprint


def client_ca_removed(identity: ClusterIdentity, fingerprint: str) -> ClusterIdentity:
    """``identity`` without the registered client CA of this SHA-256 fingerprint (hex).

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` when no registered client CA has it (the owner's trust anchor is
            not a registered client CA and stays).
    """
    kept = [pem for pem, cert in zip(identity.client_cas, _registered(identity), strict=True)
            if cert.fingerprint(hashes.SHA256()).hex() != fingerprint.lower()]
    if len(kept) == len(identity.client_cas):
        raise ArgumentsBad(f"no registered client CA has the fingerprint {fingerprint[:64]!r}")
    return msgspec.structs.replace(identity, client_cas=kept)


def client_cas(identity: ClusterIdentity) -> list[dict[str, str]]:
    """The client trust anchors, each ``{"fingerprint", "subject", "not_after", "source"}`` (``source``:
    ``owner`` for the trust anchor given at initialisation, ``registered`` for an admin's)."""
    anchors = [("owner", c) for c in (x509.load_pem_x509_certificates(identity.trust_anchor)
                                      if identity.certificate else [])]
    return [{"fingerprint": cert.fingerprint(hashes.SHA256()).hex(), "subject": cert.subject.rfc4514_string(),
             "not_after": cert.not_valid_after_utc.isoformat(), "source": source}
            for source, cert in [*anchors, *(("registered", c) for c in _registered(identity))]]


def _registered(identity: ClusterIdentity) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(pem) for pem in identity.client_cas]


def issue_tls(identity: ClusterIdentity, barrier: Barrier, cluster_id: str, hosts: list[str], data_dir: Path,
              days: int = 825) -> tuple[Path, Path]:
    """Issue this node's TLS server certificate under the cluster key (a new P-256 key; subject alternative
    names ``hosts``, IP addresses or DNS names) and write ``tls.key`` (0600) and ``tls.crt`` (the certificate,
    then the cluster certificate) into ``data_dir``. Returns ``(certificate chain path, key path)``."""
    signer = serialization.load_der_private_key(barrier.open(_KIND, cluster_id, 1, identity.sealed_key), None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise DeviceError("the cluster key is not an EC key")
    cluster_certificate = x509.load_pem_x509_certificate(identity.certificate)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, cluster_id]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Strongroom"),
                                            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
                   .issuer_name(cluster_certificate.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(min(now + datetime.timedelta(days=days), cluster_certificate.not_valid_after_utc))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .sign(signer, hashes.SHA256()))
    key_path, cert_path = data_dir / TLS_KEY, data_dir / TLS_CERT
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM) + identity.certificate)
    return cert_path, key_path


def issued_for(identity: ClusterIdentity, data_dir: Path, cluster_id: str = "") -> bool:
    """Whether ``data_dir`` holds the TLS certificate chain this identity's HSMs serve: the cluster certificate
    alone (it serves itself), or a certificate issued under it naming ``cluster_id`` (when given) followed by
    it."""
    try:
        chain = x509.load_pem_x509_certificates((data_dir / TLS_CERT).read_bytes())
    except (OSError, ValueError):
        return False
    cluster = x509.load_pem_x509_certificate(identity.certificate)
    if serves_itself(identity):
        return len(chain) == 1 and chain[0] == cluster and not (data_dir / TLS_KEY).exists()
    if len(chain) < 2 or chain[1] != cluster or not (data_dir / TLS_KEY).exists():
        return False
    if not cluster_id:
        return True
    try:
        names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return cluster_id in names.get_values_for_type(x509.DNSName)
