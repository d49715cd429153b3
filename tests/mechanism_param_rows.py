"""The parameter-consistency table walked row by row: one bad parameter per rule, with the door that reaches it.

Each row is (mechanism, parameter, operation, what the message names). The operation says which call carries the
mechanism: ``cipher`` (AES encrypt), ``mac`` (AES sign), ``hmac`` (generic-secret sign), ``rsa_verify``,
``rsa_encrypt``, ``rsa_wrap`` (RSA public key wrapping an AES key), ``ec_derive``, ``kdf_derive``, ``generate``
(secret-key generation) and ``digest``. Every row answers ``CKR_MECHANISM_PARAM_INVALID``; ``GOOD`` holds the
consistent variants that must keep working.
"""

from __future__ import annotations

from strongroom.mechanism_params import (
    CounterFormat,
    CtrParams,
    DkmLengthFormat,
    Ecdh1DeriveParams,
    GcmParams,
    Mechanism,
    OaepParams,
    PrfDataParam,
    PssParams,
    RsaAesKeyWrapParams,
    Sp800108Params,
)
from strongroom.vocab import CK_SP800_108, CKD, CKG, CKM

IV12 = bytes(range(12))
IV16 = bytes(range(16))
POINT = bytes.fromhex("04" + "11" * 64)
OAEP = OaepParams(CKM.SHA256, CKG.MGF1_SHA256)
COUNTER = PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat(False, 32))
LABEL = PrfDataParam(CK_SP800_108.BYTE_ARRAY, b"label")


def _kdf(*items: PrfDataParam, prf: int = CKM.SHA256_HMAC) -> Sp800108Params:
    return Sp800108Params(prf, list(items))


