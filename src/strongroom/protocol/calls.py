"""The call catalogue: one frozen record per call a node serves, and every fact the layers need about it.

The node server, the client's balancer and the PKCS#11 agent read these records and keep no call-name sets of
their own: a new call is added here once, and its wire struct (:mod:`strongroom.protocol.messages`), its
threading on the node, its failover and pinning in the client follow from its record.

Each call is a method of the node's ``Application`` with the same name and arguments. Argument types are what
the wire carries (msgspec msgpack): handles and ``CK_ULONG`` values as ``int``, byte strings as ``bytes``,
templates as ``dict[int, value]``, a mechanism as :class:`strongroom.mechanism_params.Mechanism`.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any

from ..mechanism_params import Mechanism

Template = dict[int, Any]
"""An attribute template on the wire: ``CKA_*`` value → attribute value (see :mod:`strongroom.attribute_kinds`)."""

Positional = tuple[tuple[str, Any], ...]
Keyword = tuple[tuple[str, Any, Any], ...]


@dataclass(frozen=True)
class CallSpec:
    """What one call takes and how every layer treats it.

    Attributes:
        name: the call's name on the wire and of the node's ``Application`` method.
        args: positional arguments as ``(name, wire type)``; a first argument named ``session`` makes it a
            session call (the client maps its virtual session handle to the HSM's).
        kwargs: keyword arguments as ``(name, wire type, default)``.
        function: the PKCS#11 function the call serves (``"C_Sign"``), or ``""`` for Strongroom's own calls.
        write: changes the replicated state: the client sends a request key with it so a retry is done once,
            and the node runs it on the write threads (it waits for a Raft commit).
        blocking: may block (store writes and fsync, password hashing, key generation, bulk reads): the node
            runs it on a worker thread instead of its event loop.
        operation: the multi-part operation the call belongs to (``"encrypt"``, ``"decrypt"``, ``"sign"``,
            ``"verify"``, ``"digest"``, ``"find"``), or ``""``.
        starts: starts an operation whose state one HSM holds (``C_*Init``): the client keeps the session on
            that HSM until a call that ``ends`` it.
        ends: ends the session's operation when it answers (a single-part call, ``C_*Final``, a cancel),
            unless it was only a size query.
        once: the init and single-part call in one request (the key handle is the third argument).
        makes_objects: may make objects: session objects live on the HSM that made them.
        finds: searches objects by a template (the second argument): one that names no indexed attribute may
            scan every object, so it blocks.
        slow: may take longer than one attempt's budget (key-pair generation, password hashing): the client
            waits its whole timeout for one attempt.
        any_time: answered while the node is catching up with its cluster, in any state.
        session_control: opens, closes, logs in or out: the client's balancer does it on every HSM itself.
        changes_login: may change who is logged in (a login, a logout, closing sessions: PKCS#11 3.0 §5.6 logs
            the application out with its last session), so what was proven for the former login may not hold.
        changes_object: changes or destroys an existing object (the second argument): what was proven for it
            may not hold.
        before_login: served to an application no user is logged in to (PKCS#11 3.0 §5.6's public session):
            the node answers every other call ``CKR_USER_NOT_LOGGED_IN`` until a login, before it looks at the
            arguments. Public node information, session control and login, and what PKCS#11 lets a public
            session do with public objects (the handler still refuses token objects and keys without a login).
            Every record states it: there is no default.
    """

    name: str
    args: Positional = ()
    kwargs: Keyword = ()
    function: str = ""
    write: bool = False
    blocking: bool = False
    operation: str = ""
    starts: bool = False
    ends: bool = False
    once: bool = False
    makes_objects: bool = False
    finds: bool = False
    slow: bool = False
    any_time: bool = False
    session_control: bool = False
    changes_login: bool = False
    changes_object: bool = False
    _: KW_ONLY
    before_login: bool

    @property
    def session(self) -> bool:
        """Whether the first argument is a session handle."""
        return bool(self.args) and self.args[0][0] == "session"

    @property
    def keyed_step(self) -> bool:
        """Whether the call runs a keyed operation's cryptography (a single-part call or ``C_*Final`` of
        encrypt, decrypt, sign or verify): its cost depends on the key (an RSA private key blocks)."""
        return self.ends and self.operation in _KEYED_OPERATIONS


_KEYED_OPERATIONS = frozenset({"encrypt", "decrypt", "sign", "verify"})

_H, _B, _T, _M = int, bytes, Template, Mechanism
_S: Positional = (("session", _H),)
_OUT: Keyword = (("out_len", int | None, None), ("query", bool, False))


def _operation(kind: str, function: str, *, single_args: Positional, final_args: Positional = (),
               update_out: bool = True, final_out: bool = True, single_out: bool = True,
               init_before_login: bool) -> list[CallSpec]:
    """The init, single-part, update and final calls of one multi-part operation (PKCS#11 3.0 §5.8–§5.13).

    ``init_before_login`` says whether the init (which names the key) is served before a login. The calls that
    continue an operation are served in any case: they name no key and act only on an operation an init
    started, so without a login they answer ``CKR_OPERATION_NOT_INITIALIZED`` as PKCS#11 says.
    """
    init_args: Positional = (*_S, ("mechanism", _M)) + ((("key", _H),) if kind != "digest" else ())
    return [
        CallSpec(f"{kind}_init", init_args, function=f"C_{function}Init", operation=kind, starts=True,
                 before_login=init_before_login),
        CallSpec(kind, (*_S, *single_args), _OUT if single_out else (), function=f"C_{function}",
                 operation=kind, ends=True, before_login=True),
        CallSpec(f"{kind}_update", (*_S, ("data", _B)), _OUT if update_out else (),
                 function=f"C_{function}Update", operation=kind, before_login=True),
        CallSpec(f"{kind}_final", (*_S, *final_args), _OUT if final_out else (), function=f"C_{function}Final",
                 operation=kind, ends=True, before_login=True),
    ]


_DATA: Positional = (("data", _B),)

CATALOGUE: tuple[CallSpec, ...] = (
    # node and users (Strongroom's own calls and the session/login functions of PKCS#11 3.0 §5.6)
    CallSpec("hsm_info", function="C_GetTokenInfo", any_time=True, before_login=True),
    CallSpec("mechanism_list", function="C_GetMechanismList", any_time=True, before_login=True),
    CallSpec("list_users", _S, blocking=True, before_login=False),
    CallSpec("open_session", (("flags", int),), function="C_OpenSession", session_control=True, before_login=True),
    CallSpec("close_session", _S, function="C_CloseSession", blocking=True, session_control=True,
             changes_login=True, before_login=True),
    CallSpec("close_all_sessions", function="C_CloseAllSessions", blocking=True, session_control=True,
             changes_login=True, before_login=True),
    CallSpec("session_info", _S, function="C_GetSessionInfo", before_login=True),
    CallSpec("login", (*_S, ("user_type", int), ("pin", str)), (("client", str, ""),), function="C_Login",
             blocking=True, slow=True, session_control=True, changes_login=True, before_login=True),
    CallSpec("logout", _S, function="C_Logout", blocking=True, session_control=True, changes_login=True,
             before_login=True),
    CallSpec("pin_state", (("username", str),), blocking=True, before_login=True),
    CallSpec("activate", (*_S, ("new_password", str)), write=True, blocking=True, slow=True, before_login=False),
    CallSpec("create_user", (*_S, ("username", str), ("password", str), ("role", str)), write=True,
             blocking=True, slow=True, before_login=False),
    CallSpec("delete_user", (*_S, ("username", str)), write=True, blocking=True, before_login=False),
    CallSpec("change_password", (*_S, ("username", str), ("new_password", str), ("old_password", str | None)),
             function="C_SetPIN", write=True, blocking=True, slow=True, before_login=False),
    CallSpec("initial_password", _S, before_login=False),
    CallSpec("unlock_user", (*_S, ("username", str)), write=True, blocking=True, before_login=False),
    CallSpec("owner_unlock", (*_S, ("signed", bytes)), write=True, blocking=True, before_login=True),
    CallSpec("verify_audit", blocking=True, before_login=False),
    CallSpec("export_audit", (("after_seq", int),), blocking=True, before_login=False),
    CallSpec("zeroize", _S, function="C_InitToken", blocking=True, before_login=False),
    # objects (§5.7)
    CallSpec("create_object", (*_S, ("template", _T)), function="C_CreateObject", write=True, blocking=True,
             makes_objects=True, before_login=True),
    CallSpec("destroy_object", (*_S, ("object", _H)), function="C_DestroyObject", write=True, blocking=True,
             changes_object=True, before_login=True),
    CallSpec("copy_object", (*_S, ("object", _H), ("template", _T)), function="C_CopyObject", write=True,
             blocking=True, makes_objects=True, before_login=True),
    CallSpec("get_attribute_value", (*_S, ("object", _H), ("types", list[int])), function="C_GetAttributeValue",
             before_login=True),
    CallSpec("set_attribute_value", (*_S, ("object", _H), ("template", _T)), function="C_SetAttributeValue",
             write=True, blocking=True, changes_object=True, before_login=True),
    CallSpec("share", (*_S, ("object", _H), ("username", str)), (("unshare", bool, False),), write=True,
             blocking=True, before_login=False),
    CallSpec("key_info", (*_S, ("object", _H)), before_login=False),
    CallSpec("find_objects_init", (*_S, ("template", _T)), (("leave_out", dict[int, list[int]], {}),),
             function="C_FindObjectsInit", operation="find", starts=True, finds=True, before_login=True),
    CallSpec("find_objects", (*_S, ("max_count", int)), function="C_FindObjects", operation="find",
             before_login=True),
    CallSpec("find_objects_final", _S, function="C_FindObjectsFinal", operation="find", ends=True,
             before_login=True),
    CallSpec("find", (*_S, ("template", _T)), finds=True, before_login=True),
    # keys (§5.14)
    CallSpec("generate_key", (*_S, ("mechanism", _M), ("template", _T)), function="C_GenerateKey", write=True,
             blocking=True, makes_objects=True, before_login=False),
    CallSpec("generate_key_pair", (*_S, ("mechanism", _M), ("public_template", _T), ("private_template", _T)),
             function="C_GenerateKeyPair", write=True, blocking=True, makes_objects=True, slow=True,
             before_login=False),
    CallSpec("wrap_key", (*_S, ("mechanism", _M), ("wrapping_key", _H), ("key", _H)), _OUT,
             function="C_WrapKey", blocking=True, before_login=False),
    CallSpec("unwrap_key", (*_S, ("mechanism", _M), ("unwrapping_key", _H), ("wrapped", _B), ("template", _T)),
             function="C_UnwrapKey", write=True, blocking=True, makes_objects=True, before_login=False),
    CallSpec("derive_key", (*_S, ("mechanism", _M), ("base_key", _H), ("template", _T)), function="C_DeriveKey",
             write=True, blocking=True, makes_objects=True, before_login=False),
    CallSpec("generate_random", (*_S, ("length", int)), function="C_GenerateRandom", blocking=True,
             before_login=True),
    # cryptographic operations (§5.8–§5.13)
    *_operation("encrypt", "Encrypt", single_args=_DATA, init_before_login=False),
    *_operation("decrypt", "Decrypt", single_args=_DATA, init_before_login=False),
    *_operation("digest", "Digest", single_args=_DATA, update_out=False, init_before_login=True),
    *_operation("sign", "Sign", single_args=_DATA, update_out=False, init_before_login=False),
    *_operation("verify", "Verify", single_args=(*_DATA, ("signature", _B)), final_args=(("signature", _B),),
                update_out=False, final_out=False, single_out=False, init_before_login=False),
    CallSpec("session_cancel", (*_S, ("flags", int)), function="C_SessionCancel", ends=True, before_login=True),
    # one round trip for an init and its single-part call
    CallSpec("encrypt_once", (*_S, ("mechanism", _M), ("key", _H), *_DATA), operation="encrypt", once=True,
             before_login=False),
    CallSpec("decrypt_once", (*_S, ("mechanism", _M), ("key", _H), *_DATA), operation="decrypt", once=True,
             before_login=False),
    CallSpec("sign_once", (*_S, ("mechanism", _M), ("key", _H), *_DATA), operation="sign", once=True,
             before_login=False),
    CallSpec("verify_once", (*_S, ("mechanism", _M), ("key", _H), *_DATA, ("signature", _B)), operation="verify",
             once=True, before_login=False),
    CallSpec("digest_once", (*_S, ("mechanism", _M), *_DATA), operation="digest", before_login=True),
    # cluster membership and the cluster certificate
    CallSpec("cluster_status", any_time=True, before_login=True),
    CallSpec("join_challenge", before_login=True),
    CallSpec("join_cluster", (*_S, ("certificate", _B), ("address", str), ("signature", _B)), blocking=True,
             slow=True, before_login=True),
    CallSpec("remove_member", (*_S, ("address", str)), blocking=True, before_login=False),
    CallSpec("admit_member", (*_S, ("certificate", _B)), blocking=True, before_login=False),
    CallSpec("cluster_csr", before_login=True),
    CallSpec("initialize_cluster", (*_S, ("certificate", str), ("trust_anchor", str)), blocking=True,
             before_login=False),
    # the client CAs of mutual TLS beside the owner's trust anchor
    CallSpec("register_client_ca", (*_S, ("certificate", str)), blocking=True, before_login=False),
    CallSpec("unregister_client_ca", (*_S, ("fingerprint", str)), blocking=True, before_login=False),
    CallSpec("list_client_cas", _S, before_login=False),
)

CALL_SPECS: dict[str, CallSpec] = {spec.name: spec for spec in CATALOGUE}
"""The catalogue by call name."""

BY_PKCS11: dict[str, CallSpec] = {spec.function: spec for spec in CATALOGUE if spec.function}
"""The catalogue by the PKCS#11 function each call serves (``"C_Sign"``)."""

# a catalogue that names a call or a function twice does not load
if len(CALL_SPECS) != len(CATALOGUE) or len(BY_PKCS11) != sum(1 for spec in CATALOGUE if spec.function):
    raise ImportError("the call catalogue names a call or a PKCS#11 function twice")
