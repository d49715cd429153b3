"""Shared keys for the crypto tests; RSA generation is slow, so each worker makes its keys once."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from strongroom.crypto import generate_key_pair
from strongroom.vocab import CKM


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key made by Strongroom's own key-pair generation."""
    key = generate_key_pair(CKM.RSA_PKCS_KEY_PAIR_GEN, modulus_bits=2048)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="session")
def p256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()
