"""InitializeCluster's checks on the HSM side: the owner's certificate, its chain and the trust anchor."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from strongroom.errors import SignatureInvalid
from strongroom.store import Barrier
from strongroom.trust import cluster_certificate

NOW = datetime.datetime.now(datetime.UTC)


def _ca(name: str, issuer=None, *, ca: bool = True, days: int = 30, public=None):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_name, signer_key = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(signer_name)
            .public_key(public or key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=60)).not_valid_after(NOW + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer_key, hashes.SHA256()))
    return cert, key


def _pem(*certs) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.fixture
def identity():
    return cluster_certificate.new("cluster-test0000001", Barrier(bytes(32), "cluster-test0000001"))


def _signed(identity, issuer):
    csr = x509.load_pem_x509_csr(identity.csr)
    cert, _ = _ca("cluster", issuer, public=csr.public_key())
    return cert


def test_a_chain_through_an_intermediate_is_accepted_in_either_order(identity):
    root = _ca("root")
    intermediate = _ca("intermediate", root)
    cert = _signed(identity, intermediate)
    for anchor in (_pem(root[0], intermediate[0]), _pem(intermediate[0], root[0])):
        done = cluster_certificate.initialized(identity, _pem(cert), anchor)
        assert done.certificate == _pem(cert) and done.trust_anchor == anchor


@pytest.mark.parametrize("bad", ["expired-anchor", "non-ca-anchor", "foreign", "other-key"])
def test_anchors_and_certificates_that_do_not_fit_are_refused(identity, bad):
    root = _ca("root", days=-1) if bad == "expired-anchor" else _ca("root", ca=bad != "non-ca-anchor")
    cert = _signed(identity, root)
    if bad == "foreign":
        cert = _signed(identity, _ca("stranger"))
    if bad == "other-key":
        cert, _ = _ca("cluster", root)
    with pytest.raises(SignatureInvalid):
        cluster_certificate.initialized(identity, _pem(cert), _pem(root[0]))
