"""Run in a subprocess through a p11-kit client module, with ctypes for exact CK_ATTRIBUTE handling: the fixed-width
fields of C_GetInfo, C_GetSlotInfo and C_GetTokenInfo, and the attribute arrays of a key (made here with
C_CreateObject, and one made beforehand labelled ``arrays-by-sdk``) read with PKCS#11 3.0 §5.7.5's two-call
pattern. Prints JSON. Arguments: the client module. Environment: PIN."""

import ctypes
import json
import os
import sys

CK_ULONG = ctypes.c_ulong
UNAVAILABLE = CK_ULONG(-1).value
WRAP_TEMPLATE, UNWRAP_TEMPLATE, DERIVE_TEMPLATE = 0x40000211, 0x40000212, 0x40000213
TEMPLATES = {"wrap": WRAP_TEMPLATE, "unwrap": UNWRAP_TEMPLATE, "derive": DERIVE_TEMPLATE}


class Attribute(ctypes.Structure):
    _fields_ = [("type", CK_ULONG), ("pValue", ctypes.c_void_p), ("ulValueLen", CK_ULONG)]


class Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class Info(ctypes.Structure):
    _fields_ = [("cryptokiVersion", Version), ("manufacturerID", ctypes.c_char * 32), ("flags", CK_ULONG),
                ("libraryDescription", ctypes.c_char * 32), ("libraryVersion", Version)]


class SlotInfo(ctypes.Structure):
    _fields_ = [("slotDescription", ctypes.c_char * 64), ("manufacturerID", ctypes.c_char * 32),
                ("flags", CK_ULONG), ("hardwareVersion", Version), ("firmwareVersion", Version)]


class TokenInfo(ctypes.Structure):
    _fields_ = [("label", ctypes.c_char * 32), ("manufacturerID", ctypes.c_char * 32), ("model", ctypes.c_char * 16),
                ("serialNumber", ctypes.c_char * 16)] + [(f"n{i}", CK_ULONG) for i in range(11)] + [
                ("hardwareVersion", Version), ("firmwareVersion", Version), ("utcTime", ctypes.c_char * 16)]


# CK_FUNCTION_LIST: the version, then the functions in the standard's order; the first 28 are enough here
NAMES = ["Initialize", "Finalize", "GetInfo", "GetFunctionList", "GetSlotList", "GetSlotInfo", "GetTokenInfo",
         "GetMechanismList", "GetMechanismInfo", "InitToken", "InitPIN", "SetPIN", "OpenSession", "CloseSession",
         "CloseAllSessions", "GetSessionInfo", "GetOperationState", "SetOperationState", "Login", "Logout",
         "CreateObject", "CopyObject", "DestroyObject", "GetObjectSize", "GetAttributeValue", "SetAttributeValue",
         "FindObjectsInit", "FindObjects", "FindObjectsFinal"]


class FunctionList(ctypes.Structure):
    _fields_ = [("version", Version)] + [(name, ctypes.c_void_p) for name in NAMES]


lib = ctypes.CDLL(sys.argv[1])
functions = ctypes.POINTER(FunctionList)()
assert lib.C_GetFunctionList(ctypes.byref(functions)) == 0


def call(name, *args):
    return ctypes.CFUNCTYPE(CK_ULONG, *[ctypes.c_void_p] * len(args))(getattr(functions.contents, name))(*args)


def raw_fields(struct, names):
    """The fields' bytes as they are in memory (ctypes' c_char arrays stop at a NUL)."""
    out = {}
    for name in names:
        offset = getattr(type(struct), name).offset
        size = getattr(type(struct), name).size
        out[name] = ctypes.string_at(ctypes.addressof(struct) + offset, size).hex()
    return out


def value_of(attr):
    return {"type": attr.type, "len": attr.ulValueLen if attr.ulValueLen != UNAVAILABLE else -1}


def template(entries):
    """A CK_ATTRIBUTE array of (type, bytes) entries and the buffers it points at."""
    array = (Attribute * len(entries))()
    keep = []
    for i, (cka, value) in enumerate(entries):
        buffer = ctypes.create_string_buffer(value, len(value))
        keep.append(buffer)
        array[i].type, array[i].pValue, array[i].ulValueLen = cka, ctypes.addressof(buffer), len(value)
    return array, keep


def ulong(value):
    return value.to_bytes(8, "little")


def get(session, handle, array, count):
    return call("GetAttributeValue", session, handle, ctypes.byref(array), count)