ROWS: list[tuple[str, Mechanism, str, str]] = [
    # AES-GCM: ulIvBits against ulIvLen, the IV length, the tag length, the struct itself
    ("gcm-ivbits-12345", Mechanism(CKM.AES_GCM, GcmParams(IV12, b"", 128, 12345)), "cipher", "ulIvBits"),
    ("gcm-ivbits-64", Mechanism(CKM.AES_GCM, GcmParams(IV12, b"", 128, 64)), "cipher", "ulIvBits"),
    ("gcm-ivbits-without-iv", Mechanism(CKM.AES_GCM, GcmParams(b"", b"", 128, 96)), "cipher", "ulIvBits"),
    ("gcm-iv-16", Mechanism(CKM.AES_GCM, GcmParams(IV16)), "cipher", "the IV is 12 bytes"),
    ("gcm-tag-64", Mechanism(CKM.AES_GCM, GcmParams(IV12, b"", 64)), "cipher", "ulTagBits"),
    ("gcm-tag-100", Mechanism(CKM.AES_GCM, GcmParams(IV12, b"", 100)), "cipher", "ulTagBits"),
    ("gcm-tag-136", Mechanism(CKM.AES_GCM, GcmParams(IV12, b"", 136)), "cipher", "ulTagBits"),
    ("gcm-missing", Mechanism(CKM.AES_GCM), "cipher", "needs its parameter"),
    ("gcm-bytes", Mechanism(CKM.AES_GCM, IV12), "cipher", "CK_GCM_PARAMS"),
    # AES-CBC, AES-CBC-PAD: the 16-byte IV
    ("cbc-iv-12", Mechanism(CKM.AES_CBC, IV12), "cipher", "16-byte IV"),
    ("cbc-missing", Mechanism(CKM.AES_CBC), "cipher", "needs its parameter"),
    ("cbc-pad-iv-17", Mechanism(CKM.AES_CBC_PAD, IV16 + b"\0"), "cipher", "16-byte IV"),
    # AES-CTR: the counter block and ulCounterBits 1..128
    ("ctr-cb-15", Mechanism(CKM.AES_CTR, CtrParams(IV16[:15], 32)), "cipher", "counter block"),
    ("ctr-bits-0", Mechanism(CKM.AES_CTR, CtrParams(IV16, 0)), "cipher", "ulCounterBits"),
    ("ctr-bits-129", Mechanism(CKM.AES_CTR, CtrParams(IV16, 129)), "cipher", "ulCounterBits"),
    ("ctr-iv", Mechanism(CKM.AES_CTR, IV16), "cipher", "CK_AES_CTR_PARAMS"),
    # RSA-OAEP: hashAlg, mgf, source (CKZ_DATA_SPECIFIED; 0 only without a label) and label
    ("oaep-hash-hmac", Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(CKM.SHA256_HMAC, CKG.MGF1_SHA256)), "rsa_encrypt",
     "hashAlg"),
    ("oaep-mgf-7", Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(CKM.SHA256, 7)), "rsa_encrypt", "mgf"),
    ("oaep-source-0-label", Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(CKM.SHA256, CKG.MGF1_SHA256, 0, b"L")),
     "rsa_encrypt", "source"),
    ("oaep-source-2", Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(CKM.SHA256, CKG.MGF1_SHA256, 2)), "rsa_encrypt",
     "source"),
    ("oaep-missing", Mechanism(CKM.RSA_PKCS_OAEP), "rsa_encrypt", "needs its parameter"),
    # RSA-PSS: hashAlg, mgf, the hashed mechanism's own hash, sLen
    ("pss-hash-hmac", Mechanism(CKM.RSA_PKCS_PSS, PssParams(CKM.SHA256_HMAC, CKG.MGF1_SHA256, 32)), "rsa_verify",
     "hashAlg"),
    ("pss-mgf-9", Mechanism(CKM.RSA_PKCS_PSS, PssParams(CKM.SHA256, 9, 32)), "rsa_verify", "mgf"),
    ("pss-salt-negative", Mechanism(CKM.RSA_PKCS_PSS, PssParams(CKM.SHA256, CKG.MGF1_SHA256, -1)), "rsa_verify",
     "sLen"),
    ("pss-missing", Mechanism(CKM.RSA_PKCS_PSS), "rsa_verify", "needs its parameter"),
    *[(f"pss-{mech.name.lower()}-other-hash",
       Mechanism(mech, PssParams(CKM.SHA384 if mech != CKM.SHA384_RSA_PKCS_PSS else CKM.SHA256, CKG.MGF1_SHA256, 32)),
       "rsa_verify", "own hash")
      for mech in (CKM.SHA1_RSA_PKCS_PSS, CKM.SHA224_RSA_PKCS_PSS, CKM.SHA256_RSA_PKCS_PSS, CKM.SHA384_RSA_PKCS_PSS,
                   CKM.SHA512_RSA_PKCS_PSS)],
    # CK_MAC_GENERAL_PARAMS: 1..the full MAC length
    *[(f"{mech.name.lower()}-{length}", Mechanism(mech, length), op, f"1..{full}")
      for mech, full, op in ((CKM.SHA_1_HMAC_GENERAL, 20, "hmac"), (CKM.SHA224_HMAC_GENERAL, 28, "hmac"),
                             (CKM.SHA256_HMAC_GENERAL, 32, "hmac"), (CKM.SHA384_HMAC_GENERAL, 48, "hmac"),
                             (CKM.SHA512_HMAC_GENERAL, 64, "hmac"), (CKM.AES_CMAC_GENERAL, 16, "mac"))
      for length in (0, full + 1)],
    # RSA-AES key wrap: the AES key size and its OAEP
    ("rsa-aes-bits-100", Mechanism(CKM.RSA_AES_KEY_WRAP, RsaAesKeyWrapParams(100, OAEP)), "rsa_wrap",
     "ulAESKeyBits"),
    ("rsa-aes-oaep-source-2",
     Mechanism(CKM.RSA_AES_KEY_WRAP, RsaAesKeyWrapParams(256, OaepParams(CKM.SHA256, CKG.MGF1_SHA256, 2))),
     "rsa_wrap", "source"),
    ("rsa-aes-oaep-mgf", Mechanism(CKM.RSA_AES_KEY_WRAP, RsaAesKeyWrapParams(256, OaepParams(CKM.SHA256, 0))),
     "rsa_wrap", "mgf"),
    # ECDH1: kdf, shared data with CKD_NULL, the peer's point
    ("ecdh-kdf-99", Mechanism(CKM.ECDH1_DERIVE, Ecdh1DeriveParams(0x99, b"", POINT)), "ec_derive", "kdf"),
    ("ecdh-null-shared", Mechanism(CKM.ECDH1_DERIVE, Ecdh1DeriveParams(CKD.NULL, b"info", POINT)), "ec_derive",
     "CKD_NULL"),
    ("ecdh-no-point", Mechanism(CKM.ECDH1_DERIVE, Ecdh1DeriveParams(CKD.SHA256_KDF, b"", b"")), "ec_derive",
     "pPublicData"),
    # SP 800-108 counter KDF: the PRF, the iteration variable, the DKM length, byte arrays
    ("kdf-prf-sha256", Mechanism(CKM.SP800_108_COUNTER_KDF, _kdf(COUNTER, prf=CKM.SHA256)), "kdf_derive",
     "prfType"),
    ("kdf-no-counter", Mechanism(CKM.SP800_108_COUNTER_KDF, _kdf(LABEL)), "kdf_derive", "iteration variable"),
    ("kdf-two-counters", Mechanism(CKM.SP800_108_COUNTER_KDF, _kdf(COUNTER, LABEL, COUNTER)), "kdf_derive",
     "iteration variable"),
    ("kdf-counter-12-bits",
     Mechanism(CKM.SP800_108_COUNTER_KDF,
               _kdf(PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat(False, 12)))),
     "kdf_derive", "8, 16, 24 or 32 bits"),
    ("kdf-counter-little-endian",
     Mechanism(CKM.SP800_108_COUNTER_KDF,
               _kdf(PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, CounterFormat(True, 32)))),
     "kdf_derive", "big-endian"),
    ("kdf-counter-bytes",
     Mechanism(CKM.SP800_108_COUNTER_KDF, _kdf(PrfDataParam(CK_SP800_108.ITERATION_VARIABLE, b"\0"))),
     "kdf_derive", "CK_SP800_108_COUNTER_FORMAT"),
    ("kdf-dkm-7-bits",
     Mechanism(CKM.SP800_108_COUNTER_KDF,
               _kdf(COUNTER, PrfDataParam(CK_SP800_108.DKM_LENGTH, DkmLengthFormat(1, False, 7)))),
     "kdf_derive", "8..64 bits"),
    ("kdf-dkm-72-bits",
     Mechanism(CKM.SP800_108_COUNTER_KDF,
               _kdf(COUNTER, PrfDataParam(CK_SP800_108.DKM_LENGTH, DkmLengthFormat(1, False, 72)))),
     "kdf_derive", "8..64 bits"),
    ("kdf-dkm-method-9",
     Mechanism(CKM.SP800_108_COUNTER_KDF,
               _kdf(COUNTER, PrfDataParam(CK_SP800_108.DKM_LENGTH, DkmLengthFormat(9, False, 32)))),
     "kdf_derive", "method 9"),
    ("kdf-two-dkm",
     Mechanism(CKM.SP800_108_COUNTER_KDF,
               _kdf(COUNTER, *[PrfDataParam(CK_SP800_108.DKM_LENGTH, DkmLengthFormat())] * 2)),
     "kdf_derive", "at most one DKM length"),
    ("kdf-empty-bytes",
     Mechanism(CKM.SP800_108_COUNTER_KDF, _kdf(COUNTER, PrfDataParam(CK_SP800_108.BYTE_ARRAY, b""))),
     "kdf_derive", "at least one byte"),
    ("kdf-optional-counter",
     Mechanism(CKM.SP800_108_COUNTER_KDF, _kdf(COUNTER, PrfDataParam(CK_SP800_108.OPTIONAL_COUNTER, None))),
     "kdf_derive", "no place in counter mode"),
    ("kdf-missing", Mechanism(CKM.SP800_108_COUNTER_KDF), "kdf_derive", "needs its parameter"),
    # mechanisms that take no parameter
    ("ecb-with-iv", Mechanism(CKM.AES_ECB, IV16), "cipher", "takes no parameter"),
    ("kwp-with-iv", Mechanism(CKM.AES_KEY_WRAP_PAD, b"\xa6\x59\x59\xa6"), "cipher", "takes no parameter"),
    ("cmac-with-length", Mechanism(CKM.AES_CMAC, 8), "mac", "takes no parameter"),
    ("hmac-with-length", Mechanism(CKM.SHA256_HMAC, 16), "hmac", "takes no parameter"),
    ("rsa-pkcs-with-oaep", Mechanism(CKM.RSA_PKCS, OAEP), "rsa_encrypt", "takes no parameter"),
    ("sha256-rsa-pkcs-with-pss", Mechanism(CKM.SHA256_RSA_PKCS, PssParams()), "rsa_verify", "takes no parameter"),
    ("sha256-with-bytes", Mechanism(CKM.SHA256, b"\0"), "digest", "takes no parameter"),
    ("aes-keygen-with-bytes", Mechanism(CKM.AES_KEY_GEN, b"\0"), "generate", "takes no parameter"),
]

