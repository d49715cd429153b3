"""Operation termination (PKCS#11 3.0 §5.2, §5.8–§5.13) through the agent and through the SDK, walked over every
operation family: a call on an active operation that fails with anything but ``CKR_BUFFER_TOO_SMALL`` ends it,
and the next update or final answers ``CKR_OPERATION_NOT_INITIALIZED``; a size query and a too-small buffer keep
it. Through the agent each case runs twice: after the operation's first init (the HSM holds the operation) and
after a repeated one (the agent holds it until the call that follows). And argument and handle checks come before
feature checks: a function the agent does not serve answers ``CKR_SESSION_HANDLE_INVALID`` for an unknown session.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from strongroom.errors import StrongroomError
from strongroom.mechanism_params import Mechanism
from strongroom.pkcs11 import wire
from strongroom.pkcs11.functions import HANDLERS
from strongroom.pkcs11.rpc_calls import UNSERVED
from strongroom.vocab import CKA, CKK, CKM, CKO, CKR

from ..fixtures.cluster import ALICE_PW
from .raw import initialized, ok, request, u64s

BIG = 4096  # a buffer large enough for every output here
DATA = bytes(range(32))

# call ids and signatures per operation: init, single part, update, final (p11-kit's rpc-message.h)
CALLS = {
    "encrypt": ((29, "uMu"), (30, "uayfy"), (31, "uayfy"), (32, "ufy")),
    "decrypt": ((33, "uMu"), (34, "uayfy"), (35, "uayfy"), (36, "ufy")),
    "digest": ((37, "uM"), (38, "uayfy"), (39, "uay"), (41, "ufy")),
    "sign": ((42, "uMu"), (43, "uayfy"), (44, "uay"), (45, "ufy")),
    "verify": ((48, "uMu"), (49, "uayay"), (50, "uay"), (51, "uay")),
}
MECHANISMS = {"encrypt": CKM.AES_ECB, "decrypt": CKM.AES_ECB, "digest": CKM.SHA256, "sign": CKM.SHA256_HMAC,
              "verify": CKM.SHA256_HMAC}


def _rv(reply: bytes) -> int:
    """The ``CK_RV`` of a reply: 0 for a success."""
    reader = wire.Reader(reply)
    if reader.u32() != wire.ERROR_CALL_ID:
        return 0
    reader.signature()
    return reader.u64()


class Operations:
    """One application of the agent, logged in as alice, running operations over the raw wire."""

    def __init__(self, agent: Any, keys: dict[str, Any]) -> None:
        self.app = initialized(agent, 0)
        self.keys = keys
        self.session = ok(self.app.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()
        login = u64s(self.session, 1) + wire.Writer().byte(1).data(f"alice:{ALICE_PW}".encode()).bytes()
        assert self.app.call(request(18, "uuay", login)) == wire.reply_body(18, "")

    def _call(self, kind: str, step: int, *parts: bytes) -> bytes:
        call_id, signature = CALLS[kind][step]
        return self.app.call(request(call_id, signature, u64s(self.session), *parts))

    def init(self, kind: str) -> int:
        mechanism = wire.Writer().u32(int(MECHANISMS[kind])).data(None).bytes()
        key = b"" if kind == "digest" else u64s(self.keys[kind])
        return _rv(self._call(kind, 0, mechanism, key))

    def single(self, kind: str, data: bytes = DATA, capacity: int = BIG, signature: bytes | None = None) -> bytes:
        if kind == "verify":
            return self._call(kind, 1, _ay(data), _ay(self.keys["mac"] if signature is None else signature))
        return self._call(kind, 1, _ay(data), _fy(capacity))

    def update(self, kind: str, data: bytes = DATA, capacity: int = BIG) -> bytes:
        if kind in ("encrypt", "decrypt"):
            return self._call(kind, 2, _ay(data), _fy(capacity))
        return self._call(kind, 2, _ay(data))

    def final(self, kind: str, capacity: int = BIG, signature: bytes | None = None) -> bytes:
        if kind == "verify":
            return self._call(kind, 3, _ay(self.keys["mac"] if signature is None else signature))
        return self._call(kind, 3, _fy(capacity))


def _ay(data: bytes) -> bytes:
    return wire.Writer().byte_array(data).bytes()


def _fy(capacity: int) -> bytes:
    return wire.Writer().u32(capacity).bytes()


def _output(reply: bytes, call_id: int) -> tuple[bytes | None, int]:
    """The output of an ``ay`` reply, or ``None`` and the length when only a length came back."""
    return ok(reply, call_id, "ay").byte_array()


def _steps(*calls: Callable[[Operations], bytes]) -> Callable[[Operations], int]:
    """Calls in order: every one but the last succeeds; the last one's code is returned."""
    def run(o: Operations) -> int:
        for call in calls[:-1]:
            assert _rv(call(o)) == 0
        return _rv(calls[-1](o))
    return run