def read_two_calls(session, handle, cka):
    """The size query, the entries' lengths, the values, then a top buffer one entry short and an entry buffer of
    one byte: each step's rv and what the caller's structures hold after it."""
    steps = {}
    top = (Attribute * 1)()
    top[0].type, top[0].pValue, top[0].ulValueLen = cka, None, 0
    rv = get(session, handle, top, 1)
    steps["size"] = {"rv": rv, **value_of(top[0])}
    if rv != 0:
        top[0].type, top[0].pValue, top[0].ulValueLen = 3, None, 0  # CKA_LABEL: the connection still serves
        steps["after"] = {"rv": get(session, handle, top, 1), **value_of(top[0])}
        return steps
    count = top[0].ulValueLen // ctypes.sizeof(Attribute)
    entries = (Attribute * count)()
    top[0].pValue, top[0].ulValueLen = ctypes.addressof(entries), ctypes.sizeof(entries)
    steps["lengths"] = {"rv": get(session, handle, top, 1), "len": top[0].ulValueLen,
                        "entries": [value_of(e) for e in entries]}
    buffers = [ctypes.create_string_buffer(e.ulValueLen) for e in entries]
    for entry, buffer in zip(entries, buffers, strict=True):
        entry.pValue = ctypes.addressof(buffer)
    steps["values"] = {"rv": get(session, handle, top, 1), "len": top[0].ulValueLen,
                       "entries": [{**value_of(e), "value": buffer.raw[:e.ulValueLen].hex()}
                                   for e, buffer in zip(entries, buffers, strict=True)]}
    short = (Attribute * 1)()
    short[0].type, short[0].pValue = cka, ctypes.addressof(entries)
    short[0].ulValueLen = ctypes.sizeof(Attribute) * (count - 1)
    # a buffer of 0 bytes travels as a NULL one (a length query): one entry short needs two entries
    steps["top_too_small"] = {"rv": get(session, handle, short, 1), **value_of(short[0])} if count > 1 else None
    longest = max(range(count), key=lambda i: entries[i].ulValueLen)
    for i, (entry, buffer) in enumerate(zip(entries, buffers, strict=True)):
        entry.type, entry.ulValueLen = 0, 1 if i == longest else len(buffer)
    top[0].ulValueLen = ctypes.sizeof(entries)
    steps["entry_too_small"] = {"rv": get(session, handle, top, 1), "len": top[0].ulValueLen,
                                "entries": [value_of(e) for e in entries]}
    return steps


out = {"initialize": call("Initialize", None)}
info = Info()
out["info_rv"] = call("GetInfo", ctypes.byref(info))
out["info"] = raw_fields(info, ["manufacturerID", "libraryDescription"])
slots = (CK_ULONG * 4)()
n_slots = CK_ULONG(4)
assert call("GetSlotList", 1, slots, ctypes.byref(n_slots)) == 0 and n_slots.value == 1
slot_info = SlotInfo()
out["slot_rv"] = call("GetSlotInfo", slots[0], ctypes.byref(slot_info))
out["slot"] = raw_fields(slot_info, ["slotDescription", "manufacturerID"])
token_info = TokenInfo()
out["token_rv"] = call("GetTokenInfo", slots[0], ctypes.byref(token_info))
out["token"] = raw_fields(token_info, ["label", "manufacturerID", "model", "serialNumber"])
session = CK_ULONG()
assert call("OpenSession", slots[0], 0x6, None, None, ctypes.byref(session)) == 0
session = session.value
pin = os.environ["PIN"].encode()
assert call("Login", session, 1, pin, len(pin)) == 0

# a key made through this client, its three templates set with C_CreateObject
wrap, keep_wrap = template([(0x0, ulong(4)), (0x100, ulong(0x1F)), (0x162, b"\x01")])
unwrap, keep_unwrap = template([(0x3, "déballée".encode()), (0x103, b"\x01")])
derive, keep_derive = template([(0x104, b"\x01"), (0x161, ulong(16)), (0x3, b"derived")])
key, keep_key = template([(0x0, ulong(4)), (0x100, ulong(0x1F)), (0x11, bytes(range(32))), (0x1, b"\x01"),
                          (0x3, b"arrays-by-p11"), (0x106, b"\x01"), (0x107, b"\x01"), (0x10C, b"\x01")])


def create(arrays):
    made = (Attribute * (len(key) + len(arrays)))()
    for i, entry in enumerate(key):
        made[i] = entry
    for i, (cka, array) in enumerate(arrays):
        made[len(key) + i].type = cka
        made[len(key) + i].pValue = ctypes.addressof(array)
        made[len(key) + i].ulValueLen = ctypes.sizeof(array)
    handle = CK_ULONG()
    return call("CreateObject", session, ctypes.byref(made), len(made), ctypes.byref(handle)), handle


arrays = [(WRAP_TEMPLATE, wrap), (UNWRAP_TEMPLATE, unwrap), (DERIVE_TEMPLATE, derive)]
out["create_rv"], handle = create(arrays)
if out["create_rv"] != 0:  # p11-kit before 0.25 sends CKA_DERIVE_TEMPLATE as raw memory
    out["create_without_derive_rv"], handle = create(arrays[:2])
out["by_p11"] = {name: read_two_calls(session, handle.value, cka) for name, cka in TEMPLATES.items()}
rewrap, keep_rewrap = template([(0x100, ulong(0x1F))])  # C_SetAttributeValue: CKA_KEY_TYPE AES only
changed = (Attribute * 1)()
changed[0].type, changed[0].pValue, changed[0].ulValueLen = WRAP_TEMPLATE, ctypes.addressof(rewrap), ctypes.sizeof(
    rewrap)
out["set_rv"] = call("SetAttributeValue", session, handle.value, ctypes.byref(changed), 1)
out["after_set"] = read_two_calls(session, handle.value, WRAP_TEMPLATE)

# the key made with the SDK beforehand
label = b"arrays-by-sdk"
wanted, keep_wanted = template([(0x3, label)])
assert call("FindObjectsInit", session, ctypes.byref(wanted), 1) == 0
found, n_found = (CK_ULONG * 2)(), CK_ULONG()
assert call("FindObjects", session, found, 2, ctypes.byref(n_found)) == 0 and n_found.value == 1
assert call("FindObjectsFinal", session) == 0
out["by_sdk"] = {name: read_two_calls(session, found[0], cka) for name, cka in TEMPLATES.items()}
out["finalize"] = call("Finalize", None)
print(json.dumps(out))
