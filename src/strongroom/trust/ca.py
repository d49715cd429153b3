"""Certificates for a local deployment: a CA and the node and client certificates it issues (X.509 v3,
ECDSA P-256, SHA-256), written as PEM files (keys 0600). Production clusters use the owner's CA instead.

``strongroom up`` makes a local owner CA with it and issues, from that CA, the client certificates every HSM
port requires (the agent's, the CLI's, and a new application host's: ``strongroom owner issue-client``)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key as PEM files."""

    cert: Path
    key: Path


def _name(common_name: str, unit: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if unit is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    return x509.Name(attributes)


def _write(base: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    cert_path, key_path = base.with_suffix(".crt"), base.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return Issued(cert_path, key_path)


class CertificateAuthority:
    """A CA whose certificate and key live in ``folder`` as ``NAME.crt`` and ``NAME.key``.

    Args:
        folder: where the files go.
        name: the CA's common name and file stem.
        days: validity in days.
    """

    def __init__(self, folder: Path, name: str, days: int = 365) -> None:
        self.folder = Path(folder)
        self.days = days
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=days))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.issued = _write(self.folder / name, self.cert, self.key)

    @classmethod
    def load(cls, folder: Path, name: str, days: int = 365) -> CertificateAuthority:
        """The CA already in ``folder`` as ``NAME.crt`` and ``NAME.key`` (issuing for ``days``).

        Raises:
            OSError: a file is missing or unreadable.
            ValueError: the files hold no certificate, or no key that signs certificates.
        """
        folder = Path(folder)
        ca = cls.__new__(cls)
        ca.folder, ca.days = folder, days
        cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
        ca.cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} holds no EC key")
        ca.key = key
        ca.issued = Issued(cert_path, key_path)
        return ca

    def issue(self, name: str, *, server: bool, hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
              folder: Path | None = None, unit: str | None = None) -> Issued:
        """Issue a node (``server``, serverAuth) or client (clientAuth) certificate named ``name``, written as
        ``NAME.crt`` and ``NAME.key`` into ``folder`` (default: the CA's); node certificates name ``hosts`` in
        their SAN; ``unit`` is the subject's ``OU`` (a client agent's: :data:`strongroom.vendor.AGENT_UNIT`)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (x509.CertificateBuilder().subject_name(_name(name, unit)).issuer_name(self.cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=self.days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if server:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return _write(Path(folder or self.folder) / name, builder.sign(self.key, hashes.SHA256()), key)