# (operation, what fails, the calls after the init, the code the last one answers)
FAULTS: list[tuple[str, str, Callable[[Operations], int], CKR]] = [
    ("encrypt", "single part, not a whole block", _steps(lambda o: o.single("encrypt", DATA[:15])),
     CKR.DATA_LEN_RANGE),
    ("encrypt", "final, a partial block left",
     _steps(lambda o: o.update("encrypt", DATA[:15]), lambda o: o.final("encrypt")), CKR.DATA_LEN_RANGE),
    ("decrypt", "single part, not a whole block", _steps(lambda o: o.single("decrypt", DATA[:15])),
     CKR.ENCRYPTED_DATA_LEN_RANGE),
    ("decrypt", "final, a partial block left",
     _steps(lambda o: o.update("decrypt", DATA[:15]), lambda o: o.final("decrypt")), CKR.ENCRYPTED_DATA_LEN_RANGE),
    ("verify", "single part, wrong signature", _steps(lambda o: o.single("verify", b"other data")),
     CKR.SIGNATURE_INVALID),
    ("verify", "single part, short signature", _steps(lambda o: o.single("verify", signature=b"short")),
     CKR.SIGNATURE_LEN_RANGE),
    ("verify", "final, wrong signature",
     _steps(lambda o: o.update("verify"), lambda o: o.final("verify", signature=bytes(32))), CKR.SIGNATURE_INVALID),
]
for _kind in CALLS:
    FAULTS.append((_kind, "single part after an update",
                   _steps(lambda o, k=_kind: o.update(k), lambda o, k=_kind: o.single(k)), CKR.OPERATION_ACTIVE))
    if _kind != "verify":
        FAULTS += [
            (_kind, "update after a single-part size query",
             _steps(lambda o, k=_kind: o.single(k, capacity=0), lambda o, k=_kind: o.update(k)),
             CKR.OPERATION_ACTIVE),
            (_kind, "final after a single-part size query",
             _steps(lambda o, k=_kind: o.single(k, capacity=0), lambda o, k=_kind: o.final(k)),
             CKR.OPERATION_ACTIVE),
            (_kind, "single part with other data after a size query",
             _steps(lambda o, k=_kind: o.single(k, capacity=0), lambda o, k=_kind: o.single(k, DATA[:16])),
             CKR.OPERATION_ACTIVE),
        ]


AES_VALUE = bytes(range(100, 132))
MAC_VALUE = bytes(range(200, 232))


def _expected(kind: str, data: bytes) -> bytes:
    """The output an independent implementation computes for ``data``."""
    cipher = Cipher(algorithms.AES(AES_VALUE), modes.ECB())
    if kind == "encrypt":
        return cipher.encryptor().update(data)
    if kind == "decrypt":
        return cipher.decryptor().update(data)
    if kind == "digest":
        return hashlib.sha256(data).digest()
    return hmac.new(MAC_VALUE, data, hashlib.sha256).digest()


@pytest.fixture(scope="module")
def keys(alice) -> dict[str, Any]:
    aes = alice.create_object({CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.AES, CKA.VALUE: AES_VALUE,
                               CKA.ENCRYPT: True, CKA.DECRYPT: True, CKA.TOKEN: True, CKA.LABEL: "termination-aes"})
    mac = alice.create_object({CKA.CLASS: CKO.SECRET_KEY, CKA.KEY_TYPE: CKK.GENERIC_SECRET, CKA.VALUE: MAC_VALUE,
                               CKA.SIGN: True, CKA.VERIFY: True, CKA.TOKEN: True, CKA.LABEL: "termination-hmac"})
    return {"encrypt": aes.handle, "decrypt": aes.handle, "sign": mac.handle, "verify": mac.handle,
            "mac": _expected("sign", DATA), "aes": aes}


