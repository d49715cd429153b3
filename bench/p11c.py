"""A PKCS#11 module driven through ctypes: the C API itself, the same for every module measured.

python-pkcs11 calls ``C_Initialize(NULL)``, which tells a module that no two threads call it at once; SoftHSM2
then takes no locks and fails under threads. This driver initialises with ``CKF_OS_LOCKING_OK`` (PKCS#11 3.0
§5.4) and calls the module with the GIL released (ctypes does), so threads run in parallel in the module.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, byref, c_ubyte, c_ulong, c_void_p
from typing import Any

from constants import P256_PARAMS

CKR_OK = 0
CKF_SERIAL_SESSION, CKF_RW_SESSION, CKF_OS_LOCKING_OK = 0x4, 0x2, 0x2
CKU_USER = 1
CKA_CLASS, CKA_TOKEN, CKA_LABEL, CKA_KEY_TYPE = 0x0, 0x1, 0x3, 0x100
CKA_SIGN, CKA_VERIFY, CKA_MODULUS_BITS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS = 0x108, 0x10A, 0x121, 0x122, 0x180
CKA_SENSITIVE, CKA_EXTRACTABLE = 0x103, 0x162
CKO_PRIVATE_KEY = 3
CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_EC_KEY_PAIR_GEN = 0x0, 0x1040
# Positions in CK_FUNCTION_LIST (PKCS#11 2.40 §5.2 order), after the 2-byte version padded to a pointer.
_FUNCTIONS = {
    "C_Initialize": 0, "C_Finalize": 1, "C_GetSlotList": 4, "C_OpenSession": 12, "C_CloseSession": 13,
    "C_Login": 18, "C_FindObjectsInit": 26, "C_FindObjects": 27, "C_FindObjectsFinal": 28, "C_SignInit": 42,
    "C_Sign": 43, "C_GenerateKeyPair": 59,
}


class Pkcs11Error(RuntimeError):
    def __init__(self, function: str, rv: int) -> None:
        super().__init__(f"{function} returned 0x{rv:x}")
        self.rv = rv


class _InitArgs(ctypes.Structure):
    _fields_ = [("create", c_void_p), ("destroy", c_void_p), ("lock", c_void_p), ("unlock", c_void_p),
                ("flags", c_ulong), ("reserved", c_void_p)]


class _Attribute(ctypes.Structure):
    _fields_ = [("type", c_ulong), ("value", c_void_p), ("length", c_ulong)]


class _Mechanism(ctypes.Structure):
    _fields_ = [("mechanism", c_ulong), ("parameter", c_void_p), ("length", c_ulong)]


def _template(attrs: dict[int, Any]) -> tuple[Any, list[Any]]:
    """A ``CK_ATTRIBUTE`` array and the buffers it points at (kept alive by the caller)."""
    array = (_Attribute * len(attrs))()
    keep = []
    for i, (kind, value) in enumerate(attrs.items()):
        if isinstance(value, bool):
            raw = bytes([value])
        elif isinstance(value, int):
            raw = bytes(c_ulong(value))
        else:
            raw = bytes(value)
        buffer = ctypes.create_string_buffer(raw, len(raw))
        keep.append(buffer)
        array[i] = _Attribute(kind, ctypes.cast(buffer, c_void_p), len(raw))
    return array, keep


class Module:
    """One loaded PKCS#11 module, initialised for threads."""

    def __init__(self, path: str) -> None:
        self.lib = ctypes.CDLL(path)
        table = c_void_p()
        get = self.lib.C_GetFunctionList
        get.argtypes = [POINTER(c_void_p)]
        self._check("C_GetFunctionList", get(byref(table)))
        pointers = ctypes.cast(table.value + ctypes.sizeof(c_void_p), POINTER(c_void_p))
        self.fn = {name: ctypes.CFUNCTYPE(c_ulong)(pointers[i]) for name, i in _FUNCTIONS.items()}
        args = _InitArgs(flags=CKF_OS_LOCKING_OK)
        self._call("C_Initialize", byref(args))
        count = c_ulong(0)
        self._call("C_GetSlotList", ctypes.c_ubyte(1), None, byref(count))
        slots = (c_ulong * count.value)()
        self._call("C_GetSlotList", ctypes.c_ubyte(1), slots, byref(count))
        if not count.value:
            raise RuntimeError(f"{path}: no token")
        self.slot = slots[0]

    @staticmethod
    def _check(function: str, rv: int) -> None:
        if rv != CKR_OK:
            raise Pkcs11Error(function, rv)

    def _call(self, name: str, *args: Any) -> None:
        self._check(name, self.fn[name](*args))

    def open_session(self) -> int:
        handle = c_ulong()
        self._call("C_OpenSession", c_ulong(self.slot), c_ulong(CKF_SERIAL_SESSION | CKF_RW_SESSION), None, None,
                   byref(handle))
        return handle.value

    def close_session(self, session: int) -> None:
        self._call("C_CloseSession", c_ulong(session))

    def login(self, session: int, pin: str) -> None:
        raw = pin.encode()
        self._call("C_Login", c_ulong(session), c_ulong(CKU_USER), ctypes.c_char_p(raw), c_ulong(len(raw)))

    def generate_key_pair(self, session: int, kind: str, label: str, token: bool) -> int:
        """An RSA-2048 or EC P-256 signing pair; returns the private key's handle."""
        if kind == "rsa":
            mechanism = _Mechanism(CKM_RSA_PKCS_KEY_PAIR_GEN, None, 0)
            public: dict[int, Any] = {CKA_MODULUS_BITS: 2048, CKA_PUBLIC_EXPONENT: b"\x01\x00\x01"}
        else:
            mechanism = _Mechanism(CKM_EC_KEY_PAIR_GEN, None, 0)
            public = {CKA_EC_PARAMS: P256_PARAMS}
        public.update({CKA_TOKEN: token, CKA_VERIFY: True, CKA_LABEL: label.encode()})
        private = {CKA_TOKEN: token, CKA_SIGN: True, CKA_SENSITIVE: True, CKA_EXTRACTABLE: False,
                   CKA_LABEL: label.encode()}
        pub_t, keep1 = _template(public)
        priv_t, keep2 = _template(private)
        pub_h, priv_h = c_ulong(), c_ulong()
        self._call("C_GenerateKeyPair", c_ulong(session), byref(mechanism), pub_t, c_ulong(len(public)), priv_t,
                   c_ulong(len(private)), byref(pub_h), byref(priv_h))
        del keep1, keep2
        return priv_h.value

    def signer(self, session: int, key: int, mechanism: int, data: bytes) -> Any:
        """A callable that signs ``data`` once (``C_SignInit`` + ``C_Sign``) and returns the signature."""
        mech = _Mechanism(mechanism, None, 0)
        message = (c_ubyte * len(data)).from_buffer_copy(data)
        out = (c_ubyte * 512)()
        length = c_ulong()
        sign_init, sign = self.fn["C_SignInit"], self.fn["C_Sign"]
        s, k = c_ulong(session), c_ulong(key)

        def once() -> bytes:
            rv = sign_init(s, byref(mech), k)
            if rv != CKR_OK:
                raise Pkcs11Error("C_SignInit", rv)
            length.value = len(out)
            rv = sign(s, message, c_ulong(len(data)), out, byref(length))
            if rv != CKR_OK:
                raise Pkcs11Error("C_Sign", rv)
            return bytes(out[:length.value])

        return once

    def finalize(self) -> None:
        self._call("C_Finalize", None)
