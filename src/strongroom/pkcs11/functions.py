"""The PKCS#11 functions the agent answers: one handler per p11-kit RPC call (:mod:`.rpc_calls`), each reading
its request body, calling the cluster through the SDK's balancer and writing its reply body.

Mechanism lists and information come from the cluster (``mechanism_list``), limited to what the application's
p11-kit client can carry; token information from ``hsm_info``; everything else maps onto one node call of the
call catalogue (:mod:`strongroom.protocol.calls`) or onto the agent's multi-part state (:mod:`.multipart`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..errors import (
    ArgumentsBad,
    AttributeTypeInvalid,
    MechanismInvalid,
    PinLenRange,
    RandomSeedNotSupported,
    StrongroomError,
)
from ..mechanism_params import Mechanism
from ..protocol.calls import BY_PKCS11
from ..vocab import CKA, CKC, CKF, CKK, CKR, CKU, name_of
from . import attribute_codec, mechanism_codec, wire
from .multipart import Operations, sized_output
from .rpc_calls import BY_FUNCTION, RpcCall

log = logging.getLogger("strongroom.pkcs11")

SLOT_ID = 1
HANDSHAKE = b"PRIVATE-GNOME-KEYRING-PKCS11-PROTOCOL-V-1"
MAX_PIN_BYTES = 64  # ulMaxPinLen of the token: a user name (31), ':' and a password (32)


class Application(Protocol):
    """What a handler needs of the application connection it answers."""

    version: int
    token_label: str | None
    ops: Operations
    tried: tuple[int, str] | None  # (CKU user type, user name) of the application's last login attempt

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """One call of the catalogue through the application's balancer."""

    async def mechanism_infos(self) -> dict[int, tuple[int, int, int]]:
        """The cluster's mechanisms: ``CKM`` → (min key size, max key size, ``CKF`` flags)."""

    def mechanism(self, reader: wire.Reader) -> Mechanism:
        """A mechanism argument (the NULL mechanism refused)."""

    def slot(self, reader: wire.Reader) -> None:
        """A slot id argument (only :data:`SLOT_ID`)."""

    def known_session(self, handle: int) -> None:
        """Raises ``CKR_SESSION_HANDLE_INVALID`` unless ``handle`` is one of the application's open sessions."""


Handler = Callable[["Application", wire.Reader], Awaitable[wire.Writer | None]]
HANDLERS: dict[int, tuple[RpcCall, Handler]] = {}
"""The handler of every p11-kit call the agent answers, by call id, with the call's record."""


def _session(app: Application, r: wire.Reader) -> int:
    """A session handle argument, checked before the arguments after it are read: an unknown session is
    ``CKR_SESSION_HANDLE_INVALID`` whatever else the call carries (a mechanism or template the token does not
    support included)."""
    handle = r.u64()
    app.known_session(handle)
    return handle


def _handles(function: str) -> Callable[[Handler], Handler]:
    """Register a handler for the p11-kit call that carries ``function``."""
    def register(fn: Handler) -> Handler:
        call = BY_FUNCTION[function]
        HANDLERS[call.call_id] = (call, fn)
        return fn

    return register


@_handles("C_Initialize")
async def _initialize(app: Application, r: wire.Reader) -> None:
    handshake, _ = r.byte_array()
    if handshake != HANDSHAKE:
        raise wire.WireError("not a p11-kit client handshake")
    r.byte()
    r.byte_array()
    return None


@_handles("C_Finalize")
async def _finalize(app: Application, r: wire.Reader) -> None:
    return None


@_handles("C_GetInfo")
async def _get_info(app: Application, r: wire.Reader) -> wire.Writer:
    return (wire.Writer().version(3, 0).padded("Strongroom", 32).u64(0)
            .padded("Strongroom PKCS#11 agent", 32).version(0, 1))


@_handles("C_GetSlotList")
async def _get_slot_list(app: Application, r: wire.Reader) -> wire.Writer:
    r.byte()
    capacity = r.buffer_size()
    if capacity is None:
        return wire.Writer().ulong_array(None, 1)
    return wire.Writer().ulong_array([SLOT_ID])