GOOD: list[tuple[str, Mechanism, str]] = [
    ("gcm-ivbits-96", Mechanism(CKM.AES_GCM, GcmParams(IV12, b"aad", 128, 96)), "cipher"),
    ("gcm-ivbits-0", Mechanism(CKM.AES_GCM, GcmParams(IV12, b"aad", 128, 0)), "cipher"),
    ("gcm-ivbits-absent", Mechanism(CKM.AES_GCM, GcmParams(IV12, b"aad", 96)), "cipher"),
    ("oaep-label", Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(CKM.SHA256, CKG.MGF1_SHA1, source_data=b"L")),
     "rsa_encrypt"),
    # source 0 without a label: no source PKCS#11 defines, accepted as "no label" (what pkcs11-tool sends)
    ("oaep-source-0", Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(CKM.SHA256, CKG.MGF1_SHA256, 0)), "rsa_encrypt"),
    ("pss-salt-0", Mechanism(CKM.SHA256_RSA_PKCS_PSS, PssParams(CKM.SHA256, CKG.MGF1_SHA256, 0)), "rsa_verify"),
    ("ctr-bits-1", Mechanism(CKM.AES_CTR, CtrParams(IV16[:15] + b"\x0e", 1)), "cipher"),  # room for 2 blocks
    ("ctr-bits-128", Mechanism(CKM.AES_CTR, CtrParams(IV16, 128)), "cipher"),
    ("hmac-general-full", Mechanism(CKM.SHA256_HMAC_GENERAL, 32), "hmac"),
]
