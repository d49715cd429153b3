"""Test PKI: the product's certificate helpers with the names the tests use, an owner's CA, an attacker's forged
certificates and an outsider's raw TLS client."""

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from strongroom.trust.ca import CertificateAuthority as CA
from strongroom.trust.ca import Issued

__all__ = ["CA", "Issued", "OwnerCA", "client_certificate", "tls_refusal"]


class OwnerCA:
    """The cluster owner's own CA (the test plays the owner)."""

    def __init__(self, folder: Path, name: str = "owner-ca") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.path = folder / f"{name}.crt"
        self.path.write_bytes(self.pem)
        key_path = folder / f"{name}.key"
        key_path.write_bytes(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        self.issued = Issued(self.path, key_path)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def sign(self, csr_pem: bytes, ca: bool = True, usages: tuple[x509.ObjectIdentifier, ...] = ()) -> bytes:
        """The CSR's key certified (a CA certificate unless ``ca`` is false; ``usages``: an extended key usage)."""
        csr = x509.load_pem_x509_csr(csr_pem)
        now = datetime.datetime.now(datetime.UTC)
        builder = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(self.cert.subject)
                   .public_key(csr.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM)


def client_certificate(folder: Path, name: str, *, issuer: Issued | None = None, issuer_name: str | None = None,
           days: int = 30, client: bool = True) -> Issued:
    """A client certificate (clientAuth unless ``client`` is false): self-signed (no ``issuer``), signed by
    ``issuer`` (any certificate's key, a CA's or a leaf's), claiming ``issuer_name`` as its issuer, or expired
    (``days`` < 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer, issuer_subject = key, subject
    if issuer is not None:
        loaded = serialization.load_pem_private_key(issuer.key.read_bytes(), None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        signer, issuer_subject = loaded, x509.load_pem_x509_certificate(issuer.cert.read_bytes()).subject
    if issuer_name is not None:
        issuer_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)])
    start, end = (now - datetime.timedelta(days=2), now - datetime.timedelta(days=1)) if days < 0 else (
        now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days))
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    base = folder / name
    base.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    base.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return Issued(base.with_suffix(".crt"), base.with_suffix(".key"))


def tls_refusal(endpoint: str, cert: Issued | None = None, timeout_s: float = 10.0) -> str | None:
    """Reach an HSM port as an outsider would: a plain ``ssl`` client (that does not care who the server is)
    presenting ``cert`` or none, then a protocol hello. ``None`` when the node answered; else why the TLS
    connection failed (the OpenSSL reason, e.g. ``TLSV13_ALERT_CERTIFICATE_REQUIRED``).

    Raises:
        TimeoutError: the node neither answered nor closed within ``timeout_s`` (not a refusal).
    """
    import socket
    import ssl
    import struct

    import msgspec

    from strongroom.protocol import PROTOCOL_VERSION, Hello

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    host, _, port = endpoint.rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=host.strip("[]")) as tls:
                body = msgspec.msgpack.encode(Hello([PROTOCOL_VERSION]))
                tls.sendall(struct.pack(">I", len(body)) + body)
                head = tls.recv(4)
        except ssl.SSLError as exc:
            return str(exc.reason or exc)
        except TimeoutError:  # a node that hangs has not refused anything: the test must see it
            raise
        except OSError as exc:  # reset after the alert
            return type(exc).__name__
    return None if head else "closed without an answer"


def issue_agent(ca: CA, folder: Path, name: str = "agent") -> Issued:
    """A client certificate from ``ca`` marked as a client agent's (``OU=strongroom-agent``)."""
    from strongroom.vendor import AGENT_UNIT

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, AGENT_UNIT)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return Issued(folder / f"{name}.crt", folder / f"{name}.key")
