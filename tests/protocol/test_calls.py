"""The call catalogue: one record per call the node serves, a handler for every record, and no call-name set
anywhere else in the source."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import msgspec
import pytest

from strongroom.node import Application
from strongroom.pkcs11.functions import HANDLERS
from strongroom.pkcs11.rpc_calls import BY_FUNCTION, RPC_CALLS
from strongroom.protocol import CALL_TYPES, Request, call_arguments
from strongroom.protocol.calls import BY_PKCS11, CALL_SPECS, CATALOGUE, CallSpec

SRC = Path(__file__).resolve().parents[2] / "src" / "strongroom"


def test_every_record_is_one_call_with_a_handler_of_its_arguments():
    assert len({spec.name for spec in CATALOGUE}) == len(CATALOGUE) == len(CALL_TYPES)
    for spec in CATALOGUE:
        method = getattr(Application, spec.name, None)
        assert callable(method), f"{spec.name} has no handler"
        signature = inspect.signature(method)
        # the server calls method(*positional, **keywords): the handler takes exactly those
        signature.bind(None, *[None] * len(spec.args), **{name: default for name, _, default in spec.kwargs})
        with pytest.raises(TypeError):
            signature.bind(None, *[None] * (len(spec.args) + len(spec.kwargs) + 1))


def test_every_served_call_has_a_record():
    """The node serves an Application method through the wire only if the catalogue has it: a request naming
    anything else does not decode, while the same request naming a catalogue call does."""
    decoder = msgspec.msgpack.Decoder(Request)
    assert call_arguments(decoder.decode(msgspec.msgpack.encode(["request", 1, ["hsm_info"]])).call)[0] == "hsm_info"
    for name in ("connect", "_session", "call"):
        with pytest.raises(msgspec.ValidationError, match=r"\$\[2\]"):
            decoder.decode(msgspec.msgpack.encode(["request", 1, [name, 1]]))


@pytest.mark.parametrize("name", sorted(CALL_SPECS))
def test_a_call_round_trips_through_its_wire_struct(name):
    spec = CALL_SPECS[name]
    samples = {int: 7, bytes: b"\x01", str: "x", bool: True}
    args = [samples.get(kind) if kind in samples else _sample(kind) for _, kind in spec.args]
    request = Request(9, CALL_TYPES[name](*args))
    decoded = msgspec.msgpack.Decoder(Request).decode(msgspec.msgpack.encode(request))
    got_name, got_args, got_kwargs = call_arguments(decoded.call)
    assert (got_name, got_args) == (name, args)
    assert got_kwargs == {n: default for n, _, default in spec.kwargs}


def _sample(kind):
    from strongroom.mechanism_params import Mechanism

    if kind is Mechanism:
        return Mechanism(0x1082)
    if getattr(kind, "__origin__", None) is dict or kind == dict[int, object]:
        return {3: "label"}
    if getattr(kind, "__origin__", None) is list:
        return [3]
    return None  # an optional string


def test_records_state_the_rules_the_layers_rely_on():
    writes = {s.name for s in CATALOGUE if s.write}
    assert writes == {"activate", "create_user", "delete_user", "change_password", "create_object", "copy_object",
                      "destroy_object", "set_attribute_value", "share", "generate_key", "generate_key_pair",
                      "unwrap_key", "derive_key", "unlock_user", "owner_unlock"}
    assert all(CALL_SPECS[w].blocking for w in writes)  # a write waits for a commit: never on the event loop
    assert {s.name for s in CATALOGUE if s.starts} == {f"{k}_init" for k in
                                                       ("encrypt", "decrypt", "sign", "verify", "digest",
                                                        "find_objects")}
    assert {s.name for s in CATALOGUE if s.keyed_step} == {
        f"{k}{suffix}" for k in ("encrypt", "decrypt", "sign", "verify") for suffix in ("", "_final")}
    assert {s.name for s in CATALOGUE if s.any_time} == {"hsm_info", "mechanism_list", "cluster_status"}
    assert {s.name for s in CATALOGUE if s.makes_objects} <= writes
    assert not any(s.once and not s.operation for s in CATALOGUE)
    assert {s.name for s in CATALOGUE if s.changes_login} == {"login", "logout", "close_session",
                                                              "close_all_sessions"}
    assert {s.name for s in CATALOGUE if s.changes_object} == {"destroy_object", "set_attribute_value"}


def test_every_record_states_whether_it_is_served_before_login():
    """``before_login`` has no default: a record that does not state it does not load, and every record in the
    catalogue's source names it (a multi-part operation's init through ``_operation``)."""
    with pytest.raises(TypeError):
        CallSpec("new_call")  # type: ignore[call-arg]
    source = ast.parse((SRC / "protocol" / "calls.py").read_text())
    calls = [node for node in ast.walk(source) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
             and node.func.id in ("CallSpec", "_operation")]
    assert calls and all({"before_login", "init_before_login"} & {k.arg for k in call.keywords} for call in calls)


def test_before_login_only_public_information_sessions_login_and_public_objects():
    """PKCS#11 3.0 §5.6's public session: node information, session control and login, digests, random
    numbers, and public objects (the handlers refuse token objects and keys without a login). Nothing about
    users (``list_users``, ``key_info``'s owner) or keys."""
    assert {s.name for s in CATALOGUE if s.before_login} == {
        "hsm_info", "mechanism_list", "cluster_status", "cluster_csr",
        "open_session", "close_session", "close_all_sessions", "session_info", "login", "logout",
        "session_cancel", "create_object", "copy_object", "destroy_object", "get_attribute_value",
        "set_attribute_value", "find_objects_init", "find_objects", "find_objects_final", "find",
        "generate_random", "digest_init", "digest", "digest_update", "digest_final", "digest_once",
        "join_challenge", "join_cluster",
        # the owner's signed unlock of a locked admin: the signature is the authentication
        "owner_unlock",
        # the PIN flags of C_GetTokenInfo: a user's count of wrong passwords, as a failed login already tells
        "pin_state",
        # an operation's continuation names no key: without a login no operation is active to continue
        *(f"{kind}{step}" for kind in ("encrypt", "decrypt", "sign", "verify") for step in ("", "_update", "_final"))}
    keyed = ("encrypt", "decrypt", "sign", "verify")
    assert not any(s.before_login for s in CATALOGUE if s.operation in keyed and (s.starts or s.once))
    assert all(s.before_login for s in CATALOGUE if s.any_time or s.session_control)


def test_every_agent_handler_is_a_p11kit_call_and_names_a_real_function():
    assert {call.call_id for call in RPC_CALLS} == set(HANDLERS)
    for call_id, (record, _) in HANDLERS.items():
        assert BY_FUNCTION[record.function].call_id == call_id
    for function, spec in BY_PKCS11.items():
        assert function.startswith("C_") and spec.function == function


def _call_name_literals(path: Path) -> list[tuple[int, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        elements = (node.elts if isinstance(node, (ast.Set, ast.Tuple, ast.List))
                    else node.keys if isinstance(node, ast.Dict) else None)
        if not elements or len(elements) < 2:
            continue
        names = [e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        operations = {spec.operation for spec in CATALOGUE}  # the kinds of operation are another vocabulary
        if len(names) == len(elements) and all(n in CALL_SPECS for n in names) \
                and not all(n in operations for n in names):
            found.append((node.lineno, names))
    return found


def test_no_call_name_set_outside_the_catalogue():
    """A set, tuple, list or dict of two or more call names anywhere in src/ but the catalogue is a second copy
    of a fact the catalogue holds."""
    catalogue = SRC / "protocol" / "calls.py"
    offenders = {str(p.relative_to(SRC)): hits for p in sorted(SRC.rglob("*.py")) if p != catalogue
                 for hits in [_call_name_literals(p)] if hits}
    assert offenders == {}


def test_exactly_the_catalogue_writes_take_a_request_context():
    """The node passes ``request`` to the calls the catalogue marks ``write`` and to no other."""
    takes = {spec.name for spec in CATALOGUE
             if "request" in inspect.signature(getattr(Application, spec.name)).parameters}
    assert takes == {spec.name for spec in CATALOGUE if spec.write}
