"""The consistency rules of every mechanism parameter, one table for every door (node API, SDK, PKCS#11 agent).

:func:`check` runs before a mechanism is used: the node applies it to every mechanism a call names (once the key's
usage is checked), so the SDK and the agent (whose calls the node serves) get the same answer,
``CKR_MECHANISM_PARAM_INVALID`` with a message saying what to fix; the ``crypto`` layer runs it again as each
operation starts, so no caller of that layer skips it.

:data:`RULES` holds one row per mechanism of :mod:`.mechanism_catalogue` that takes a parameter; a mechanism
without a row takes none. Rules that need the key (the PSS salt against the modulus, RSA-OAEP message room) or
the output length (SP 800-108's DKM length against its width) stay with the operation in ``crypto``.

docs/pkcs11.md ("Mechanism parameters") states each rule and its source in the standard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import MechanismParamInvalid
from .mechanism_catalogue import FIPS, NON_FIPS
from .mechanism_params import (
    CounterFormat,
    CtrParams,
    DkmLengthFormat,
    Ecdh1DeriveParams,
    GcmParams,
    Mechanism,
    OaepParams,
    Parameter,
    PssParams,
    RsaAesKeyWrapParams,
    Sp800108Params,
)
from .vocab import CK_SP800_108, CK_SP800_108_DKM_LENGTH, CKD, CKG, CKM, CKZ

HASH_BYTES = {CKM.SHA_1: 20, CKM.SHA224: 28, CKM.SHA256: 32, CKM.SHA384: 48, CKM.SHA512: 64}
"""The hashes a parameter may name (``hashAlg``), by output length in bytes."""
MGF1 = frozenset({CKG.MGF1_SHA1, CKG.MGF1_SHA224, CKG.MGF1_SHA256, CKG.MGF1_SHA384, CKG.MGF1_SHA512})
X963_KDFS = frozenset({CKD.SHA1_KDF, CKD.SHA224_KDF, CKD.SHA256_KDF, CKD.SHA384_KDF, CKD.SHA512_KDF})
AES_BLOCK = 16
GCM_IV_BYTES = 12
GCM_TAG_BITS = (96, 104, 112, 120, 128)
RSA_AES_KEY_BITS = (128, 192, 256)
COUNTER_WIDTHS = (8, 16, 24, 32)
_PSS_HASH = {
    CKM.SHA1_RSA_PKCS_PSS: CKM.SHA_1, CKM.SHA224_RSA_PKCS_PSS: CKM.SHA224, CKM.SHA256_RSA_PKCS_PSS: CKM.SHA256,
    CKM.SHA384_RSA_PKCS_PSS: CKM.SHA384, CKM.SHA512_RSA_PKCS_PSS: CKM.SHA512,
}
_MAC_BYTES = {
    CKM.SHA_1_HMAC_GENERAL: 20, CKM.SHA224_HMAC_GENERAL: 28, CKM.SHA256_HMAC_GENERAL: 32,
    CKM.SHA384_HMAC_GENERAL: 48, CKM.SHA512_HMAC_GENERAL: 64, CKM.AES_CMAC_GENERAL: 16,
}
_PRFS = frozenset({CKM.SHA_1_HMAC, CKM.SHA224_HMAC, CKM.SHA256_HMAC, CKM.SHA384_HMAC, CKM.SHA512_HMAC,
                   CKM.AES_CMAC})


def _bad(name: str, what: str) -> MechanismParamInvalid:
    return MechanismParamInvalid(f"{name}: {what}")


def _iv(name: str, param: Parameter) -> None:
    if not isinstance(param, bytes) or len(param) != AES_BLOCK:
        raise _bad(name, f"the parameter is the {AES_BLOCK}-byte IV")


def _ctr(name: str, param: Parameter) -> None:
    if not isinstance(param, CtrParams):
        raise _bad(name, "the parameter is CK_AES_CTR_PARAMS (CtrParams)")
    if len(param.cb) != AES_BLOCK:
        raise _bad(name, f"the counter block cb is {AES_BLOCK} bytes, not {len(param.cb)}")
    if not 1 <= param.counter_bits <= 128:
        raise _bad(name, f"ulCounterBits is 1..128, not {param.counter_bits}")


def _gcm(name: str, param: Parameter) -> None:
    if not isinstance(param, GcmParams):
        raise _bad(name, "the parameter is CK_GCM_PARAMS (GcmParams)")
    if param.iv and len(param.iv) != GCM_IV_BYTES:
        raise _bad(name, f"the IV is {GCM_IV_BYTES} bytes (or empty to have one generated), not {len(param.iv)}")
    if param.iv_bits is not None and param.iv_bits not in (0, len(param.iv) * 8):
        raise _bad(name, f"ulIvBits is the IV's length in bits, {len(param.iv) * 8} for a {len(param.iv)}-byte IV "
                         f"(or 0), not {param.iv_bits}")
    if param.tag_bits not in GCM_TAG_BITS:
        raise _bad(name, f"ulTagBits is 96..128 in steps of 8, not {param.tag_bits}")


def _hash_and_mgf(name: str, hash_alg: int, mgf: int) -> None:
    if hash_alg not in HASH_BYTES:
        raise _bad(name, f"hashAlg 0x{hash_alg:x} is not CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384 or CKM_SHA512")
    if mgf not in MGF1:
        raise _bad(name, f"mgf 0x{mgf:x} is not one of CKG_MGF1_SHA1/SHA224/SHA256/SHA384/SHA512")


def _oaep(name: str, param: Parameter) -> None:
    if not isinstance(param, OaepParams):
        raise _bad(name, "the parameter is CK_RSA_PKCS_OAEP_PARAMS (OaepParams)")
    _hash_and_mgf(name, param.hash_alg, param.mgf)
    # PKCS#11 3.0 §2.1.8 defines one source, CKZ_DATA_SPECIFIED. 0 is taken as "no label" only, as OpenSC's
    # pkcs11-tool and OpenSSL engines send it for every OAEP call (docs/pkcs11.md, "Mechanism parameters").
    if param.source == 0 and param.source_data:
        raise _bad(name, "a label (pSourceData) needs source CKZ_DATA_SPECIFIED (1), not 0")
    if param.source not in (0, CKZ.DATA_SPECIFIED):
        raise _bad(name, f"source is CKZ_DATA_SPECIFIED (1), the only source PKCS#11 defines, not {param.source}")


def _pss(name: str, param: Parameter, mechanism: int) -> None:
    if not isinstance(param, PssParams):
        raise _bad(name, "the parameter is CK_RSA_PKCS_PSS_PARAMS (PssParams)")
    _hash_and_mgf(name, param.hash_alg, param.mgf)
    own = _PSS_HASH.get(CKM(mechanism)) if mechanism in _PSS_HASH else None
    if own is not None and param.hash_alg != own:
        raise _bad(name, f"hashAlg must be the mechanism's own hash, CKM_{own.name}")
    if param.salt_len < 0:
        raise _bad(name, f"sLen is a length in bytes, not {param.salt_len}")


def _mac_length(name: str, param: Parameter, mechanism: int) -> None:
    full = _MAC_BYTES[CKM(mechanism)]
    if not isinstance(param, int) or isinstance(param, bool) or not 1 <= param <= full:
        raise _bad(name, f"the parameter is the MAC length in bytes, 1..{full}")


def _rsa_aes(name: str, param: Parameter) -> None:
    if not isinstance(param, RsaAesKeyWrapParams):
        raise _bad(name, "the parameter is CK_RSA_AES_KEY_WRAP_PARAMS (RsaAesKeyWrapParams)")
    if param.aes_key_bits not in RSA_AES_KEY_BITS:
        raise _bad(name, f"ulAESKeyBits is 128, 192 or 256, not {param.aes_key_bits}")
    _oaep(name, param.oaep)


def _ecdh1(name: str, param: Parameter) -> None:
    if not isinstance(param, Ecdh1DeriveParams):
        raise _bad(name, "the parameter is CK_ECDH1_DERIVE_PARAMS (Ecdh1DeriveParams)")
    if param.kdf != CKD.NULL and param.kdf not in X963_KDFS:
        raise _bad(name, f"kdf 0x{param.kdf:x} is not CKD_NULL or CKD_SHA1/224/256/384/512_KDF")
    if param.kdf == CKD.NULL and param.shared_data:
        raise _bad(name, "CKD_NULL takes no shared data")
    if not param.public_data:
        raise _bad(name, "pPublicData, the peer's public point, is missing")


def _sp800_108(name: str, param: Parameter) -> None:
    if not isinstance(param, Sp800108Params):
        raise _bad(name, "the parameter is CK_SP800_108_KDF_PARAMS (Sp800108Params)")
    if param.prf_type not in _PRFS:
        raise _bad(name, f"prfType 0x{param.prf_type:x} is not a SHA-1/SHA-2 HMAC or CKM_AES_CMAC")
    counters = dkm = 0
    for item in param.data_params:
        if item.kind == CK_SP800_108.ITERATION_VARIABLE:
            counters += 1
            if not isinstance(item.value, CounterFormat):
                raise _bad(name, "the iteration variable's value is a CK_SP800_108_COUNTER_FORMAT")
            if item.value.little_endian or item.value.width_bits not in COUNTER_WIDTHS:
                raise _bad(name, "the counter is big-endian, 8, 16, 24 or 32 bits wide")
        elif item.kind == CK_SP800_108.DKM_LENGTH:
            dkm += 1
            if not isinstance(item.value, DkmLengthFormat):
                raise _bad(name, "the DKM length's value is a CK_SP800_108_DKM_LENGTH_FORMAT")
            if item.value.method not in tuple(CK_SP800_108_DKM_LENGTH):
                raise _bad(name, f"DKM length method {item.value.method} is not SUM_OF_KEYS or SUM_OF_SEGMENTS")
            if item.value.width_bits % 8 or not 8 <= item.value.width_bits <= 64:
                raise _bad(name, "the DKM length is 8..64 bits wide, in whole bytes")
        elif item.kind == CK_SP800_108.BYTE_ARRAY:
            if not isinstance(item.value, bytes) or not item.value:
                raise _bad(name, "a byte-array data parameter holds at least one byte")
        else:
            raise _bad(name, f"data parameter type 0x{item.kind:x} has no place in counter mode")
    if counters != 1:
        raise _bad(name, f"exactly one iteration variable is required, not {counters}")
    if dkm > 1:
        raise _bad(name, "at most one DKM length is allowed")


Rule = Callable[[str, Parameter, int], None]


@dataclass(frozen=True)
class ParameterRule:
    """One row of :data:`RULES`.

    Attributes:
        takes: the parameter's shape as PKCS#11 names it (for messages and docs).
        check: ``check(name, parameter, mechanism)``; raises ``MechanismParamInvalid``.
        optional: a missing parameter (``None``) is the mechanism's default rather than an error.
    """

    takes: str
    check: Rule
    optional: bool = False


def _plain(rule: Callable[[str, Parameter], None]) -> Rule:
    return lambda name, param, _mechanism: rule(name, param)


RULES: dict[CKM, ParameterRule] = {
    CKM.AES_CBC: ParameterRule("16-byte IV", _plain(_iv)),
    CKM.AES_CBC_PAD: ParameterRule("16-byte IV", _plain(_iv)),
    CKM.AES_CTR: ParameterRule("CK_AES_CTR_PARAMS", _plain(_ctr)),
    CKM.AES_GCM: ParameterRule("CK_GCM_PARAMS", _plain(_gcm)),
    CKM.RSA_PKCS_OAEP: ParameterRule("CK_RSA_PKCS_OAEP_PARAMS", _plain(_oaep)),
    CKM.RSA_AES_KEY_WRAP: ParameterRule("CK_RSA_AES_KEY_WRAP_PARAMS", _plain(_rsa_aes)),
    CKM.RSA_PKCS_PSS: ParameterRule("CK_RSA_PKCS_PSS_PARAMS", _pss),
    **{mech: ParameterRule("CK_RSA_PKCS_PSS_PARAMS", _pss) for mech in _PSS_HASH},
    **{mech: ParameterRule("CK_MAC_GENERAL_PARAMS", _mac_length) for mech in _MAC_BYTES},
    CKM.ECDH1_DERIVE: ParameterRule("CK_ECDH1_DERIVE_PARAMS", _plain(_ecdh1)),
    CKM.SP800_108_COUNTER_KDF: ParameterRule("CK_SP800_108_KDF_PARAMS", _plain(_sp800_108)),
}
"""The mechanisms that take a parameter, each with its rule; every other mechanism takes none."""


def check(mechanism: Mechanism, mode: str = NON_FIPS) -> None:
    """Check a mechanism's parameter on its own, before any key is looked at.

    Args:
        mechanism: a :class:`Mechanism` whose parameter already has its struct's types (the node's
            ``arguments.mechanism`` makes sure).
        mode: the cluster's mode; a ``FIPS`` cluster also holds the PSS salt to at most the hash's length
            (FIPS 186-5 §5.4 (g): 0 ≤ sLen ≤ hLen).

    Raises:
        MechanismParamInvalid: ``CKR_MECHANISM_PARAM_INVALID``: a parameter on a mechanism that takes none, a
            missing one, or one whose fields disagree (the message names the field and what it must be).
    """
    kind = mechanism.mechanism
    name = CKM(kind).name if kind in CKM._value2member_map_ else f"0x{kind:x}"
    name = f"CKM_{name}" if not name.startswith("0x") else f"mechanism {name}"
    rule = RULES.get(CKM(kind)) if kind in CKM._value2member_map_ else None
    param = mechanism.parameter
    if rule is None:
        if param is not None:
            raise _bad(name, "takes no parameter")
        return
    if param is None:
        if rule.optional:
            return
        raise _bad(name, f"needs its parameter, a {rule.takes}")
    rule.check(name, param, kind)
    if mode == FIPS and isinstance(param, PssParams) and param.salt_len > HASH_BYTES[CKM(param.hash_alg)]:
        raise _bad(name, f"sLen is at most the hash's length, {HASH_BYTES[CKM(param.hash_alg)]} bytes, in a FIPS "
                         f"cluster (FIPS 186-5 §5.4), not {param.salt_len}")