@_handles("C_GetSlotInfo")
async def _get_slot_info(app: Application, r: wire.Reader) -> wire.Writer:
    app.slot(r)
    return (wire.Writer().padded("Strongroom cluster", 64).padded("Strongroom", 32)
            .u64(int(CKF.TOKEN_PRESENT | CKF.HW_SLOT)).version(0, 1).version(0, 1))


def _token_serial(cluster_id: str) -> str:
    """The token's serial number: the cluster's, the same whichever HSM answers (16 hex digits)."""
    return hashlib.sha256(cluster_id.encode()).hexdigest()[:16]


_PIN_FLAGS = {int(CKU.USER): (CKF.USER_PIN_COUNT_LOW, CKF.USER_PIN_FINAL_TRY, CKF.USER_PIN_LOCKED),
              int(CKU.SO): (CKF.SO_PIN_COUNT_LOW, CKF.SO_PIN_FINAL_TRY, CKF.SO_PIN_LOCKED)}


async def _pin_flags(app: Application) -> int:
    """The PIN flags of ``C_GetTokenInfo`` (PKCS#11 3.0 §5.5) for the user the application last tried to log in
    as, from the cluster's count of that user's wrong passwords (``pin_state``): ``*_PIN_COUNT_LOW`` after a
    wrong PIN since the last good one, ``*_PIN_FINAL_TRY`` too when one more locks the account,
    ``*_PIN_LOCKED`` (with ``*_PIN_COUNT_LOW``) once it is locked; the ``CKF_SO_PIN_*`` flags for an admin
    (``CKU_SO``). None before a login attempt, or when no HSM can say."""
    if app.tried is None:
        return 0
    user_type, username = app.tried
    count_low, final_try, locked = _PIN_FLAGS[user_type]
    try:
        state = await app.call("pin_state", username)
    except StrongroomError as exc:
        log.info("C_GetTokenInfo without PIN flags: %s", exc.message)
        return 0
    if not state["failures"] and not state["locked"]:
        return 0
    if state["locked"]:
        return int(count_low | locked)
    if state["failures"] >= state["lockout_threshold"] - 1:
        return int(count_low | final_try)
    return int(count_low)


@_handles("C_GetTokenInfo")
async def _get_token_info(app: Application, r: wire.Reader) -> wire.Writer:
    app.slot(r)
    info, pin_flags = await asyncio.gather(app.call("hsm_info"), _pin_flags(app))
    flags = CKF.RNG | CKF.LOGIN_REQUIRED | CKF.USER_PIN_INITIALIZED | CKF.TOKEN_INITIALIZED | pin_flags
    unavailable = 0xFFFFFFFFFFFFFFFF
    w = (wire.Writer().padded(app.token_label or info["cluster_id"], 32).padded("Strongroom", 32)
         .padded("Strongroom HSM", 16).padded(_token_serial(info["cluster_id"]), 16).u64(int(flags)))
    for value in (unavailable, unavailable, unavailable, unavailable, MAX_PIN_BYTES, 9, info["max_token_objects"],
                  info["free_token_objects"], info["max_token_objects"], info["free_token_objects"]):
        w.u64(value)
    return w.version(0, 1).version(0, 1).padded("", 16)


@_handles("C_GetMechanismList")
async def _get_mechanism_list(app: Application, r: wire.Reader) -> wire.Writer:
    app.slot(r)
    capacity = r.buffer_size()
    offered = mechanism_codec.forwardable(app.version, await app.mechanism_infos())
    if capacity is None or capacity < len(offered):
        return wire.Writer().ulong_array(None, len(offered))
    return wire.Writer().ulong_array(offered)


@_handles("C_GetMechanismInfo")
async def _get_mechanism_info(app: Application, r: wire.Reader) -> wire.Writer:
    app.slot(r)
    kind = r.u64()
    infos = await app.mechanism_infos()
    if kind not in mechanism_codec.forwardable(app.version, infos):
        raise MechanismInvalid(f"mechanism 0x{kind:x} is not offered")
    min_key_size, max_key_size, flags = infos[kind]
    return wire.Writer().u64(min_key_size).u64(max_key_size).u64(flags)


@_handles("C_OpenSession")
async def _open_session(app: Application, r: wire.Reader) -> wire.Writer:
    app.slot(r)
    return wire.Writer().u64(await app.call("open_session", r.u64()))