@pytest.mark.parametrize(("kind", "what", "fault", "code"), FAULTS, ids=[f"{f[0]}: {f[1]}" for f in FAULTS])
def test_through_the_agent_a_failed_call_ends_the_operation(agent, keys, kind, what, fault, code):
    o = Operations(agent, keys)
    for init in ("the HSM's", "the agent's"):
        assert o.init(kind) == 0, init
        assert fault(o) == code, init
        assert _rv(o.update(kind)) == CKR.OPERATION_NOT_INITIALIZED, init
        assert _rv(o.final(kind)) == CKR.OPERATION_NOT_INITIALIZED, init


@pytest.mark.parametrize("kind", ["encrypt", "decrypt", "digest", "sign"])
def test_through_the_agent_size_queries_and_short_buffers_keep_the_operation(agent, keys, kind):
    o = Operations(agent, keys)
    single_id, final_id = CALLS[kind][1][0], CALLS[kind][3][0]
    for init in ("the HSM's", "the agent's"):
        assert o.init(kind) == 0
        out, size = _output(o.single(kind, capacity=0), single_id)
        assert out is None and size == 32, init
        assert _output(o.single(kind, capacity=size - 1), single_id) == (None, size), init
        assert _output(o.single(kind, capacity=size), single_id) == (_expected(kind, DATA), size), init
        assert _rv(o.final(kind)) == CKR.OPERATION_NOT_INITIALIZED, init

        assert o.init(kind) == 0
        update_id = CALLS[kind][2][0]
        if kind in ("encrypt", "decrypt"):
            assert _output(o.update(kind, DATA[:16], capacity=0), update_id) == (None, 16), init
            assert _output(o.update(kind, DATA[:16], capacity=15), update_id) == (None, 16), init
            parts = [_output(o.update(kind, part), update_id)[0] for part in (DATA[:16], DATA[16:])]
            assert b"".join(p or b"" for p in parts) == _expected(kind, DATA), init
            assert _output(o.final(kind, capacity=0), final_id) == (None, 0), init  # ECB has nothing left
            assert _output(o.final(kind), final_id) == (b"", 0), init
        else:
            assert _rv(o.update(kind, DATA[:16])) == 0
            assert _rv(o.update(kind, DATA[16:])) == 0
            assert _output(o.final(kind, capacity=0), final_id) == (None, 32), init
            assert _output(o.final(kind, capacity=31), final_id) == (None, 32), init
            assert _output(o.final(kind, capacity=32), final_id) == (_expected(kind, DATA), 32), init
        assert _rv(o.final(kind)) == CKR.OPERATION_NOT_INITIALIZED, init


# the SDK: (init, then the failing call and its code, then the next call) over every operation family
SDK_FAULTS: list[tuple[str, tuple[Any, ...], str, tuple[Any, ...], CKR, str, tuple[Any, ...]]] = [
    ("encrypt_init", ("aes",), "encrypt", (DATA[:15],), CKR.DATA_LEN_RANGE, "encrypt_final", ()),
    ("encrypt_init", ("aes",), "encrypt_final", (), CKR.DATA_LEN_RANGE, "encrypt_update", (DATA,)),
    ("decrypt_init", ("aes",), "decrypt", (DATA[:15],), CKR.ENCRYPTED_DATA_LEN_RANGE, "decrypt_final", ()),
    ("digest_init", (), "digest", ("text",), CKR.ARGUMENTS_BAD, "digest_final", ()),
    ("digest_init", (), "digest_update", (None,), CKR.ARGUMENTS_BAD, "digest_final", ()),
    ("sign_init", ("mac",), "sign_final", (), CKR.ARGUMENTS_BAD, "sign_update", (DATA,)),
    ("verify_init", ("mac",), "verify", (DATA, b"short"), CKR.SIGNATURE_LEN_RANGE, "verify_final", (bytes(32),)),
    ("verify_init", ("mac",), "verify_final", (bytes(32),), CKR.SIGNATURE_INVALID, "verify_update", (DATA,)),
]


