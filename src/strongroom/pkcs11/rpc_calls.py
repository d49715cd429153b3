"""The p11-kit RPC calls the agent answers: one record per call, with its id and the signatures of its request
and reply bodies (p11-kit's ``rpc-message.h`` call table; protocol versions 0–2).

A signature is p11-kit's: ``u`` a 64-bit unsigned integer, ``y`` a byte, ``ay`` a byte array, ``fy``/``fu``/``fA``
an output buffer's size, ``M`` a mechanism, ``aA`` an attribute array, ``A`` an attribute, ``s`` a space-padded
string, ``v`` a version, ``P`` a mechanism parameter update. A request whose signature is not its call's is
refused as unparseable. A call the agent does not serve (:data:`UNSERVED`) is answered
``CKR_FUNCTION_NOT_SUPPORTED`` once its arguments pass the checks every function makes first (PKCS#11 3.0 §5.1:
the session or slot handle); a call with no record at all is answered ``CKR_FUNCTION_NOT_SUPPORTED``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RpcCall:
    """One p11-kit RPC call.

    Attributes:
        call_id: its number on the wire (the request body's first 32-bit integer).
        function: the PKCS#11 function it carries (``C_Sign``); ``C_DeriveKey2`` is version 2's
            ``C_DeriveKey``.
        request: the signature of its request body.
        reply: the signature of its reply body.
    """

    call_id: int
    function: str
    request: str
    reply: str


RPC_CALLS: tuple[RpcCall, ...] = (
    RpcCall(1, "C_Initialize", "ayyay", ""),
    RpcCall(2, "C_Finalize", "", ""),
    RpcCall(3, "C_GetInfo", "", "vsusv"),
    RpcCall(4, "C_GetSlotList", "yfu", "au"),
    RpcCall(5, "C_GetSlotInfo", "u", "ssuvv"),
    RpcCall(6, "C_GetTokenInfo", "u", "ssssuuuuuuuuuuuvvs"),
    RpcCall(7, "C_GetMechanismList", "ufu", "au"),
    RpcCall(8, "C_GetMechanismInfo", "uu", "uuu"),
    RpcCall(10, "C_OpenSession", "uu", "u"),
    RpcCall(11, "C_CloseSession", "u", ""),
    RpcCall(12, "C_CloseAllSessions", "u", ""),
    RpcCall(13, "C_GetSessionInfo", "u", "uuuu"),
    RpcCall(18, "C_Login", "uuay", ""),
    RpcCall(19, "C_Logout", "u", ""),
    RpcCall(20, "C_CreateObject", "uaA", "u"),
    RpcCall(21, "C_CopyObject", "uuaA", "u"),
    RpcCall(22, "C_DestroyObject", "uu", ""),
    RpcCall(24, "C_GetAttributeValue", "uufA", "aAu"),
    RpcCall(25, "C_SetAttributeValue", "uuaA", ""),
    RpcCall(26, "C_FindObjectsInit", "uaA", ""),
    RpcCall(27, "C_FindObjects", "ufu", "au"),
    RpcCall(28, "C_FindObjectsFinal", "u", ""),
    RpcCall(29, "C_EncryptInit", "uMu", ""),
    RpcCall(30, "C_Encrypt", "uayfy", "ay"),
    RpcCall(31, "C_EncryptUpdate", "uayfy", "ay"),
    RpcCall(32, "C_EncryptFinal", "ufy", "ay"),
    RpcCall(33, "C_DecryptInit", "uMu", ""),
    RpcCall(34, "C_Decrypt", "uayfy", "ay"),
    RpcCall(35, "C_DecryptUpdate", "uayfy", "ay"),
    RpcCall(36, "C_DecryptFinal", "ufy", "ay"),
    RpcCall(37, "C_DigestInit", "uM", ""),
    RpcCall(38, "C_Digest", "uayfy", "ay"),
    RpcCall(39, "C_DigestUpdate", "uay", ""),
    RpcCall(41, "C_DigestFinal", "ufy", "ay"),
    RpcCall(42, "C_SignInit", "uMu", ""),
    RpcCall(43, "C_Sign", "uayfy", "ay"),
    RpcCall(44, "C_SignUpdate", "uay", ""),
    RpcCall(45, "C_SignFinal", "ufy", "ay"),
    RpcCall(48, "C_VerifyInit", "uMu", ""),
    RpcCall(49, "C_Verify", "uayay", ""),
    RpcCall(50, "C_VerifyUpdate", "uay", ""),
    RpcCall(51, "C_VerifyFinal", "uay", ""),
    RpcCall(58, "C_GenerateKey", "uMaA", "u"),
    RpcCall(59, "C_GenerateKeyPair", "uMaAaA", "uu"),
    RpcCall(60, "C_WrapKey", "uMuufy", "ay"),
    RpcCall(61, "C_UnwrapKey", "uMuayaA", "u"),
    RpcCall(62, "C_DeriveKey", "uMuaA", "u"),
    RpcCall(63, "C_SeedRandom", "uay", ""),
    RpcCall(64, "C_GenerateRandom", "ufy", "ay"),
    RpcCall(66, "C_LoginUser", "uuayay", ""),
    RpcCall(67, "C_SessionCancel", "uu", ""),
    RpcCall(89, "C_DeriveKey2", "uMuaA", "uPu"),
)

BY_FUNCTION: dict[str, RpcCall] = {call.function: call for call in RPC_CALLS}
"""The records by PKCS#11 function name."""


UNSERVED: dict[int, tuple[RpcCall, str]] = {call.call_id: (call, first) for call, first in (
    (RpcCall(9, "C_InitToken", "uayz", ""), "slot"),
    (RpcCall(14, "C_InitPIN", "uay", ""), "session"),
    (RpcCall(15, "C_SetPIN", "uayay", ""), "session"),
    (RpcCall(16, "C_GetOperationState", "ufy", "ay"), "session"),
    (RpcCall(17, "C_SetOperationState", "uayuu", ""), "session"),
    (RpcCall(23, "C_GetObjectSize", "uu", "u"), "session"),
    (RpcCall(40, "C_DigestKey", "uu", ""), "session"),
    (RpcCall(46, "C_SignRecoverInit", "uMu", ""), "session"),
    (RpcCall(47, "C_SignRecover", "uayfy", "ay"), "session"),
    (RpcCall(52, "C_VerifyRecoverInit", "uMu", ""), "session"),
    (RpcCall(53, "C_VerifyRecover", "uayfy", "ay"), "session"),
    (RpcCall(54, "C_DigestEncryptUpdate", "uayfy", "ay"), "session"),
    (RpcCall(55, "C_DecryptDigestUpdate", "uayfy", "ay"), "session"),
    (RpcCall(56, "C_SignEncryptUpdate", "uayfy", "ay"), "session"),
    (RpcCall(57, "C_DecryptVerifyUpdate", "uayfy", "ay"), "session"),
    (RpcCall(65, "C_WaitForSlotEvent", "u", "u"), ""),
    (RpcCall(68, "C_MessageEncryptInit", "uMu", ""), "session"),
    (RpcCall(69, "C_EncryptMessage", "uayayayfy", "ay"), "session"),
    (RpcCall(70, "C_EncryptMessageBegin", "uayay", ""), "session"),
    (RpcCall(71, "C_EncryptMessageNext", "uayayfyu", "ay"), "session"),
    (RpcCall(72, "C_MessageEncryptFinal", "u", ""), "session"),
    (RpcCall(73, "C_MessageDecryptInit", "uMu", ""), "session"),
    (RpcCall(74, "C_DecryptMessage", "uayayayfy", "ay"), "session"),
    (RpcCall(75, "C_DecryptMessageBegin", "uayay", ""), "session"),
    (RpcCall(76, "C_DecryptMessageNext", "uayayfyu", "ay"), "session"),
    (RpcCall(77, "C_MessageDecryptFinal", "u", ""), "session"),
    (RpcCall(78, "C_MessageSignInit", "uMu", ""), "session"),
    (RpcCall(79, "C_SignMessage", "uayayfy", "ay"), "session"),
    (RpcCall(80, "C_SignMessageBegin", "uay", ""), "session"),
    (RpcCall(81, "C_SignMessageNext", "uayayyfy", "ay"), "session"),
    (RpcCall(82, "C_MessageSignFinal", "u", ""), "session"),
    (RpcCall(83, "C_MessageVerifyInit", "uMu", ""), "session"),
    (RpcCall(84, "C_VerifyMessage", "uayayay", ""), "session"),
    (RpcCall(85, "C_VerifyMessageBegin", "uay", ""), "session"),
    (RpcCall(86, "C_VerifyMessageNext", "uayayay", ""), "session"),
    (RpcCall(87, "C_MessageVerifyFinal", "u", ""), "session"),
    (RpcCall(88, "C_InitToken2", "uays", ""), "slot"),
)}
"""The p11-kit calls (protocol versions 0–2) the agent does not serve, by call id, each with what its first
argument is (``"session"``, ``"slot"`` or ``""``): checked before the answer ``CKR_FUNCTION_NOT_SUPPORTED``."""
