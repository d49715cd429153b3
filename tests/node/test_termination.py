"""Operation termination (PKCS#11 3.0 §5.2, §5.8–§5.13), walked over every operation family on the node: a call on
an active operation that fails with anything but ``CKR_BUFFER_TOO_SMALL`` ends it, an error in its arguments
included, and the next call answers ``CKR_OPERATION_NOT_INITIALIZED``; a size query and a too-small buffer keep it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from strongroom.errors import BufferTooSmall
from strongroom.mechanism_params import Mechanism
from strongroom.vocab import CKM, CKR

from .keys import aes, rsa
from .test_sessions import rv

ECB = Mechanism(CKM.AES_ECB)
RSA_SHA256 = Mechanism(CKM.SHA256_RSA_PKCS)


def _keys(who: Any) -> dict[str, Any]:
    key = aes(who)
    public, private = rsa(who)
    signature = who.app.sign_once(who.s, RSA_SHA256, private, b"signed")
    ciphertext = who.app.encrypt_once(who.s, ECB, key, bytes(32))
    return {"aes": key, "public": public, "private": private, "signature": signature, "ciphertext": ciphertext}


INITS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "encrypt": lambda a, k: a.app.encrypt_init(a.s, ECB, k["aes"]),
    "decrypt": lambda a, k: a.app.decrypt_init(a.s, ECB, k["aes"]),
    "digest": lambda a, k: a.app.digest_init(a.s, Mechanism(CKM.SHA256)),
    "sign": lambda a, k: a.app.sign_init(a.s, RSA_SHA256, k["private"]),
    "verify": lambda a, k: a.app.verify_init(a.s, RSA_SHA256, k["public"]),
}


def _single(kind: str, a: Any, k: dict[str, Any], data: Any, **kw: Any) -> Any:
    if kind == "verify":
        return a.app.verify(a.s, data, kw.get("signature", k["signature"]))
    return getattr(a.app, kind)(a.s, data, **kw)


def _update(kind: str, a: Any, data: Any, **kw: Any) -> Any:
    return getattr(a.app, f"{kind}_update")(a.s, data, **kw)


def _final(kind: str, a: Any, k: dict[str, Any], **kw: Any) -> Any:
    if kind == "verify":
        return a.app.verify_final(a.s, kw.get("signature", k["signature"]))
    return getattr(a.app, f"{kind}_final")(a.s, **kw)


# (operation, what the failing call is, the call, the code it answers)
FAULTS: list[tuple[str, str, Callable[[str, Any, dict[str, Any]], Any], CKR]] = []
for _kind in INITS:
    FAULTS += [
        (_kind, "single part, data not bytes", lambda kind, a, k: _single(kind, a, k, "text"), CKR.ARGUMENTS_BAD),
        (_kind, "update, data not bytes", lambda kind, a, k: _update(kind, a, 17), CKR.ARGUMENTS_BAD),
        (_kind, "single part after an update",
         lambda kind, a, k: (_update(kind, a, bytes(16)), _single(kind, a, k, bytes(16))), CKR.OPERATION_ACTIVE),
    ]
    if _kind != "verify":
        FAULTS += [
            (_kind, "final, buffer length negative", lambda kind, a, k: _final(kind, a, k, out_len=-1),
             CKR.ARGUMENTS_BAD),
            (_kind, "single part, buffer length not a number",
             lambda kind, a, k: _single(kind, a, k, bytes(16), out_len="16"), CKR.ARGUMENTS_BAD),
            (_kind, "update after a single-part size query",
             lambda kind, a, k: (_single(kind, a, k, bytes(16), query=True), _update(kind, a, bytes(16))),
             CKR.OPERATION_ACTIVE),
            (_kind, "final after a single-part size query",
             lambda kind, a, k: (_single(kind, a, k, bytes(16), query=True), _final(kind, a, k)),
             CKR.OPERATION_ACTIVE),
        ]
FAULTS += [
    ("encrypt", "single part, not a whole block", lambda kind, a, k: a.app.encrypt(a.s, bytes(15)),
     CKR.DATA_LEN_RANGE),
    ("encrypt", "update, buffer length negative", lambda kind, a, k: a.app.encrypt_update(a.s, bytes(16), out_len=-1),
     CKR.ARGUMENTS_BAD),
    ("encrypt", "final, a partial block left",
     lambda kind, a, k: (a.app.encrypt_update(a.s, bytes(15)), a.app.encrypt_final(a.s)), CKR.DATA_LEN_RANGE),
    ("decrypt", "single part, not a whole block", lambda kind, a, k: a.app.decrypt(a.s, bytes(15)),
     CKR.ENCRYPTED_DATA_LEN_RANGE),
    ("decrypt", "final, a partial block left",
     lambda kind, a, k: (a.app.decrypt_update(a.s, bytes(15)), a.app.decrypt_final(a.s)),
     CKR.ENCRYPTED_DATA_LEN_RANGE),
    ("verify", "single part, wrong signature", lambda kind, a, k: a.app.verify(a.s, b"other", k["signature"]),
     CKR.SIGNATURE_INVALID),
    ("verify", "single part, signature not bytes", lambda kind, a, k: a.app.verify(a.s, b"signed", "sig"),
     CKR.ARGUMENTS_BAD),
    ("verify", "final, short signature",
     lambda kind, a, k: (a.app.verify_update(a.s, b"signed"), a.app.verify_final(a.s, k["signature"][:-1])),
     CKR.SIGNATURE_LEN_RANGE),
    ("verify", "final, signature not bytes", lambda kind, a, k: a.app.verify_final(a.s, None), CKR.ARGUMENTS_BAD),
]


@pytest.fixture
def keys(alice) -> dict[str, Any]:
    return _keys(alice)


@pytest.mark.parametrize(("kind", "what", "fault", "code"), FAULTS, ids=[f"{f[0]}: {f[1]}" for f in FAULTS])
def test_a_failed_call_ends_the_operation(alice, keys, kind, what, fault, code):
    INITS[kind](alice, keys)
    assert rv(fault, kind, alice, keys) == code
    assert rv(_update, kind, alice, bytes(16)) == CKR.OPERATION_NOT_INITIALIZED
    assert rv(_final, kind, alice, keys) == CKR.OPERATION_NOT_INITIALIZED
    INITS[kind](alice, keys)  # and a new one starts
    assert rv(_final, kind, alice, keys) in (CKR.OK, CKR.SIGNATURE_INVALID)


@pytest.mark.parametrize("kind", [k for k in INITS if k != "verify"])
def test_size_queries_and_short_buffers_keep_the_operation(alice, keys, kind):
    data = keys["ciphertext"] if kind == "decrypt" else bytes(32)
    INITS[kind](alice, keys)
    size = _single(kind, alice, keys, data, query=True)
    with pytest.raises(BufferTooSmall):
        _single(kind, alice, keys, data, out_len=size - 1)
    assert len(_single(kind, alice, keys, data, out_len=size)) == size
    assert rv(_final, kind, alice, keys) == CKR.OPERATION_NOT_INITIALIZED  # delivered: it ended

    INITS[kind](alice, keys)
    if kind in ("encrypt", "decrypt"):
        assert _update(kind, alice, data, query=True) == 32
        with pytest.raises(BufferTooSmall):
            _update(kind, alice, data, out_len=31)
    _update(kind, alice, data)
    size = _final(kind, alice, keys, query=True)
    if size:
        with pytest.raises(BufferTooSmall):
            _final(kind, alice, keys, out_len=size - 1)
    assert len(_final(kind, alice, keys, out_len=size)) == size
    assert rv(_final, kind, alice, keys) == CKR.OPERATION_NOT_INITIALIZED


def test_a_call_whose_arguments_do_not_decode_still_ends_its_operation(alice, keys):
    """The listener hands the node a request whose call did not decode (``unreadable_call``): a call on an
    operation ends it; anything else, and bodies that are not requests at all, change nothing."""
    import msgspec

    def body(*call: Any) -> bytes:
        return msgspec.msgpack.encode(["request", 5, list(call), 0, b""])

    alice.app.sign_init(alice.s, RSA_SHA256, keys["private"])
    for junk in (b"", b"\xc1", msgspec.msgpack.encode(7), msgspec.msgpack.encode(["request"]), body(),
                 body("no_such_call", alice.s), body("sign_update", [alice.s]), body("sign_update", True, 1),
                 body("sign_update", alice.s + 1, 1), body("sign_init", alice.s, 1, 2),
                 body("sign_once", alice.s, 1, 2, 3), body("find_objects", alice.s, "x"), body(["sign_update"], 1),
                 msgspec.msgpack.encode(["request", 5, {"sign_update": alice.s}, 0, b""])):
        alice.app.unreadable_call(junk)
    alice.app.sign_update(alice.s, b"still active")
    alice.app.unreadable_call(body("sign_update", alice.s, "not bytes"))
    assert rv(alice.app.sign_final, alice.s) == CKR.OPERATION_NOT_INITIALIZED
