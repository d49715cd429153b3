"""Mechanisms through p11-kit's RPC: which types each client generation forwards and how their parameters travel.

The client module sends a mechanism only if it knows how: a type from its list of parameter-less mechanisms, or one
with a parameter encoder of its own; every other type is refused inside the application (``CKR_MECHANISM_INVALID``)
and dropped from ``C_GetMechanismList``'s answer. Both the list and the encoding changed between releases, not
always with the protocol version, so the decoder is keyed on the version the client offered:

- version 0 (p11-kit ≤ 0.24): type (u32), then a byte string, except RSA-PSS and RSA-OAEP whose parameters follow
  as fixed fields;
- version 1 (0.25.0–0.25.5): the same, with fixed-field encoders for many more types (AES IV modes, CTR, GCM,
  ECDH1, the MAC-length ``*_GENERAL`` mechanisms);
- version 2 (0.25.6 and later): a parameter-less type carries nothing after it; any other type a presence byte,
  then the fixed fields.

A type ``0xFFFFFFFF`` is the NULL mechanism (``C_*Init`` with no mechanism: cancel the operation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..errors import MechanismParamInvalid
from ..mechanism_params import CtrParams, Ecdh1DeriveParams, GcmParams, Mechanism, OaepParams, Parameter, PssParams
from ..vocab import CKM
from .wire import NULL_LENGTH, Reader

NULL_MECHANISM = NULL_LENGTH

# The client's parameter-less types, p11-kit 0.24.x.
NO_PARAMETER_V0 = frozenset({
    0x0, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0xA, 0xB, 0xC, 0x10, 0x11, 0x12, 0x20, 0x30, 0x40, 0x41, 0x42,
    0x100, 0x101, 0x103, 0x110, 0x111, 0x120, 0x121, 0x123, 0x130, 0x131, 0x132, 0x134, 0x140, 0x141, 0x143, 0x200,
    0x201, 0x210, 0x211, 0x220, 0x221, 0x230, 0x231, 0x240, 0x241, 0x250, 0x251, 0x260, 0x261, 0x270, 0x271, 0x300,
    0x301, 0x303, 0x310, 0x311, 0x313, 0x320, 0x321, 0x330, 0x331, 0x333, 0x340, 0x341, 0x343, 0x350, 0x370, 0x374,
    0x380, 0x381, 0x400, 0x1000, 0x1008, 0x1010, 0x1020, 0x1030, 0x1036, 0x1040, 0x1041, 0x1042, 0x1060, 0x1065,
    0x1070, 0x1080, 0x1081, 0x1083, 0x2000, 0x2001, 0x2002,
})
# The same list from p11-kit 0.25 on (unchanged up to 0.26.x): SHA-224, SHA-512/t, the hash-and-sign ECDSA
# types, AES-CMAC, the key-derivation digests and IBM vendor types were added.
NO_PARAMETER_V1 = NO_PARAMETER_V0 | frozenset({
    0x46, 0x48, 0x49, 0x4B, 0x4C, 0x4D, 0x4F, 0x50, 0x51, 0x53, 0x138, 0x255, 0x256, 0x392, 0x393, 0x394, 0x395,
    0x396, 0x1043, 0x1044, 0x1045, 0x1046, 0x108A, 0x80010001, 0x80010002, 0x80010003, 0x80010004, 0x80010007,
    0x8001001C, 0x8001001F, 0x80010023, 0x80010025, 0x80010026, 0x80010027, 0x80010028,
})


def _pss(r: Reader) -> Parameter:
    return PssParams(r.u64(), r.u64(), r.u64())


def _oaep(r: Reader) -> Parameter:
    hash_alg, mgf, source = r.u64(), r.u64(), r.u64()
    return OaepParams(hash_alg, mgf, source, r.data() or b"")


def _ecdh1(r: Reader) -> Parameter:
    kdf = r.u64()
    shared = r.data() or b""
    return Ecdh1DeriveParams(kdf, shared, r.data() or b"")


def _iv(r: Reader) -> Parameter:
    return r.data() or b""


def _ctr(r: Reader) -> Parameter:
    counter_bits = r.u64()
    return CtrParams(r.data() or b"", counter_bits)


def _gcm(r: Reader) -> Parameter:
    iv = r.data() or b""
    iv_bits = r.u64()  # checked against the IV's length with the other rules (mechanism_rules)
    aad = r.data() or b""
    tag_bits = r.u64()
    if not iv:
        # The HSM could choose the IV, but this protocol has no way to hand it back to the application.
        raise MechanismParamInvalid("AES-GCM through PKCS#11 needs the application's 12-byte IV")
    return GcmParams(iv, aad, tag_bits, iv_bits)


def _mac_length(r: Reader) -> Parameter:
    return r.u64()


_PSS_TYPES = (CKM.RSA_PKCS_PSS, CKM.SHA1_RSA_PKCS_PSS, CKM.SHA224_RSA_PKCS_PSS, CKM.SHA256_RSA_PKCS_PSS,
              CKM.SHA384_RSA_PKCS_PSS, CKM.SHA512_RSA_PKCS_PSS)
_MAC_GENERAL_TYPES = (CKM.SHA_1_HMAC_GENERAL, CKM.SHA224_HMAC_GENERAL, CKM.SHA256_HMAC_GENERAL,
                      CKM.SHA384_HMAC_GENERAL, CKM.SHA512_HMAC_GENERAL, CKM.AES_CMAC_GENERAL)
Decoder = Callable[[Reader], Parameter]
# Fixed-field parameter encodings of the client, by the version that introduced them (only types Strongroom has).
FIELDS_V0: dict[int, Decoder] = {int(CKM.RSA_PKCS_PSS): _pss, int(CKM.RSA_PKCS_OAEP): _oaep}
FIELDS_V1: dict[int, Decoder] = {
    **{int(m): _pss for m in _PSS_TYPES},
    int(CKM.RSA_PKCS_OAEP): _oaep,
    int(CKM.ECDH1_DERIVE): _ecdh1,
    int(CKM.AES_CBC): _iv,
    int(CKM.AES_CBC_PAD): _iv,
    int(CKM.AES_CTR): _ctr,
    int(CKM.AES_GCM): _gcm,
    **{int(m): _mac_length for m in _MAC_GENERAL_TYPES},
}


def _tables(version: int) -> tuple[frozenset[int], dict[int, Decoder]]:
    return (NO_PARAMETER_V0, FIELDS_V0) if version == 0 else (NO_PARAMETER_V1, FIELDS_V1)


def forwardable(version: int, implemented: Iterable[int]) -> list[int]:
    """The mechanisms of ``implemented`` (the cluster's ``CKM`` values) that a client of this protocol version
    forwards, sorted.

    ``C_GetMechanismList`` answers exactly these, so the count an application sees never shrinks inside the client.
    """
    no_parameter, fields = _tables(version)
    return sorted(int(m) for m in implemented if int(m) in no_parameter or int(m) in fields)


def has_no_parameter(version: int, kind: int) -> bool:
    """Whether a client of this version sends ``kind`` without parameter bytes (version 2's format)."""
    return kind in _tables(version)[0]


def read(reader: Reader, version: int) -> Mechanism | None:
    """One ``M`` value of a request; ``None`` for the NULL mechanism.

    Raises:
        WireError: for bytes that are not a mechanism of this version.
        MechanismParamInvalid: ``CKR_MECHANISM_PARAM_INVALID`` for a parameter on a type Strongroom reads none for.
    """
    kind = reader.u32()
    if kind == NULL_MECHANISM:
        return None
    no_parameter, fields = _tables(version)
    if version >= 2:
        if kind in no_parameter or not reader.byte():
            return Mechanism(kind)
        decode = fields.get(kind)
        if decode is None:
            reader.data()  # the client's generic encoding: the raw parameter as a byte string
            raise MechanismParamInvalid(f"mechanism 0x{kind:x} takes no parameter Strongroom reads")
        return Mechanism(kind, decode(reader))
    decode = fields.get(kind)
    if decode is not None:
        return Mechanism(kind, decode(reader))
    if reader.data():
        raise MechanismParamInvalid(f"mechanism 0x{kind:x} takes no parameter Strongroom reads from this client")
    return Mechanism(kind)