for _function in ("C_CloseSession", "C_Logout", "C_FindObjectsFinal"):
    async def _session_only(app: Application, r: wire.Reader, name: str = BY_PKCS11[_function].name) -> None:
        await app.call(name, _session(app, r))

    _handles(_function)(_session_only)


@_handles("C_CloseAllSessions")
async def _close_all_sessions(app: Application, r: wire.Reader) -> None:
    app.slot(r)
    await app.call("close_all_sessions")


@_handles("C_GetSessionInfo")
async def _get_session_info(app: Application, r: wire.Reader) -> wire.Writer:
    info = await app.call("session_info", _session(app, r))
    return wire.Writer().u64(SLOT_ID).u64(info["state"]).u64(info["flags"]).u64(info["device_error"])


@_handles("C_Login")
async def _login(app: Application, r: wire.Reader) -> None:
    session, user_type = _session(app, r), r.u64()
    pin, _ = r.byte_array()
    await _try_login(app, session, user_type, _pin(pin))


async def _try_login(app: Application, session: int, user_type: int, pin: str) -> None:
    """Log in, remembering the user name tried (not the password) for the PIN flags of ``C_GetTokenInfo``."""
    username, sep, _ = pin.partition(":")
    if sep and username and user_type in _PIN_FLAGS:
        app.tried = (user_type, username)
    await app.call("login", session, user_type, pin)


def _pin(pin: bytes | None) -> str:
    """The PIN of ``C_Login`` as text (``username:password``).

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a NULL PIN: the token has no protected authentication path
            (PKCS#11 3.0 §5.6, C_Login).
        PinLenRange: ``CKR_PIN_LEN_RANGE`` past ``MAX_PIN_BYTES``.
    """
    if pin is None:
        raise ArgumentsBad("a NULL PIN needs a protected authentication path, which the token does not have")
    if len(pin) > MAX_PIN_BYTES:
        raise PinLenRange(f"a PIN is at most {MAX_PIN_BYTES} bytes (username:password)")
    return pin.decode("utf-8", "replace")


@_handles("C_LoginUser")
async def _login_user(app: Application, r: wire.Reader) -> None:
    """``C_LoginUser`` (PKCS#11 3.0): the user name apart from the password."""
    session, user_type = _session(app, r), r.u64()
    password, _ = r.byte_array()
    username, _ = r.byte_array()
    if password is None:
        raise ArgumentsBad("a NULL PIN needs a protected authentication path, which the token does not have")
    await _try_login(app, session, user_type, _pin(b"%s:%s" % (username or b"", password)))


@_handles("C_GenerateRandom")
async def _generate_random(app: Application, r: wire.Reader) -> wire.Writer:
    session = _session(app, r)
    length = r.buffer_size() or 0
    return wire.Writer().byte_array(await app.call("generate_random", session, length))


for _function in ("C_EncryptInit", "C_DecryptInit", "C_SignInit", "C_VerifyInit"):
    async def _init(app: Application, r: wire.Reader, kind: str = BY_PKCS11[_function].operation) -> None:
        session = _session(app, r)
        mechanism = mechanism_codec.read(r, app.version)
        await app.ops.init(kind, session, mechanism, r.u64())

    _handles(_function)(_init)

for _function in ("C_Encrypt", "C_Decrypt", "C_Sign", "C_Digest"):
    async def _single(app: Application, r: wire.Reader, kind: str = BY_PKCS11[_function].operation) -> wire.Writer:
        session = _session(app, r)
        data, _ = r.byte_array()
        return await app.ops.single(kind, session, data or b"", r.buffer_size())

    _handles(_function)(_single)

for _function in ("C_EncryptUpdate", "C_DecryptUpdate"):
    async def _cipher_update(app: Application, r: wire.Reader,
                             kind: str = BY_PKCS11[_function].operation) -> wire.Writer | None:
        session = _session(app, r)
        data, _ = r.byte_array()
        return await app.ops.update(kind, session, data or b"", r.buffer_size(), output=True)

    _handles(_function)(_cipher_update)

for _function in ("C_EncryptFinal", "C_DecryptFinal", "C_DigestFinal", "C_SignFinal"):
    async def _final(app: Application, r: wire.Reader, kind: str = BY_PKCS11[_function].operation) -> wire.Writer:
        session = _session(app, r)
        return await app.ops.final(kind, session, r.buffer_size())

    _handles(_function)(_final)

