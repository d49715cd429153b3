"""``crypto encrypt``/``decrypt`` and ``key import pem`` of private keys, each checked by an independent
implementation (``cryptography``): what the HSM encrypts it decrypts and the reverse, what an imported key signs it
verifies with the public half it kept."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric import padding as asym
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .runner import ALICE, BOB, cli

B64 = base64.b64encode


def _b64(data: bytes) -> str:
    return B64(data).decode()


def _known_aes_key(activated: Path, tmp_path: Path, label: str, value: bytes) -> None:
    """Bring an AES key whose value the test knows into the cluster: RSA-OAEP-wrapped under an HSM key pair's
    public half (exported as PEM), unwrapped by the private half."""
    cli(activated, "key", "generate-asymmetric-pair", "rsa", "--modulus-size-bits", "2048", "--public-label",
        f"{label}-kek-pub", "--private-label", f"{label}-kek", "--private-attributes", "unwrap=true", pin=ALICE)
    pem = tmp_path / f"{label}-kek.pem"
    cli(activated, "key", "generate-file", "--filter", f"attr.label={label}-kek-pub", "--path", str(pem), pin=ALICE)
    public = serialization.load_pem_public_key(pem.read_bytes())
    assert isinstance(public, rsa.RSAPublicKey)
    wrapped = public.encrypt(value, asym.OAEP(asym.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    cli(activated, "key", "unwrap", "rsa-oaep", "--filter", f"attr.label={label}-kek", "--key-type-class", "aes",
        "--label", label, "--data", _b64(wrapped), "--attributes", "encrypt=true", "decrypt=true",
        "--share-crypto-users", "bob", pin=ALICE)


def test_aes_gcm_and_cbc_both_ways_with_a_key_whose_value_the_test_knows(activated, tmp_path):
    value = os.urandom(32)
    _known_aes_key(activated, tmp_path, "known-aes", value)
    plain = tmp_path / "plain.bin"
    plain.write_bytes(os.urandom(1000) + b"\x00end")
    sealed_file = tmp_path / "sealed.bin"
    sealed = cli(activated, "crypto", "encrypt", "aes-gcm", "--key-filter", "attr.label=known-aes", "--data-path",
                 str(plain), "--aad", "0x0102", "--path", str(sealed_file), pin=ALICE)
    raw = sealed_file.read_bytes()
    assert "encrypted_data" not in sealed and sealed["encrypted_bytes"] == len(raw)
    assert sealed["path"] == str(sealed_file) and sealed["iv"] == "0x" + raw[:12].hex()
    assert len(raw) == 12 + len(plain.read_bytes()) + 16
    assert AESGCM(value).decrypt(raw[:12], raw[12:], b"\x01\x02") == plain.read_bytes()  # independent check
    back = cli(activated, "crypto", "decrypt", "aes-gcm", "--key-filter", "attr.label=known-aes", "--data-path",
               str(sealed_file), "--aad", "0102", pin=BOB)  # shared with bob as it was unwrapped
    assert base64.b64decode(back["decrypted_data"]) == plain.read_bytes()
    iv = os.urandom(12)  # and the reverse: sealed elsewhere, opened by the HSM, IV given apart
    theirs = AESGCM(value).encrypt(iv, b"sealed by cryptography", None)
    assert base64.b64decode(cli(activated, "crypto", "decrypt", "aes-gcm", "--key-filter", "attr.label=known-aes",
                                "--iv", iv.hex(), "--data", _b64(theirs), pin=ALICE)["decrypted_data"]) == (
        b"sealed by cryptography")
    short = cli(activated, "crypto", "encrypt", "aes-gcm", "--key-filter", "attr.label=known-aes", "--data",
                _b64(b"short tag"), "--tag-length-bits", "96", pin=ALICE)
    assert len(base64.b64decode(short["encrypted_data"])) == 12 + 9 + 12
    tampered = raw[:-1] + bytes([raw[-1] ^ 1])
    assert "CKR_ENCRYPTED_DATA_INVALID" in cli(activated, "crypto", "decrypt", "aes-gcm", "--key-filter",
                                               "attr.label=known-aes", "--data", _b64(tampered), "--aad", "0102",
                                               pin=ALICE, ok=False)

    cbc = base64.b64decode(cli(activated, "crypto", "encrypt", "aes-cbc-pad", "--key-filter", "attr.label=known-aes",
                               "--data-path", str(plain), pin=ALICE)["encrypted_data"])
    opener = Cipher(algorithms.AES(value), modes.CBC(cbc[:16])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    padded = opener.update(cbc[16:]) + opener.finalize()
    assert unpadder.update(padded) + unpadder.finalize() == plain.read_bytes()
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    sealer = Cipher(algorithms.AES(value), modes.CBC(iv)).encryptor()
    theirs = sealer.update(padder.update(b"cbc from elsewhere") + padder.finalize()) + sealer.finalize()
    out = tmp_path / "opened.bin"
    assert cli(activated, "crypto", "decrypt", "aes-cbc-pad", "--key-filter", "attr.label=known-aes", "--data",
               _b64(iv + theirs), "--path", str(out), pin=ALICE)["decrypted_bytes"] == len(b"cbc from elsewhere")
    assert out.read_bytes() == b"cbc from elsewhere"


def _pem(key: object, path: Path, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt,  # type: ignore[attr-defined]
                                       serialization.NoEncryption()))
    return path


def test_rsa_private_keys_imported_from_pem_sign_and_decrypt_as_their_public_halves_expect(activated, tmp_path):
    private = rsa.generate_private_key(65537, 2048)
    pem = _pem(private, tmp_path / "rsa.pem", serialization.PrivateFormat.TraditionalOpenSSL)  # PKCS#1
    imported = cli(activated, "key", "import", "pem", "--path", str(pem), "--label", "imported-rsa",
                   "--key-type-class", "rsa-private", "--attributes", "sign=true", "decrypt=true",
                   "--share-crypto-users", "bob", pin=ALICE)
    assert imported["message"] == "Successfully imported key"
    attributes = imported["key"]["attributes"]
    assert (attributes["class"], attributes["key-type"], attributes["local"]) == ("private-key", "rsa", False)
    assert int(attributes["modulus"], 16) == private.public_key().public_numbers().n
    message = b"signed by an imported key"
    signature = cli(activated, "crypto", "sign", "rsa-pkcs-pss", "--key-filter", "attr.label=imported-rsa",
                    "--hash-function", "sha256", "--data", _b64(message), pin=BOB)["signature"]  # shared at once
    private.public_key().verify(base64.b64decode(signature), message,
                                asym.PSS(asym.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    sealed = private.public_key().encrypt(b"to the HSM", asym.OAEP(asym.MGF1(hashes.SHA1()), hashes.SHA1(), None))
    assert base64.b64decode(cli(activated, "crypto", "decrypt", "rsa-oaep", "--key-filter", "attr.label=imported-rsa",
                                "--hash-function", "sha1", "--data", _b64(sealed), pin=ALICE)[
        "decrypted_data"]) == b"to the HSM"
    public_pem = tmp_path / "rsa-public.pem"
    public_pem.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    cli(activated, "key", "import", "pem", "--path", str(public_pem), "--label", "imported-rsa-pub",
        "--key-type-class", "rsa-public", "--attributes", "encrypt=true", pin=ALICE)
    out = base64.b64decode(cli(activated, "crypto", "encrypt", "rsa-oaep", "--key-filter",
                               "attr.label=imported-rsa-pub", "--hash-function", "sha384", "--data",
                               _b64(b"from the HSM"), pin=ALICE)["encrypted_data"])
    assert private.decrypt(out, asym.OAEP(asym.MGF1(hashes.SHA384()), hashes.SHA384(), None)) == b"from the HSM"



def test_ec_and_ed25519_keys_imported_from_pem_sign_as_their_public_halves_expect(activated, tmp_path):
    message = b"signed by an imported key"
    ec_private = ec.generate_private_key(ec.SECP384R1())
    cli(activated, "key", "import", "pem", "--path", str(_pem(ec_private, tmp_path / "ec.pem",
                                                               serialization.PrivateFormat.TraditionalOpenSSL)),
        "--label", "imported-ec", "--key-type-class", "ec-private", "--attributes", "sign=true", pin=ALICE)
    raw = base64.b64decode(cli(activated, "crypto", "sign", "ecdsa", "--key-filter", "attr.label=imported-ec",
                               "--hash-function", "sha384", "--data", _b64(message), pin=ALICE)["signature"])
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    ec_private.public_key().verify(encode_dss_signature(int.from_bytes(raw[:48]), int.from_bytes(raw[48:])),
                                   message, ec.ECDSA(hashes.SHA384()))
    ed_private = ed25519.Ed25519PrivateKey.generate()
    made = cli(activated, "key", "import", "pem", "--path", str(_pem(ed_private, tmp_path / "ed.pem")), "--label",
               "imported-ed", "--key-type-class", "ec-private", "--attributes", "sign=true", pin=ALICE)["key"]
    assert made["attributes"]["key-type"] == "ec-edwards"
    ed_private.public_key().verify(base64.b64decode(cli(
        activated, "crypto", "sign", "ed25519", "--key-filter", "attr.label=imported-ed", "--data", _b64(message),
        pin=ALICE)["signature"]), message)
    ed_public = tmp_path / "ed-public.pem"
    ed_public.write_bytes(ed_private.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    assert cli(activated, "key", "import", "pem", "--path", str(ed_public), "--label", "imported-ed-pub",
               "--key-type-class", "ec-public", "--attributes", "verify=true", pin=ALICE)["key"]["attributes"][
        "key-type"] == "ec-edwards"
    assert cli(activated, "crypto", "verify", "ed25519", "--key-filter", "attr.label=imported-ed-pub", "--data",
               _b64(message), "--signature", _b64(ed_private.sign(message)), pin=ALICE) == {
        "message": "Signature verified successfully"}  # signed elsewhere, verified by the HSM
    # the import's own session keys are gone
    assert cli(activated, "key", "list", "--filter", "attr.label=key-import", pin=ALICE)["total_key_count"] == 0


def _encrypted(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"passphrase")))
    return path


def _public(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


@pytest.mark.parametrize(("make", "key_type_class", "says"), [
    (_encrypted, "ec-private", "holds an encrypted private key: decrypt it first"),
    (lambda p: _pem(ec.generate_private_key(ec.SECP256K1()), p), "ec-private",
     "the curve secp256k1 cannot be imported; Strongroom holds RSA keys, EC keys on prime256v1"),
    (lambda p: _pem(x25519.X25519PrivateKey.generate(), p), "ec-private", "that cannot be imported"),
    (lambda p: _pem(ed448.Ed448PrivateKey.generate(), p), "rsa-private", "Ed448PrivateKey that cannot be imported"),
    (lambda p: _pem(ed25519.Ed25519PrivateKey.generate(), p), "rsa-private", "does not hold a key of class rsa"),
    (_public, "ec-private", "holds no PEM private key (it looks like a public key: --key-type-class …-public)"),
    (lambda p: p.write_text("not a key") and p, "rsa-public", "holds no PEM public key"),
])
def test_what_cannot_be_imported_is_refused_with_what_to_do(activated, tmp_path, make, key_type_class, says):
    path = make(tmp_path / "key.pem")
    message = cli(activated, "key", "import", "pem", "--path", str(path), "--label", "refused", "--key-type-class",
                  key_type_class, pin=ALICE, ok=False)
    assert says in message, message
