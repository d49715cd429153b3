"""Raw RSA, ``CKM_RSA_X_509`` (PKCS#11 3.0 §2.1.7 "X.509 (raw) RSA"): the RSA primitives RSAEP/RSADP and
RSASP1/RSAVP1 of RFC 8017 §5 on the whole block, with no padding. Offered by ``NON_FIPS`` clusters only
(:mod:`strongroom.mechanism_catalogue`).

``cryptography`` exposes no unpadded RSA, so the primitives run here on the key's numbers with Python
integers (the private one with the CRT, RFC 8017 §5.1.2): not constant-time, a legacy mechanism for
applications and their tests, not for new designs.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa

from ..errors import DataInvalid, DataLenRange, EncryptedDataLenRange, SignatureInvalid, SignatureLenRange


def block_len(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> int:
    """The modulus length ``k`` in bytes: every output of raw RSA is this long."""
    return (key.key_size + 7) // 8


def _representative(data: bytes, modulus: int, size: int,
                    error: type[DataLenRange] | type[EncryptedDataLenRange]) -> int:
    """The integer of ``data`` (big-endian, at most ``size`` bytes), which must be below the modulus."""
    if len(data) > size:
        raise error(f"raw RSA takes at most {size} bytes with this key, not {len(data)}")
    value = int.from_bytes(data, "big")
    if value >= modulus:
        raise DataInvalid("the input, as a big-endian integer, is not below the key's modulus")
    return value


def public_operation(key: rsa.RSAPublicKey, data: bytes) -> bytes:
    """RSAEP: ``data^e mod n``, ``k`` bytes (``C_Encrypt``).

    Raises:
        DataLenRange: (``CKR_DATA_LEN_RANGE``) more than ``k`` bytes.
        DataInvalid: (``CKR_DATA_INVALID``) not below the modulus.
    """
    numbers = key.public_numbers()
    size = block_len(key)
    value = _representative(data, numbers.n, size, DataLenRange)
    return pow(value, numbers.e, numbers.n).to_bytes(size, "big")


def private_operation(key: rsa.RSAPrivateKey, data: bytes, *, ciphertext: bool) -> bytes:
    """RSADP / RSASP1: ``data^d mod n`` by the CRT, ``k`` bytes (``C_Decrypt`` with ``ciphertext``, ``C_Sign``).

    Raises:
        EncryptedDataLenRange: (``CKR_ENCRYPTED_DATA_LEN_RANGE``) a ciphertext of another length than ``k``.
        DataLenRange: (``CKR_DATA_LEN_RANGE``) data to sign longer than ``k`` bytes.
        DataInvalid: (``CKR_DATA_INVALID``) not below the modulus.
    """
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    size = block_len(key)
    if ciphertext and len(data) != size:
        raise EncryptedDataLenRange(f"a raw RSA ciphertext is {size} bytes with this key, not {len(data)}")
    value = _representative(data, n, size, EncryptedDataLenRange if ciphertext else DataLenRange)
    m1 = pow(value, numbers.dmp1, numbers.p)
    m2 = pow(value, numbers.dmq1, numbers.q)
    h = (numbers.iqmp * (m1 - m2)) % numbers.p
    return (m2 + h * numbers.q).to_bytes(size, "big")


def verify(key: rsa.RSAPublicKey, data: bytes, signature: bytes) -> None:
    """RSAVP1: ``signature^e mod n`` must equal ``data`` as an integer (``C_Verify``).

    Raises:
        SignatureLenRange: (``CKR_SIGNATURE_LEN_RANGE``) a signature of another length than ``k``.
        SignatureInvalid: (``CKR_SIGNATURE_INVALID``) it does not match, or the data is longer than ``k``.
    """
    numbers = key.public_numbers()
    size = block_len(key)
    if len(signature) != size:
        raise SignatureLenRange(f"a raw RSA signature is {size} bytes with this key, not {len(signature)}")
    value = int.from_bytes(signature, "big")
    if value >= numbers.n or len(data) > size or pow(value, numbers.e, numbers.n) != int.from_bytes(data, "big"):
        raise SignatureInvalid("the signature does not match the data")