for _function in ("C_DigestUpdate", "C_SignUpdate", "C_VerifyUpdate"):
    async def _update(app: Application, r: wire.Reader, kind: str = BY_PKCS11[_function].operation) -> None:
        session = _session(app, r)
        data, _ = r.byte_array()
        await app.ops.update(kind, session, data or b"")

    _handles(_function)(_update)


@_handles("C_VerifyFinal")
async def _verify_final(app: Application, r: wire.Reader) -> None:
    session = _session(app, r)
    signature, _ = r.byte_array()
    await app.ops.verify_final(session, signature or b"")


@_handles("C_DigestInit")
async def _digest_init(app: Application, r: wire.Reader) -> None:
    session = _session(app, r)
    await app.ops.init("digest", session, mechanism_codec.read(r, app.version), None)


@_handles("C_SessionCancel")
async def _session_cancel(app: Application, r: wire.Reader) -> None:
    session, flags = _session(app, r), r.u64()
    await app.ops.cancel(session, flags)


@_handles("C_SetAttributeValue")
async def _set_attribute_value(app: Application, r: wire.Reader) -> None:
    session, handle = _session(app, r), r.u64()
    await app.call("set_attribute_value", session, handle, attribute_codec.to_node(r.template()))


@_handles("C_WrapKey")
async def _wrap_key(app: Application, r: wire.Reader) -> wire.Writer:
    session = _session(app, r)
    mechanism = app.mechanism(r)
    wrapping, key = r.u64(), r.u64()
    answer, _ = await sized_output(app.call, "wrap_key", (session, mechanism, wrapping, key), r.buffer_size())
    return answer


@_handles("C_UnwrapKey")
async def _unwrap_key(app: Application, r: wire.Reader) -> wire.Writer:
    session = _session(app, r)
    mechanism = app.mechanism(r)
    unwrapping = r.u64()
    wrapped, _ = r.byte_array()
    template = attribute_codec.to_node(r.template())
    return wire.Writer().u64(await app.call("unwrap_key", session, mechanism, unwrapping, wrapped or b"", template))


async def _derived(app: Application, r: wire.Reader) -> tuple[Mechanism, int]:
    session = _session(app, r)
    mechanism = app.mechanism(r)
    base = r.u64()
    template = attribute_codec.to_node(r.template())
    return mechanism, await app.call("derive_key", session, mechanism, base, template)


@_handles("C_DeriveKey")
async def _derive_key(app: Application, r: wire.Reader) -> wire.Writer:
    _, handle = await _derived(app, r)
    return wire.Writer().u64(handle)


@_handles("C_DeriveKey2")
async def _derive_key2(app: Application, r: wire.Reader) -> wire.Writer:
    """``C_DeriveKey`` of protocol version 2: the result code, the mechanism parameter as updated (none of
    Strongroom's derivations updates it), the key."""
    mechanism, handle = await _derived(app, r)
    w = wire.Writer().u64(0)
    if not mechanism_codec.has_no_parameter(app.version, mechanism.mechanism):
        w.byte(0)
    return w.u64(handle)


@_handles("C_SeedRandom")
async def _seed_random(app: Application, r: wire.Reader) -> None:
    _session(app, r)
    r.byte_array()
    raise RandomSeedNotSupported("the HSM's generator takes no seed")


@_handles("C_Verify")
async def _verify(app: Application, r: wire.Reader) -> None:
    session = _session(app, r)
    data, _ = r.byte_array()
    signature, _ = r.byte_array()
    await app.ops.verify(session, data or b"", signature or b"")


@_handles("C_CreateObject")
async def _create_object(app: Application, r: wire.Reader) -> wire.Writer:
    session = _session(app, r)
    return wire.Writer().u64(await app.call("create_object", session, attribute_codec.to_node(r.template())))


@_handles("C_CopyObject")
async def _copy_object(app: Application, r: wire.Reader) -> wire.Writer:
    session, handle = _session(app, r), r.u64()
    return wire.Writer().u64(await app.call("copy_object", session, handle, attribute_codec.to_node(r.template())))


@_handles("C_DestroyObject")
async def _destroy_object(app: Application, r: wire.Reader) -> None:
    await app.call("destroy_object", _session(app, r), r.u64())


