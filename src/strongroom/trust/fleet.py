"""The fleet's identities: the CA that vouches for genuine Strongroom HSMs, and what it issues.

Every HSM is provisioned by the fleet (the "manufacturer", ARCHITECTURE.md key hierarchy) with an identity key
(ECDSA P-256) and a certificate from the fleet CA, stored in its data directory as ``identity.key`` (0600),
``identity.crt`` and ``fleet-ca.crt``. The control plane gets an *appliance* identity from the same CA: a TLS
client certificate that HSMs accept as the appliance user. A newcomer proves its identity when it joins
(:mod:`strongroom.trust.join_proof`) and receives the masking key wrapped to it
(:mod:`strongroom.trust.masking_key`).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import ArgumentsBad, DeviceError, SignatureInvalid

IDENTITY_KEY = "identity.key"
IDENTITY_CERT = "identity.crt"
FLEET_CA = "fleet-ca.crt"


@dataclass(frozen=True)
class Identity:
    """A node's fleet identity, loaded from its data directory."""

    key: ec.EllipticCurvePrivateKey
    certificate: bytes  # PEM
    fleet_ca: bytes  # PEM

    @classmethod
    def load(cls, data_dir: Path | str) -> Identity:
        """Raises:
            DeviceError: ``CKR_DEVICE_ERROR`` when the directory holds no fleet identity."""
        data_dir = Path(data_dir)
        try:
            key = serialization.load_pem_private_key((data_dir / IDENTITY_KEY).read_bytes(), None)
            cert, fleet = (data_dir / IDENTITY_CERT).read_bytes(), (data_dir / FLEET_CA).read_bytes()
        except (OSError, ValueError) as exc:
            raise DeviceError(f"{data_dir} holds no fleet identity: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise DeviceError("the identity key is not an EC key")
        return cls(key, cert, fleet)

    @staticmethod
    def present(data_dir: Path | str) -> bool:
        data_dir = Path(data_dir)
        return all((data_dir / name).is_file() for name in (IDENTITY_KEY, IDENTITY_CERT, FLEET_CA))


def _issue_from_fleet(fleet_ca_cert: Path, fleet_ca_key: Path, name: str, key_path: Path, cert_path: Path,
                      days: int, client: bool = False) -> x509.Certificate:
    """A new P-256 key (written 0600) and its certificate from the fleet CA named ``name``; ``client`` adds the
    clientAuth extended key usage. Returns the fleet CA's certificate."""
    ca_cert = x509.load_pem_x509_certificate(Path(fleet_ca_cert).read_bytes())
    ca_key = serialization.load_pem_private_key(Path(fleet_ca_key).read_bytes(), None)
    # DSA left out: deprecated (FIPS 186-5), and naming its class makes cryptography warn on every command
    if not isinstance(ca_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey,
                               ed448.Ed448PrivateKey)):
        raise ValueError(f"{fleet_ca_key} holds no key that signs certificates")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                                        critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    Path(cert_path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca_cert


def provision(data_dir: Path | str, fleet_ca_cert: Path, fleet_ca_key: Path, name: str, days: int = 3650) -> None:
    """Give an HSM data directory a fleet identity: a new P-256 key and a certificate from the fleet CA."""
    data_dir = Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_cert = _issue_from_fleet(fleet_ca_cert, fleet_ca_key, name, data_dir / IDENTITY_KEY, data_dir / IDENTITY_CERT,
                                days)
    (data_dir / FLEET_CA).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))


def verify_fleet_certificate(fleet_ca_pem: bytes, certificate_pem: bytes) -> x509.Certificate:
    """A fleet HSM certificate: PEM X.509 with a P-256 key, issued by the fleet CA, valid now.

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a certificate that is not PEM X.509 with a P-256 key.
        SignatureInvalid: ``CKR_SIGNATURE_INVALID`` when the fleet CA did not issue it or it is not valid now.
    """
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem)
        fleet = x509.load_pem_x509_certificate(fleet_ca_pem)
    except ValueError:
        raise ArgumentsBad("the fleet certificate is not a PEM X.509 certificate") from None
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ArgumentsBad("a fleet certificate carries a P-256 key")
    try:
        cert.verify_directly_issued_by(fleet)
    except (ValueError, TypeError, InvalidSignature):
        raise SignatureInvalid("the certificate was not issued by this fleet's CA") from None
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SignatureInvalid("the fleet certificate is not valid now")
    return cert


# The control plane's identity: a client certificate from the fleet CA with this common name and the clientAuth
# extended key usage (HSM identities have neither), which HSMs accept as the appliance user without a password.
APPLIANCE_NAME = "strongroom-appliance"


def issue_appliance(fleet_ca_cert: Path, fleet_ca_key: Path, key_path: Path, cert_path: Path,
                    days: int = 3650) -> None:
    """Issue the control plane's appliance identity: a new P-256 key (written 0600) and its certificate."""
    _issue_from_fleet(fleet_ca_cert, fleet_ca_key, APPLIANCE_NAME, key_path, cert_path, days, client=True)


def is_appliance(fleet_ca_pem: bytes, certificate_der: bytes) -> bool:
    """Whether a TLS client certificate is the fleet's appliance identity: issued directly by the fleet CA, valid
    now, named ``APPLIANCE_NAME`` and for client authentication."""
    try:
        cert = x509.load_der_x509_certificate(certificate_der)
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(fleet_ca_pem))
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    now = datetime.datetime.now(datetime.UTC)
    return (names == [APPLIANCE_NAME] and ExtendedKeyUsageOID.CLIENT_AUTH in usage
            and cert.not_valid_before_utc <= now <= cert.not_valid_after_utc)


def fingerprint(certificate_pem: bytes) -> str:
    """The SHA-256 fingerprint (hex) of a PEM certificate's DER encoding.

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for something that is not a PEM X.509 certificate.
    """
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError:
        raise ArgumentsBad("not a PEM X.509 certificate") from None
    return cert.fingerprint(hashes.SHA256()).hex()
