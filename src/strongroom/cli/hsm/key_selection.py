"""Keys as the service's CLI shows and selects them: kebab-case attribute names, values in each attribute's kind,
``--filter attr.<name>=<value>`` / ``key-reference=0x…`` selections."""

from __future__ import annotations

from typing import Any

from ...errors import StrongroomError
from ...vocab import CKA, CKK, CKO
from .context import CliError

CLASSES = {"secret-key": CKO.SECRET_KEY, "private-key": CKO.PRIVATE_KEY, "public-key": CKO.PUBLIC_KEY,
           "data": CKO.DATA, "certificate": CKO.CERTIFICATE}
KEY_TYPES = {"aes": CKK.AES, "rsa": CKK.RSA, "ec": CKK.EC, "generic-secret": CKK.GENERIC_SECRET,
             "ec-edwards": CKK.EC_EDWARDS}
_ATTRIBUTES = ("class", "key-type", "label", "id", "token", "private", "sensitive", "extractable", "encrypt",
               "decrypt", "sign", "verify", "wrap", "unwrap", "derive", "modifiable", "destroyable", "local",
               "never-extractable", "always-sensitive", "trusted", "wrap-with-trusted", "check-value")


def _cka(name: str) -> CKA:
    return CKA[name.upper().replace("-", "_")]


def reference(handle: int) -> str:
    return f"0x{handle:016x}"


def _value(cka: CKA, value: Any) -> Any:
    if cka is CKA.CLASS:
        return next((n for n, c in CLASSES.items() if c == value), str(value))
    if cka is CKA.KEY_TYPE:
        return next((n for n, k in KEY_TYPES.items() if k == value), str(value))
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


_SIZES = {"key-length-bytes": CKA.VALUE_LEN, "modulus-size-bits": CKA.MODULUS_BITS, "modulus": CKA.MODULUS,
          "public-exponent": CKA.PUBLIC_EXPONENT, "ec-point": CKA.EC_POINT, "ec-params": CKA.EC_PARAMS}


def key_shape(key: Any, verbose: bool = True) -> dict[str, Any]:
    """``{"key-reference", "attributes"}`` with the attributes the object has (kebab-case names, as the
    service's CLI prints them); only the label unless ``verbose``."""
    names = [*_ATTRIBUTES, *_SIZES] if verbose else ["label"]
    wanted = [_SIZES.get(n) or _cka(n) for n in names]
    pairs = key.session.call("get_attribute_value", key.handle, [int(c) for c in wanted])
    attributes = {name: _value(cka, value)
                  for name, cka, (rv, value) in zip(names, wanted, pairs, strict=False) if rv == 0}
    return {"key-reference": reference(key.handle), "attributes": attributes}


def attribute_named(name: str) -> CKA:
    try:
        return _SIZES.get(name) or _cka(name.strip())
    except KeyError:
        raise CliError(f"unknown attribute {name[:40]!r}; names are like sign, decrypt, label, id") from None


def parse(cka: CKA, value: str) -> Any:
    """A value in its attribute's kind: true/false, a number, hex bytes (``0x`` optional) or text."""
    from ...attribute_kinds import KINDS, Kind

    kind = KINDS.get(cka)
    if kind is Kind.BOOL:
        if value.lower() not in ("true", "false"):
            raise CliError(f"{cka.name.lower()} is true or false, not {value[:40]!r}")
        return value.lower() == "true"
    if kind is Kind.ULONG:
        if not value.isdigit():
            raise CliError(f"{cka.name.lower()} is a number, not {value[:40]!r}")
        return int(value)
    if kind is Kind.BYTES:
        try:
            return bytes.fromhex(value[2:] if value.lower().startswith("0x") else value)
        except ValueError:
            raise CliError(f"{cka.name.lower()} is hex bytes such as 0x0102, not {value[:40]!r}") from None
    return value


def attributes_of(pairs: tuple[str, ...]) -> dict[Any, Any]:
    """``--attributes name=value`` in each attribute's kind (booleans, numbers, hex bytes, text)."""
    out: dict[Any, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise CliError(f"write attributes as name=value, not {pair[:40]!r}")
        cka = attribute_named(name)
        out[cka] = parse(cka, value)
    return out


def _filter(filters: tuple[str, ...]) -> dict[Any, Any]:
    """``--filter attr.label=x attr.class=private-key key-reference=0x…`` as a find template."""
    template: dict[Any, Any] = {}
    for item in filters:
        name, sep, value = item.partition("=")
        if not sep or not value:
            raise CliError(f"a filter is attr.<name>=<value> or key-reference=0x…, not {item!r:.60}")
        if name == "key-reference":
            template["__handle__"] = _handle(value)
            continue
        if not name.startswith("attr."):
            raise CliError(f"a filter is attr.<name>=<value> or key-reference=0x…, not {item!r:.60}")
        cka = attribute_named(name[5:])
        if cka is CKA.CLASS:
            if value not in CLASSES:
                raise CliError(f"attr.class is one of {', '.join(CLASSES)}")
            template[cka] = CLASSES[value]
        elif cka is CKA.KEY_TYPE:
            if value not in KEY_TYPES:
                raise CliError(f"attr.key-type is one of {', '.join(KEY_TYPES)}")
            template[cka] = KEY_TYPES[value]
        else:
            template[cka] = parse(cka, value)
    return template


def _handle(text: str) -> int:
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise CliError(f"a key reference is like 0x0000000000000012, not {text!r:.40}") from None


def matching(session: Any, filters: tuple[str, ...]) -> list[Any]:
    template = _filter(filters)
    handle = template.pop("__handle__", None)
    if handle is not None:
        key = session.key(handle)
        key.get(CKA.CLASS)  # raises for a handle that names nothing this user sees
        return [key] if not template or all(key.get(c).get(c) == v for c, v in template.items()) else []
    found: list[Any] = session.find(template)
    return found


def one(session: Any, filters: tuple[str, ...]) -> Any:
    keys = matching(session, filters)
    if not keys:
        raise CliError("the filter matches 0 keys; check it with key list --filter …")
    if len(keys) > 1:
        raise CliError(f"the filter matches {len(keys)} keys; it must match exactly one (add attr.label=… or "
                       "key-reference=0x…)")
    return keys[0]



def check_share_targets(session: Any, usernames: tuple[str, ...], owner: str | None, *,
                        session_key: bool = False) -> None:
    """Before a key is made: ``--share-crypto-users`` must name existing crypto users other than the login,
    and the key must be a token key (session keys are never shared).

    Raises:
        CliError: what to fix, before anything was created.
    """
    if not usernames:
        return
    if session_key:
        raise CliError("session keys are not shared: drop --session or --share-crypto-users")
    roles = {u["username"]: u["role"] for u in session.list_users()}
    for name in usernames:
        if roles.get(name) != "crypto-user":
            raise CliError(f"--share-crypto-users: {name[:40]!r} is not a crypto user (user list shows them)")
        if name == owner:
            raise CliError(f"--share-crypto-users: {name[:40]} owns the new key already")


def share_new_keys(shared: list[Any], made: list[Any], usernames: tuple[str, ...]) -> None:
    """Share the ``shared`` keys of a command with each user; if one share fails, destroy every key in ``made``
    (the command keeps nothing) and re-raise."""
    try:
        for key in shared:
            for name in usernames:
                key.share(name)
    except BaseException:
        for key in made:
            try:
                key.destroy()
            except StrongroomError:
                pass  # the first failure is the one to report
        raise