@_handles("C_GetAttributeValue")
async def _get_attribute_value(app: Application, r: wire.Reader) -> wire.Writer:
    session, handle = _session(app, r), r.u64()
    wanted, nested = r.attribute_requests()
    arrays = [cka for cka, _, _ in wanted if cka in wire.ATTRIBUTE_ARRAY_ATTRIBUTES]
    if arrays and not nested and app.version < 2:
        raise AttributeTypeInvalid(f"{name_of(CKA, arrays[0])}: p11-kit's client before 0.25.4 cannot carry an "
                                   "attribute array's value; read it with a newer client or the SDK")
    results = await app.call("get_attribute_value", session, handle, [cka for cka, _, _ in wanted])
    rv = 0
    w = wire.Writer().u32(len(wanted))
    unavailable = []
    for (cka, capacity, inner), (code, value) in zip(wanted, results, strict=True):
        if code:
            rv = rv or code
            unavailable.append(f"{name_of(CKA, cka)} {_WHY_UNAVAILABLE.get(code, f'CKR 0x{code:x}')}")
            w.attribute(cka, None)
            continue
        written = attribute_codec.write_requested(w, cka, value, capacity, inner)  # every entry, whatever rv
        rv = rv or written
    if unavailable:
        log.info("C_GetAttributeValue of object %d refused %s: %s", handle, name_of(CKR, rv), "; ".join(unavailable))
    return w.u64(rv)


_WHY_UNAVAILABLE = {
    int(CKR.ATTRIBUTE_SENSITIVE): "is sensitive: key material never leaves the HSM in clear",
    int(CKR.ATTRIBUTE_TYPE_INVALID): "is not an attribute of this object",
}


UNKNOWN_TO_OLDER_APPLICATIONS = {
    int(CKA.KEY_TYPE): [int(CKK.EC_EDWARDS), int(CKK.EC_MONTGOMERY), int(CKK.HKDF)],
    int(CKA.CERTIFICATE_TYPE): [int(CKC.X_509_ATTR_CERT), int(CKC.WTLS)],
}
"""Object types a search through PKCS#11 finds only when its template names them: the key types PKCS#11 3.0
added (§4.8) and the certificate types other than X.509 (§4.6)."""


@_handles("C_FindObjectsInit")
async def _find_objects_init(app: Application, r: wire.Reader) -> None:
    """A search through PKCS#11 finds objects of the types in :data:`UNKNOWN_TO_OLDER_APPLICATIONS` (Ed25519's
    ``CKK_EC_EDWARDS``, X.509 attribute certificates) only when its template names that ``CKA_KEY_TYPE`` or
    ``CKA_CERTIFICATE_TYPE``. Applications list keys and certificates by class and give up at the first type
    they do not know (libp11 0.4.12, and so OpenSSL's engine, then finds no key or certificate at all), and no
    p11-kit client carries a mechanism for those keys."""
    session = _session(app, r)
    template = attribute_codec.to_node(r.template())
    leave_out = {cka: values for cka, values in UNKNOWN_TO_OLDER_APPLICATIONS.items() if cka not in template}
    await app.call("find_objects_init", session, template, leave_out=leave_out)


@_handles("C_FindObjects")
async def _find_objects(app: Application, r: wire.Reader) -> wire.Writer:
    session = _session(app, r)
    capacity = r.buffer_size()
    return wire.Writer().ulong_array(await app.call("find_objects", session, capacity or 0))


@_handles("C_GenerateKey")
async def _generate_key(app: Application, r: wire.Reader) -> wire.Writer:
    session = _session(app, r)
    mechanism = app.mechanism(r)
    handle = await app.call("generate_key", session, mechanism, attribute_codec.to_node(r.template()))
    return wire.Writer().u64(handle)


@_handles("C_GenerateKeyPair")
async def _generate_key_pair(app: Application, r: wire.Reader) -> wire.Writer:
    session = _session(app, r)
    mechanism = app.mechanism(r)
    public, private = attribute_codec.to_node(r.template()), attribute_codec.to_node(r.template())
    pub, priv = await app.call("generate_key_pair", session, mechanism, public, private)
    return wire.Writer().u64(pub).u64(priv)