@pytest.mark.parametrize(("init", "init_args", "name", "args", "code", "then", "then_args"), SDK_FAULTS,
                         ids=[f"{f[0]}: {f[2]}" for f in SDK_FAULTS])
def test_through_the_sdk_a_failed_call_ends_the_operation(alice, keys, init, init_args, name, args, code, then,
                                                          then_args):
    kind = init.split("_")[0]
    mechanism = Mechanism(MECHANISMS[kind])
    handles = {"aes": keys["aes"].handle, "mac": keys["sign"]}
    alice.call(init, mechanism, *[handles[a] for a in init_args])
    if name.endswith("_final") and kind != "verify":
        alice.call(f"{kind}_update", DATA[:15])
    if name == "verify_final":
        alice.call("verify_update", DATA)
    kwargs = {"out_len": -1} if name == "sign_final" else {}
    with pytest.raises(StrongroomError) as failed:
        alice.call(name, *args, **kwargs)
    assert failed.value.ckr == code
    with pytest.raises(StrongroomError) as after:
        alice.call(then, *then_args)
    assert after.value.ckr == CKR.OPERATION_NOT_INITIALIZED


def test_functions_the_agent_does_not_serve_check_their_session_and_slot_first(agent):
    app = initialized(agent, 2)
    session = ok(app.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()
    for call, first in UNSERVED.values():
        if first == "session":
            assert _rv(app.call(request(call.call_id, call.request, u64s(session + 99)))) \
                == CKR.SESSION_HANDLE_INVALID, call.function
            assert _rv(app.call(request(call.call_id, call.request, u64s(session)))) \
                == CKR.FUNCTION_NOT_SUPPORTED, call.function
        elif first == "slot":
            assert _rv(app.call(request(call.call_id, call.request, u64s(7)))) == CKR.SLOT_ID_INVALID
            assert _rv(app.call(request(call.call_id, call.request, u64s(1)))) == CKR.FUNCTION_NOT_SUPPORTED
        else:
            assert _rv(app.call(request(call.call_id, call.request, u64s(0)))) == CKR.FUNCTION_NOT_SUPPORTED
        assert _rv(app.call(request(call.call_id, "u", u64s(session)))) in (CKR.ARGUMENTS_BAD,
                                                                             CKR.FUNCTION_NOT_SUPPORTED)
    seed = _ay(b"seed")
    assert _rv(app.call(request(63, "uay", u64s(session + 99), seed))) == CKR.SESSION_HANDLE_INVALID
    assert _rv(app.call(request(63, "uay", u64s(session), seed))) == CKR.RANDOM_SEED_NOT_SUPPORTED
    assert _rv(app.call(request(120, "u", u64s(session)))) == CKR.FUNCTION_NOT_SUPPORTED  # no such call


NO_SESSION = {"C_Initialize", "C_Finalize", "C_GetInfo", "C_GetSlotList", "C_GetSlotInfo", "C_GetTokenInfo",
              "C_GetMechanismList", "C_GetMechanismInfo", "C_OpenSession", "C_CloseAllSessions"}


def test_an_unknown_session_is_refused_before_anything_else_the_call_carries(agent):
    """Every function that takes a session answers ``CKR_SESSION_HANDLE_INVALID`` for an unknown one, whatever
    follows it (here: nothing, so an unsupported mechanism or a bad template could not be read either)."""
    app = initialized(agent, 2)
    session = ok(app.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()
    functions = [record for record, _ in HANDLERS.values() if record.function not in NO_SESSION]
    assert len(functions) == 42
    for record in functions:
        assert _rv(app.call(request(record.call_id, record.request, u64s(session + 99)))) \
            == CKR.SESSION_HANDLE_INVALID, record.function
    # protocol version 2 carries mechanism parameters by type: one it cannot read is a bad argument, after the
    # session check
    unsupported = wire.Writer().u32(0x80001234).data(None).bytes()  # a vendor mechanism with a parameter
    assert _rv(app.call(request(42, "uMu", u64s(session + 99), unsupported, u64s(1)))) == CKR.SESSION_HANDLE_INVALID
    assert _rv(app.call(request(42, "uMu", u64s(session), unsupported, u64s(1)))) == CKR.ARGUMENTS_BAD
