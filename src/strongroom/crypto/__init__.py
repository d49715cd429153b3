"""The crypto layer: PKCS#11 mechanisms on top of ``cryptography``, with no storage and no sessions.

Keys come in as values: secret keys as ``bytes``, private and public keys as ``cryptography`` objects.
Errors are :mod:`strongroom.errors` classes carrying their ``CKR_*`` code.
"""

from .ciphers import CipherOperation, decrypt_init, encrypt_init, forget_keys
from .derivation import derive, ecdh_kdf
from .digests import DigestOperation, digest_init, hash_for
from .keys import (
    ED25519,
    EdwardsCurve,
    PrivateKey,
    PublicKey,
    check_value,
    curve_from_ec_params,
    ec_params_for,
    generate_key_pair,
    generate_secret,
    private_key_from_der,
    private_key_to_der,
    public_attributes,
    public_key_from_attributes,
    public_key_from_der,
    public_key_from_point,
    public_key_to_der,
)
from .random import RandomSource, random_bytes
from .selftest import SELF_TESTS, SelfTestResult, require_self_tests, run_self_tests
from .signatures import SignOperation, VerifyOperation, sign_init, verify_init
from .wrapping import unwrap, wrap

__all__ = [
    "ED25519",
    "SELF_TESTS",
    "CipherOperation",
    "DigestOperation",
    "EdwardsCurve",
    "PrivateKey",
    "PublicKey",
    "RandomSource",
    "SelfTestResult",
    "SignOperation",
    "VerifyOperation",
    "check_value",
    "curve_from_ec_params",
    "decrypt_init",
    "derive",
    "digest_init",
    "ec_params_for",
    "ecdh_kdf",
    "encrypt_init",
    "forget_keys",
    "generate_key_pair",
    "generate_secret",
    "hash_for",
    "private_key_from_der",
    "private_key_to_der",
    "public_attributes",
    "public_key_from_attributes",
    "public_key_from_der",
    "public_key_from_point",
    "public_key_to_der",
    "random_bytes",
    "require_self_tests",
    "run_self_tests",
    "sign_init",
    "unwrap",
    "verify_init",
    "wrap",
]
