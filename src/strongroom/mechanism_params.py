"""Mechanism parameters (``CK_*_PARAMS`` of PKCS#11 3.0), one frozen struct each.

A :class:`Mechanism` pairs a ``CKM`` with its parameter. The same structs travel on the wire (msgspec
msgpack), so they hold only plain values: ``bytes``, ``int`` and enums' integer values.
"""

from __future__ import annotations

import msgspec

from .vocab import CKD, CKG, CKM, CKZ


class GcmParams(msgspec.Struct, frozen=True, tag=True):
    """``CK_GCM_PARAMS`` (PKCS#11 3.0 §2.12.3; NIST SP 800-38D).

    Attributes:
        iv: the 12-byte IV; empty asks the HSM to generate one (returned by the encrypt-init call).
        aad: additional authenticated data, any length.
        tag_bits: tag length in bits, 96–128 in steps of 8.
        iv_bits: ``ulIvBits`` as the application set it: ``None`` (not given), 0, or ``8 * len(iv)``; any other
            value contradicts ``ulIvLen`` and is ``CKR_MECHANISM_PARAM_INVALID`` (:mod:`.mechanism_rules`).
    """

    iv: bytes = b""
    aad: bytes = b""
    tag_bits: int = 128
    iv_bits: int | None = None


class CtrParams(msgspec.Struct, frozen=True, tag=True):
    """``CK_AES_CTR_PARAMS`` (PKCS#11 3.0 §2.12.2): ``counter_bits`` low bits of the 16-byte ``cb`` count."""

    cb: bytes
    counter_bits: int = 128


class OaepParams(msgspec.Struct, frozen=True, tag=True):
    """``CK_RSA_PKCS_OAEP_PARAMS`` (PKCS#11 3.0 §2.1.8; RFC 8017 §7.1).

    Attributes:
        hash_alg: ``CKM.SHA_1``, ``CKM.SHA224``, … the OAEP hash.
        mgf: ``CKG.MGF1_*``; may name another hash than ``hash_alg``.
        source: ``CKZ.DATA_SPECIFIED`` (or 0 for none).
        source_data: the OAEP label.
    """

    hash_alg: int = CKM.SHA_1
    mgf: int = CKG.MGF1_SHA1
    source: int = CKZ.DATA_SPECIFIED
    source_data: bytes = b""


class PssParams(msgspec.Struct, frozen=True, tag=True):
    """``CK_RSA_PKCS_PSS_PARAMS`` (PKCS#11 3.0 §2.1.11; RFC 8017 §8.1): hash, MGF and salt length in bytes."""

    hash_alg: int = CKM.SHA256
    mgf: int = CKG.MGF1_SHA256
    salt_len: int = 32


class RsaAesKeyWrapParams(msgspec.Struct, frozen=True, tag=True):
    """``CK_RSA_AES_KEY_WRAP_PARAMS`` (PKCS#11 3.0 §2.1.21): ephemeral AES key size in bits and its OAEP wrap."""

    aes_key_bits: int = 256
    oaep: OaepParams = OaepParams()


class Ecdh1DeriveParams(msgspec.Struct, frozen=True, tag=True):
    """``CK_ECDH1_DERIVE_PARAMS`` (PKCS#11 3.0 §2.3.10).

    Attributes:
        kdf: ``CKD.NULL`` or ``CKD.SHA*_KDF`` (ANSI X9.63 KDF).
        shared_data: KDF shared info; must be empty with ``CKD.NULL``.
        public_data: the peer's public point, raw uncompressed (``04‖X‖Y``) or DER OCTET STRING of it.
    """

    kdf: int = CKD.NULL
    shared_data: bytes = b""
    public_data: bytes = b""


class CounterFormat(msgspec.Struct, frozen=True, tag=True):
    """``CK_SP800_108_COUNTER_FORMAT``: the counter's encoding (big or little endian, width in bits)."""

    little_endian: bool = False
    width_bits: int = 32


class DkmLengthFormat(msgspec.Struct, frozen=True, tag=True):
    """``CK_SP800_108_DKM_LENGTH_FORMAT``: how the derived-key-material length L is counted and encoded."""

    method: int = 1  # CK_SP800_108_DKM_LENGTH.SUM_OF_KEYS
    little_endian: bool = False
    width_bits: int = 32


class PrfDataParam(msgspec.Struct, frozen=True, tag=True):
    """``CK_PRF_DATA_PARAM``: one input of the PRF, in order.

    Attributes:
        kind: a ``CK_SP800_108`` value (iteration variable, DKM length, byte array); ``type`` in the standard.
        value: ``CounterFormat`` for the iteration variable, ``DkmLengthFormat`` for the DKM length,
            ``bytes`` for a byte array.
    """

    kind: int
    value: CounterFormat | DkmLengthFormat | bytes | None = None


class Sp800108Params(msgspec.Struct, frozen=True, tag=True):
    """``CK_SP800_108_KDF_PARAMS`` (PKCS#11 3.0 §2.42; NIST SP 800-108r1 counter mode).

    Attributes:
        prf_type: ``CKM.SHA*_HMAC`` or ``CKM.AES_CMAC``.
        data_params: the PRF inputs in order; exactly one iteration variable.
    """

    prf_type: int
    data_params: list[PrfDataParam] = []


Parameter = (
    GcmParams | CtrParams | OaepParams | PssParams | RsaAesKeyWrapParams | Ecdh1DeriveParams | Sp800108Params
    | bytes | int | None
)


class Mechanism(msgspec.Struct, frozen=True):
    """``CK_MECHANISM``: a mechanism type and its parameter.

    ``parameter`` is a params struct, raw ``bytes`` (the 16-byte IV of CBC modes), an ``int``
    (``CK_MAC_GENERAL_PARAMS`` length) or ``None``.
    """

    mechanism: int
    parameter: Parameter = None
