"""Wire messages: the hello exchange, requests (one struct per call) and responses.

Every message is msgpack (msgspec). A request is ``[id, [call, arg…]]``; its call is one of :data:`CALLS`, each
a node operation with the arguments of the :class:`strongroom.node.Application` method of the same name. A
response is ``[id, ckr, value, message]``: ``ckr`` is ``CKR_OK`` (0) with the call's value, or the ``CKR_*``
of the error with a message. Requests on one connection may be answered in any order; ids pair them up.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from ..crypto.params import Mechanism

PROTOCOL_VERSION = 1
CAPABILITIES = ("pipelining", "oneshot-crypto")

Template = dict[int, Any]


class Hello(msgspec.Struct, array_like=True, tag="hello"):
    """The client's first frame: the protocol versions and capabilities it speaks."""

    versions: list[int]
    capabilities: list[str] = []
    client: str = ""


class HelloReply(msgspec.Struct, array_like=True, tag="hello-reply"):
    """The node's answer: the chosen version, its capabilities, and limits (bytes, seconds)."""

    version: int
    capabilities: list[str]
    node: dict[str, Any]
    max_frame_bytes: int
    idle_timeout_s: float


# name → (positional arguments, keyword arguments with defaults); types are what the wire carries.
_H, _B, _T = int, bytes, Template
_OUT = (("out_len", int | None, None), ("query", bool, False))
CALLS: dict[str, tuple[tuple[tuple[str, Any], ...], tuple[tuple[str, Any, Any], ...]]] = {
    "hsm_info": ((), ()),
    "list_users": ((), ()),
    "open_session": ((("flags", int),), ()),
    "close_session": ((("session", _H),), ()),
    "close_all_sessions": ((), ()),
    "session_info": ((("session", _H),), ()),
    "login": ((("session", _H), ("user_type", int), ("pin", str)), (("client", str, ""),)),
    "logout": ((("session", _H),), ()),
    "activate": ((("session", _H), ("new_password", str)), ()),
    "create_user": ((("session", _H), ("username", str), ("password", str), ("role", str)), ()),
    "delete_user": ((("session", _H), ("username", str)), ()),
    "change_password": ((("session", _H), ("username", str), ("new_password", str),
                         ("old_password", str | None)), ()),
    "verify_audit": ((), ()),
    "export_audit": ((("after_seq", int),), ()),
    "zeroize": ((("session", _H),), ()),
    "create_object": ((("session", _H), ("template", _T)), ()),
    "destroy_object": ((("session", _H), ("object", _H)), ()),
    "copy_object": ((("session", _H), ("object", _H), ("template", _T)), ()),
    "get_attribute_value": ((("session", _H), ("object", _H), ("types", list[int])), ()),
    "set_attribute_value": ((("session", _H), ("object", _H), ("template", _T)), ()),
    "share": ((("session", _H), ("object", _H), ("username", str)), (("unshare", bool, False),)),
    "key_info": ((("session", _H), ("object", _H)), ()),
    "find_objects_init": ((("session", _H), ("template", _T)), ()),
    "find_objects": ((("session", _H), ("max_count", int)), ()),
    "find_objects_final": ((("session", _H),), ()),
    "find": ((("session", _H), ("template", _T)), ()),
    "generate_key": ((("session", _H), ("mechanism", Mechanism), ("template", _T)), ()),
    "generate_key_pair": ((("session", _H), ("mechanism", Mechanism), ("public_template", _T),
                           ("private_template", _T)), ()),
    "wrap_key": ((("session", _H), ("mechanism", Mechanism), ("wrapping_key", _H), ("key", _H)), _OUT),
    "unwrap_key": ((("session", _H), ("mechanism", Mechanism), ("unwrapping_key", _H), ("wrapped", _B),
                    ("template", _T)), ()),
    "derive_key": ((("session", _H), ("mechanism", Mechanism), ("base_key", _H), ("template", _T)), ()),
    "generate_random": ((("session", _H), ("length", int)), ()),
    "encrypt_init": ((("session", _H), ("mechanism", Mechanism), ("key", _H)), ()),
    "encrypt": ((("session", _H), ("data", _B)), _OUT),
    "encrypt_update": ((("session", _H), ("data", _B)), _OUT),
    "encrypt_final": ((("session", _H),), _OUT),
    "decrypt_init": ((("session", _H), ("mechanism", Mechanism), ("key", _H)), ()),
    "decrypt": ((("session", _H), ("data", _B)), _OUT),
    "decrypt_update": ((("session", _H), ("data", _B)), _OUT),
    "decrypt_final": ((("session", _H),), _OUT),
    "digest_init": ((("session", _H), ("mechanism", Mechanism)), ()),
    "session_cancel": ((("session", _H), ("flags", int)), ()),
    "digest": ((("session", _H), ("data", _B)), _OUT),
    "digest_update": ((("session", _H), ("data", _B)), ()),
    "digest_final": ((("session", _H),), _OUT),
    "sign_init": ((("session", _H), ("mechanism", Mechanism), ("key", _H)), ()),
    "sign": ((("session", _H), ("data", _B)), _OUT),
    "sign_update": ((("session", _H), ("data", _B)), ()),
    "sign_final": ((("session", _H),), _OUT),
    "verify_init": ((("session", _H), ("mechanism", Mechanism), ("key", _H)), ()),
    "verify": ((("session", _H), ("data", _B), ("signature", _B)), ()),
    "verify_update": ((("session", _H), ("data", _B)), ()),
    "verify_final": ((("session", _H), ("signature", _B)), ()),
    # one round trip for init + single-part call
    "encrypt_once": ((("session", _H), ("mechanism", Mechanism), ("key", _H), ("data", _B)), ()),
    "decrypt_once": ((("session", _H), ("mechanism", Mechanism), ("key", _H), ("data", _B)), ()),
    "sign_once": ((("session", _H), ("mechanism", Mechanism), ("key", _H), ("data", _B)), ()),
    "verify_once": ((("session", _H), ("mechanism", Mechanism), ("key", _H), ("data", _B),
                     ("signature", _B)), ()),
    "digest_once": ((("session", _H), ("mechanism", Mechanism), ("data", _B)), ()),
    # cluster membership
    "cluster_status": ((), ()),
    "join_challenge": ((), ()),
    "join_cluster": ((("session", _H), ("certificate", _B), ("address", str), ("signature", _B)), ()),
    "remove_member": ((("session", _H), ("address", str)), ()),
    "admit_member": ((("session", _H), ("certificate", _B)), ()),
    "cluster_csr": ((), ()),
    "initialize_cluster": ((("session", _H), ("certificate", str), ("trust_anchor", str)), ()),
}


