"""InitializeCluster's checks on the HSM side: the owner's certificate, its chain and the trust anchor; the client
CAs admins register beside it."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from strongroom.errors import ArgumentsBad, FunctionNotSupported, SignatureInvalid
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
    refused = "not a CA certificate valid now" if bad.endswith("-anchor") else None
    with pytest.raises(SignatureInvalid, match=refused):
        cluster_certificate.initialized(identity, _pem(cert), _pem(root[0]))


def test_client_cas_are_registered_listed_and_unregistered_by_fingerprint(identity):
    root = _ca("root")
    done = cluster_certificate.initialized(identity, _pem(_signed(identity, root)), _pem(root[0]))
    assert done.client_anchors() == [_pem(root[0])]
    partner = _ca("partner-ca")
    with_partner, fingerprint = cluster_certificate.client_ca_added(done, _pem(partner[0]))
    assert fingerprint == partner[0].fingerprint(hashes.SHA256()).hex()
    assert with_partner.client_anchors() == [_pem(root[0]), _pem(partner[0])]
    assert cluster_certificate.ClusterIdentity.decode(with_partner.encode()) == with_partner
    listed = cluster_certificate.client_cas(with_partner)
    assert [(c["source"], c["subject"]) for c in listed] == [("owner", "CN=root"), ("registered", "CN=partner-ca")]
    assert cluster_certificate.client_ca_removed(with_partner, fingerprint.upper()).client_anchors() == \
        [_pem(root[0])]
    with pytest.raises(ArgumentsBad):  # the owner's anchor is not a registered client CA
        cluster_certificate.client_ca_removed(with_partner, root[0].fingerprint(hashes.SHA256()).hex())


@pytest.mark.parametrize("bad", ["uninitialised", "leaf", "expired", "two", "twice", "garbage"])
def test_client_cas_that_do_not_fit_are_refused(identity, bad):
    root = _ca("root")
    done = identity if bad == "uninitialised" else cluster_certificate.initialized(
        identity, _pem(_signed(identity, root)), _pem(root[0]))
    partner, other = _ca("partner-ca", days=-1 if bad == "expired" else 30), _ca("other-ca")
    pem = {"leaf": _pem(_ca("leaf", partner, ca=False)[0]), "two": _pem(partner[0], other[0]),
           "garbage": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}.get(bad, _pem(partner[0]))
    if bad == "twice":
        done, _ = cluster_certificate.client_ca_added(done, pem)
    with pytest.raises((ArgumentsBad, SignatureInvalid, FunctionNotSupported)):
        cluster_certificate.client_ca_added(done, pem)


def _openssl_signed(identity, tmp_path, *extensions: str) -> tuple[bytes, bytes]:
    """The CSR signed as the service documents (``openssl x509 -req``: no extensions unless given), and the
    signing CA's certificate."""
    import subprocess

    (tmp_path / "cluster.csr").write_bytes(identity.csr)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "customerCA.key"), "-out", str(tmp_path / "customerCA.crt"),
                    "-subj", "/CN=customerCA", "-days", "30"], check=True, capture_output=True)
    extra: list[str] = []
    if extensions:
        (tmp_path / "ext.cnf").write_text("\n".join(extensions) + "\n")
        extra = ["-extfile", str(tmp_path / "ext.cnf")]
    subprocess.run(["openssl", "x509", "-req", "-days", "3652", "-in", str(tmp_path / "cluster.csr"), "-CA",
                    str(tmp_path / "customerCA.crt"), "-CAkey", str(tmp_path / "customerCA.key"),
                    "-CAcreateserial", "-out", str(tmp_path / "cluster.crt"), *extra], check=True,
                   capture_output=True)
    return (tmp_path / "cluster.crt").read_bytes(), (tmp_path / "customerCA.crt").read_bytes()


def test_the_services_documented_openssl_signature_makes_hsms_serve_the_cluster_certificate(identity, tmp_path):
    certificate, anchor = _openssl_signed(identity, tmp_path)
    done = cluster_certificate.initialized(identity, certificate, anchor)
    assert cluster_certificate.serves_itself(done)  # not a CA: it issues nothing, the HSMs serve it as it is
    assert not cluster_certificate.serves_itself(identity)  # nothing before initialisation
    barrier = Barrier(bytes(32), "cluster-test0000001")
    key = serialization.load_pem_private_key(
        cluster_certificate.cluster_key_pem(done, barrier, "cluster-test0000001"), None)
    assert key.public_key() == x509.load_pem_x509_csr(identity.csr).public_key()
    served = cluster_certificate.write_served_certificate(done, tmp_path)
    assert x509.load_pem_x509_certificates(served.read_bytes()) == [x509.load_pem_x509_certificate(certificate)]
    assert cluster_certificate.issued_for(done, tmp_path)
    assert not (tmp_path / cluster_certificate.TLS_KEY).exists()  # the shared key is never written


@pytest.mark.parametrize(("extensions", "message"), [
    (("extendedKeyUsage = clientAuth",), "extended key usage must include serverAuth"),
    (("keyUsage = keyEncipherment",), "key usage must allow digitalSignature"),
    (("basicConstraints = critical, CA:TRUE", "keyUsage = digitalSignature"), "lacks keyCertSign"),
])
def test_a_cluster_certificate_fit_for_neither_form_is_refused(identity, tmp_path, extensions, message):
    certificate, anchor = _openssl_signed(identity, tmp_path, *extensions)
    with pytest.raises(SignatureInvalid, match=message):
        cluster_certificate.initialized(identity, certificate, anchor)


def test_a_ca_cluster_certificate_issues_each_hsm_a_certificate_naming_the_cluster(identity, tmp_path):
    certificate, anchor = _openssl_signed(identity, tmp_path, "basicConstraints = critical, CA:TRUE")
    done = cluster_certificate.initialized(identity, certificate, anchor)
    assert not cluster_certificate.serves_itself(done)
    barrier = Barrier(bytes(32), "cluster-test0000001")
    chain, _ = cluster_certificate.issue_tls(done, barrier, "cluster-test0000001", ["127.0.0.1"], tmp_path)
    leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["cluster-test0000001"]
    assert cluster_certificate.issued_for(done, tmp_path, "cluster-test0000001")
    assert not cluster_certificate.issued_for(done, tmp_path, "cluster-other000001")