# Calls that change the replicated state: each carries a request key so that a retry is done once.
WRITE_CALLS = frozenset({
    "activate", "create_user", "delete_user", "change_password", "create_object", "copy_object", "destroy_object",
    "set_attribute_value", "share", "generate_key", "generate_key_pair", "unwrap_key", "derive_key",
})


def _struct(name: str) -> type[msgspec.Struct]:
    positional, keyword = CALLS[name]
    fields = [(n, t) for n, t in positional] + [(n, t, d) for n, t, d in keyword]
    return msgspec.defstruct(name, fields, tag=name, array_like=True, frozen=True)


CALL_TYPES: dict[str, type[msgspec.Struct]] = {name: _struct(name) for name in CALLS}
Call = Union[tuple(CALL_TYPES.values())]  # type: ignore[valid-type]


class Request(msgspec.Struct, array_like=True, tag="request", omit_defaults=True):
    """One call with the id its response will carry (an unsigned 64-bit integer chosen by the client).

    Attributes:
        after: the highest log index the client has seen; the node answers once it has applied it
            (read-your-writes), or with the retryable ``NodeBehind`` error after a bounded wait.
        key: the request key of a write (up to 32 bytes): a write sent again with the same key, to any node,
            answers with the first attempt's result instead of being done twice.
    """

    id: int
    call: Call  # type: ignore[valid-type]
    after: int = 0
    key: bytes = b""


class Response(msgspec.Struct, array_like=True, tag="response"):
    """The answer to the request with the same id: ``ckr`` 0 and a value, or a ``CKR_*`` and a message;
    ``index`` is the log index a write committed at (0 for calls that wrote nothing)."""

    id: int
    ckr: int
    value: Any = None
    message: str = ""
    index: int = 0


ClientMessage = Union[Hello, Request]
ServerMessage = Union[HelloReply, Response]


def call_arguments(call: msgspec.Struct) -> tuple[str, list[Any], dict[str, Any]]:
    """The method name, positional and keyword arguments a call struct stands for."""
    name = type(call).__struct_config__.tag
    positional, keyword = CALLS[name]
    return name, [getattr(call, n) for n, _ in positional], {n: getattr(call, n) for n, _, _ in keyword}
