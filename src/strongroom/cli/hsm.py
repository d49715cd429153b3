"""``strongroom-cli``: the HSM command line for users, keys and crypto, with the command names and the JSON output
of the CLI of the service Strongroom matches, so that scripts carry over.

Every command prints ``{"error_code": 0, "data": …}`` or, failing, ``{"error_code": 1, "data": "<message>"}`` and
exits 1; ``--output text`` prints tables for people. The cluster comes from ``--cluster PATH`` (the
``cluster.json`` that ``strongroom up`` writes) or ``STRONGROOM_CLUSTER``; credentials from ``STRONGROOM_ROLE``
(``admin`` or ``crypto-user``) and ``STRONGROOM_PIN`` (``username:password``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ..errors import StrongroomError, exit_code
from ..vocab import CKA, CKK, CKM, CKO

_CLASSES = {"secret-key": CKO.SECRET_KEY, "private-key": CKO.PRIVATE_KEY, "public-key": CKO.PUBLIC_KEY,
            "data": CKO.DATA, "certificate": CKO.CERTIFICATE}
_KEY_TYPES = {"aes": CKK.AES, "rsa": CKK.RSA, "ec": CKK.EC, "generic-secret": CKK.GENERIC_SECRET,
              "ec-edwards": CKK.EC_EDWARDS}
_CURVES = {"prime256v1": "06082a8648ce3d030107", "secp256r1": "06082a8648ce3d030107",
           "secp224r1": "06052b81040021", "secp384r1": "06052b81040022", "secp521r1": "06052b81040023",
           "ed25519": "06032b6570"}
_HASHES = {"sha1": (CKM.SHA_1, CKM.SHA1_RSA_PKCS, CKM.SHA1_RSA_PKCS_PSS, CKM.ECDSA_SHA1),
           "sha224": (CKM.SHA224, CKM.SHA224_RSA_PKCS, CKM.SHA224_RSA_PKCS_PSS, CKM.ECDSA_SHA224),
           "sha256": (CKM.SHA256, CKM.SHA256_RSA_PKCS, CKM.SHA256_RSA_PKCS_PSS, CKM.ECDSA_SHA256),
           "sha384": (CKM.SHA384, CKM.SHA384_RSA_PKCS, CKM.SHA384_RSA_PKCS_PSS, CKM.ECDSA_SHA384),
           "sha512": (CKM.SHA512, CKM.SHA512_RSA_PKCS, CKM.SHA512_RSA_PKCS_PSS, CKM.ECDSA_SHA512)}
_HASH_BYTES = {"sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64}
_ATTRIBUTES = ("class", "key-type", "label", "id", "token", "private", "sensitive", "extractable", "encrypt",
               "decrypt", "sign", "verify", "wrap", "unwrap", "derive", "modifiable", "destroyable", "local",
               "never-extractable", "always-sensitive", "trusted", "wrap-with-trusted", "check-value")


class CliError(Exception):
    """A mistake to report with what to fix (``error_code`` 1)."""


def _cka(name: str) -> CKA:
    return CKA[name.upper().replace("-", "_")]


class Context:
    """The command's cluster connection and login, made when a command first needs them."""

    def __init__(self, cluster_path: str | None, output: str) -> None:
        self.cluster_path = cluster_path
        self.output = output
        self._cluster: Any = None
        self._session: Any = None
        self.role: str | None = None
        self.username: str | None = None
        self.password: str | None = None
        self.interactive = False  # the shell keeps the connection and the login between commands

    def login(self, username: str, role: str, password: str) -> None:
        if self._session is not None:
            raise CliError(f"already logged in as {self.username}; log out first")
        self._session = self.cluster().login(username, password, role=role)
        self.username, self.role, self.password = username, role, password

    def logout(self) -> None:
        if self._session is None:
            raise CliError("not logged in")
        self._session.close()
        self._session = self.username = self.role = self.password = None

    def cluster(self) -> Any:
        import strongroom.client as sdk

        if self._cluster is None:
            if not self.cluster_path:
                raise CliError("no cluster: give --cluster PATH (the cluster.json of strongroom up) or set "
                               "STRONGROOM_CLUSTER")
            self._cluster = sdk.connect(self.cluster_path)
        return self._cluster

    def session(self, role: str | None = None) -> Any:
        """A session logged in with ``STRONGROOM_ROLE`` and ``STRONGROOM_PIN``; ``role`` demands one."""
        if self._session is None:
            env_role = os.environ.get("STRONGROOM_ROLE", "crypto-user")
            pin = os.environ.get("STRONGROOM_PIN")
            if not pin or ":" not in pin:
                raise CliError("log in (login --username U --role R) or set STRONGROOM_PIN to "
                               "username:password (and STRONGROOM_ROLE to admin or crypto-user)")
            if env_role not in ("admin", "crypto-user"):
                raise CliError(f"STRONGROOM_ROLE must be admin or crypto-user, not {env_role!r:.40}")
            username, _, password = pin.partition(":")
            self.login(username, env_role, password)
        if role is not None and self.role != role:
            raise CliError(f"this command needs {'an' if role[0] in 'aeiou' else 'a'} {role} login "
                           f"(STRONGROOM_ROLE={role})")
        return self._session

    def close(self) -> None:
        if self._session is not None:
            try:
                self._session.close()
            except StrongroomError:
                pass
        if self._cluster is not None:
            self._cluster.close()


def _emit(ctx: Context, data: Any) -> None:
    if ctx.output == "json":
        click.echo(json.dumps({"error_code": 0, "data": data}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    rows = data.get("matched_keys") or data.get("users") if isinstance(data, dict) else None
    if rows:
        table = Table()
        columns = sorted({k for row in rows for k in _flat(row)})
        for column in columns:
            table.add_column(column)
        for row in rows:
            flat = _flat(row)
            table.add_row(*(str(flat.get(c, "")) for c in columns))
        console.print(table)
    else:
        for key, value in _flat(data if isinstance(data, dict) else {"result": data}).items():
            console.print(f"[bold]{key}[/bold]: {value}")


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _fail(ctx_output: str, message: str, error: BaseException) -> None:
    if ctx_output == "json":
        click.echo(json.dumps({"error_code": 1, "data": message}, indent=2))
    else:
        click.echo(f"Error: {message}", err=True)
    sys.exit(exit_code(error))


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command body with the context, print its data in the envelope, turn errors into error_code 1."""
    import functools

    @functools.wraps(fn)
    @click.pass_obj
    def run(ctx: Context, *args: Any, **kwargs: Any) -> None:
        try:
            data = fn(ctx, *args, **kwargs)
        except CliError as exc:
            _fail(ctx.output, str(exc), exc)
        except StrongroomError as exc:
            _fail(ctx.output, f"{exc.message} ({exc.ckr_name})", exc)
        except (OSError, ValueError, OverflowError, KeyError, TypeError) as exc:
            _fail(ctx.output, f"{type(exc).__name__}: {exc}", exc)
        finally:
            if not ctx.interactive:
                ctx.close()
        _emit(ctx, data)

    return run


@click.group()
@click.option("--cluster", "cluster_path", envvar="STRONGROOM_CLUSTER", default=None,
              help="The cluster's configuration (cluster.json of strongroom up) [env STRONGROOM_CLUSTER].")
@click.option("--output", type=click.Choice(["json", "text"]), default=None, help="[default: json]")
@click.pass_context
def main(click_ctx: click.Context, cluster_path: str | None, output: str | None) -> None:
    """Strongroom HSM command line (users, keys, crypto). Credentials: STRONGROOM_ROLE (admin or crypto-user)
    and STRONGROOM_PIN (username:password)."""
    if isinstance(click_ctx.obj, Context) and click_ctx.obj.interactive:
        if output is not None:  # a command of the interactive shell: its lasting context
            click_ctx.obj.output = output
        return
    click_ctx.obj = Context(cluster_path, output or "json")


@main.command("login")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["admin", "crypto-user"]), required=True)
@click.option("--password", prompt=True, hide_input=True)
@command
def login_command(ctx: Context, username: str, role: str, password: str) -> dict[str, Any]:
    """Log in (in the interactive shell, the login lasts until logout)."""
    ctx.login(username, role, password)
    return {"username": username, "role": role}


@main.command("logout")
@command
def logout_command(ctx: Context) -> str:
    """End the login."""
    ctx.logout()
    return "Logout successful"


@main.command("interactive")
@click.pass_obj
def interactive(ctx: Context) -> None:
    """A shell: every command of this CLI, with history, tab completion and help; the login lasts until logout."""
    from .shell import Shell

    ctx.interactive = True
    try:
        Shell(main, ctx).cmdloop()
    finally:
        ctx.interactive = False
        ctx.close()


# ------------------------------------------------------------------ keys as the service's CLI shows them
def _reference(handle: int) -> str:
    return f"0x{handle:016x}"


def _value(cka: CKA, value: Any) -> Any:
    if cka is CKA.CLASS:
        return next((n for n, c in _CLASSES.items() if c == value), str(value))
    if cka is CKA.KEY_TYPE:
        return next((n for n, k in _KEY_TYPES.items() if k == value), str(value))
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


_SIZES = {"key-length-bytes": CKA.VALUE_LEN, "modulus-size-bits": CKA.MODULUS_BITS, "modulus": CKA.MODULUS,
          "public-exponent": CKA.PUBLIC_EXPONENT, "ec-point": CKA.EC_POINT, "ec-params": CKA.EC_PARAMS}


def _key_shape(key: Any, verbose: bool = True) -> dict[str, Any]:
    """``{"key-reference", "attributes"}`` with the attributes the object has (kebab-case names, as the
    service's CLI prints them); only the label unless ``verbose``."""
    names = [*_ATTRIBUTES, *_SIZES] if verbose else ["label"]
    wanted = [_SIZES.get(n) or _cka(n) for n in names]
    pairs = key.session.call("get_attribute_value", key.handle, [int(c) for c in wanted])
    attributes = {name: _value(cka, value) for name, cka, (rv, value) in zip(names, wanted, pairs) if rv == 0}
    return {"key-reference": _reference(key.handle), "attributes": attributes}


def _attribute(name: str) -> CKA:
    try:
        return _SIZES.get(name) or _cka(name.strip())
    except KeyError:
        raise CliError(f"unknown attribute {name[:40]!r}; names are like sign, decrypt, label, id") from None


def _parse(cka: CKA, value: str) -> Any:
    """A value in its attribute's kind: true/false, a number, hex bytes (``0x`` optional) or text."""
    from ..objects.attributes import KINDS, Kind

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


def _attributes(pairs: tuple[str, ...]) -> dict[Any, Any]:
    """``--attributes name=value`` in each attribute's kind (booleans, numbers, hex bytes, text)."""
    out: dict[Any, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise CliError(f"write attributes as name=value, not {pair[:40]!r}")
        cka = _attribute(name)
        out[cka] = _parse(cka, value)
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
        cka = _attribute(name[5:])
        if cka is CKA.CLASS:
            if value not in _CLASSES:
                raise CliError(f"attr.class is one of {', '.join(_CLASSES)}")
            template[cka] = _CLASSES[value]
        elif cka is CKA.KEY_TYPE:
            if value not in _KEY_TYPES:
                raise CliError(f"attr.key-type is one of {', '.join(_KEY_TYPES)}")
            template[cka] = _KEY_TYPES[value]
        else:
            template[cka] = _parse(cka, value)
    return template


def _handle(text: str) -> int:
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise CliError(f"a key reference is like 0x0000000000000012, not {text!r:.40}") from None


def _matching(session: Any, filters: tuple[str, ...]) -> list[Any]:
    template = _filter(filters)
    handle = template.pop("__handle__", None)
    if handle is not None:
        key = session.key(handle)
        key.get(CKA.CLASS)  # raises for a handle that names nothing this user sees
        return [key] if not template or all(key.get(c).get(c) == v for c, v in template.items()) else []
    return session.find(template)


def _one(session: Any, filters: tuple[str, ...]) -> Any:
    keys = _matching(session, filters)
    if not keys:
        raise CliError("the filter matches 0 keys; check it with key list --filter …")
    if len(keys) > 1:
        raise CliError(f"the filter matches {len(keys)} keys; it must match exactly one (add attr.label=… or "
                       "key-reference=0x…)")
    return keys[0]


# ------------------------------------------------------------------ cluster
@main.group()
def cluster() -> None:
    """The cluster: activation and its HSMs."""


@cluster.command("hsm-info")
@command
def cluster_hsm_info(ctx: Context) -> dict[str, Any]:
    """Each HSM's serial number, firmware and state (no login)."""
    import strongroom.client as sdk

    from ..client import ClientConfig

    if not ctx.cluster_path:
        raise CliError("no cluster: give --cluster PATH or set STRONGROOM_CLUSTER")
    config = ClientConfig.from_file(ctx.cluster_path)  # raises ArgumentsBad for a file that is not one
    hsms = []
    for endpoint in config.endpoints:
        try:
            with sdk.connect(dataclasses.replace(config, endpoints=(endpoint,), connect_timeout_s=5.0)) as one:
                info = one.hsm_info()
        except StrongroomError as exc:
            hsms.append({"endpoint": endpoint, "state": "unreachable", "message": exc.message})
            continue
        hsms.append({"endpoint": endpoint, "serial-number": info["serial"], "firmware-version":
                     info["firmware_version"], "state": info["state"], "fips-state": "2 [FIPS mode with single "
                     "factor authentication]" if info["state"] == "operational" else "error"})
    return {"hsms": hsms}


@cluster.command("activate")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The new admin password (8-32 characters).")
@command
def cluster_activate(ctx: Context, password: str) -> str:
    """Change the initial admin password (STRONGROOM_PIN=admin:<initial password>, role admin)."""
    ctx.session("admin").activate(password)
    return "Cluster activation successful"


# ------------------------------------------------------------------ users
@main.group()
def user() -> None:
    """Users of the cluster."""


def _check_role(ctx: Context, username: str, role: str) -> None:
    users = {u["username"]: u["role"] for u in ctx.cluster().list_users()}
    if username not in users:
        raise CliError(f"there is no user {username[:40]!r}; user list shows them")
    actual = "admin" if users[username] in ("admin", "unactivated-admin") else users[username]
    if actual != role:
        raise CliError(f"{username[:40]} has the role {actual}, not {role}")


@user.command("list")
@command
def user_list(ctx: Context) -> dict[str, Any]:
    """Every user with role and lock state (no login)."""
    return {"users": [{"username": u["username"], "role": u["role"], "locked": str(u["locked"]).lower(),
                       "mfa": [], "quorum": [], "cluster-coverage": "full"} for u in ctx.cluster().list_users()]}


@user.command("create")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["admin", "crypto-user"]), required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@command
def user_create(ctx: Context, username: str, role: str, password: str) -> dict[str, Any]:
    """Create a user (admin login)."""
    ctx.session("admin").create_user(username, password, role)
    return {"username": username, "role": role}


@user.command("delete")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["admin", "crypto-user"]), required=True)
@command
def user_delete(ctx: Context, username: str, role: str) -> dict[str, Any]:
    """Delete a user (admin login)."""
    session = ctx.session("admin")
    _check_role(ctx, username, role)
    session.delete_user(username)
    return {"username": username}


@user.command("change-password")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["admin", "crypto-user"]), required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@command
def user_change_password(ctx: Context, username: str, role: str, password: str) -> dict[str, Any]:
    """Set a user's password (an admin for any user; a user for itself)."""
    session = ctx.session()
    _check_role(ctx, username, role)
    old = ctx.password if username == ctx.username else None
    session.change_password(username, password, old)
    return {"username": username, "role": role}


# ------------------------------------------------------------------ keys
@main.group()
def key() -> None:
    """Keys: generate, list, delete."""


@key.group("generate-symmetric")
def generate_symmetric() -> None:
    """Secret keys."""


def _generate_secret(ctx: Context, mechanism: CKM, label: str, length: int, attributes: tuple[str, ...],
                     session_key: bool) -> dict[str, Any]:
    session = ctx.session("crypto-user")
    made = session.generate_key(mechanism, {CKA.LABEL: label, CKA.VALUE_LEN: length, **_attributes(attributes)},
                                token=not session_key)
    return {"key": _key_shape(made)}


@generate_symmetric.command("aes")
@click.option("--label", required=True)
@click.option("--key-length-bytes", type=click.Choice(["16", "24", "32"]), required=True)
@click.option("--attributes", multiple=True, help="name=value, e.g. encrypt=true (repeat).")
@click.option("--session", "session_key", is_flag=True, help="A session key (gone when the command ends).")
@command
def generate_aes(ctx: Context, label: str, key_length_bytes: str, attributes: tuple[str, ...],
                 session_key: bool) -> dict[str, Any]:
    """An AES key (crypto-user login)."""
    return _generate_secret(ctx, CKM.AES_KEY_GEN, label, int(key_length_bytes), attributes, session_key)


@generate_symmetric.command("generic-secret")
@click.option("--label", required=True)
@click.option("--key-length-bytes", type=click.IntRange(1, 800), required=True)
@click.option("--attributes", multiple=True, help="name=value, e.g. sign=true (repeat).")
@click.option("--session", "session_key", is_flag=True)
@command
def generate_generic(ctx: Context, label: str, key_length_bytes: int, attributes: tuple[str, ...],
                     session_key: bool) -> dict[str, Any]:
    """A generic secret (HMAC) key (crypto-user login)."""
    return _generate_secret(ctx, CKM.GENERIC_SECRET_KEY_GEN, label, key_length_bytes, attributes, session_key)


@key.group("generate-asymmetric-pair")
def generate_pair() -> None:
    """Key pairs."""


def _pair(ctx: Context, mechanism: CKM, public: dict[Any, Any], private: dict[Any, Any], public_label: str,
          private_label: str, public_attributes: tuple[str, ...], private_attributes: tuple[str, ...],
          session_key: bool) -> dict[str, Any]:
    session = ctx.session("crypto-user")
    pub, priv = session.generate_key_pair(
        mechanism, {**public, CKA.LABEL: public_label, **_attributes(public_attributes)},
        {**private, CKA.LABEL: private_label, **_attributes(private_attributes)}, token=not session_key)
    return {"public_key": _key_shape(pub), "private_key": _key_shape(priv)}


_PAIR_OPTIONS = [
    click.option("--public-label", required=True), click.option("--private-label", required=True),
    click.option("--public-attributes", multiple=True), click.option("--private-attributes", multiple=True),
    click.option("--session", "session_key", is_flag=True),
]


def _pair_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_PAIR_OPTIONS):
        fn = option(fn)
    return fn


@generate_pair.command("rsa")
@click.option("--modulus-size-bits", type=click.Choice(["2048", "3072", "4096"]), required=True)
@click.option("--public-exponent", default="65537", show_default=True)
@_pair_options
@command
def generate_rsa(ctx: Context, modulus_size_bits: str, public_exponent: str, public_label: str,
                 private_label: str, public_attributes: tuple[str, ...], private_attributes: tuple[str, ...],
                 session_key: bool) -> dict[str, Any]:
    """An RSA key pair (crypto-user login)."""
    if not public_exponent.isdigit() or int(public_exponent) < 3:
        raise CliError("--public-exponent is an odd number such as 65537")
    exponent = int(public_exponent)
    e_bytes = exponent.to_bytes(max(1, (exponent.bit_length() + 7) // 8), "big")
    return _pair(ctx, CKM.RSA_PKCS_KEY_PAIR_GEN, {CKA.MODULUS_BITS: int(modulus_size_bits),
                                                  CKA.PUBLIC_EXPONENT: e_bytes}, {}, public_label, private_label,
                 public_attributes, private_attributes, session_key)


@generate_pair.command("ec")
@click.option("--curve", type=click.Choice(sorted(_CURVES)), required=True)
@_pair_options
@command
def generate_ec(ctx: Context, curve: str, public_label: str, private_label: str, public_attributes: tuple[str, ...],
                private_attributes: tuple[str, ...], session_key: bool) -> dict[str, Any]:
    """An EC key pair, or an Ed25519 pair with --curve ed25519 (crypto-user login)."""
    mechanism = CKM.EC_EDWARDS_KEY_PAIR_GEN if curve == "ed25519" else CKM.EC_KEY_PAIR_GEN
    return _pair(ctx, mechanism, {CKA.EC_PARAMS: bytes.fromhex(_CURVES[curve])}, {}, public_label,
                 private_label, public_attributes, private_attributes, session_key)


@key.command("list")
@click.option("--filter", "filters", multiple=True, help="attr.<name>=<value> or key-reference=0x… (repeat).")
@click.option("--max-items", type=click.IntRange(1, None), default=10, show_default=True)
@click.option("--starting-token", default="0")
@click.option("-v", "--verbose", is_flag=True, help="All attributes, not only the label.")
@command
def key_list(ctx: Context, filters: tuple[str, ...], max_items: int, starting_token: str,
             verbose: bool) -> dict[str, Any]:
    """Keys the login sees, matching the filters."""
    keys = _matching(ctx.session(), filters)
    if not starting_token.isdigit():
        raise CliError("--starting-token is the next_token of an earlier answer")
    start = int(starting_token)
    page = keys[start:start + max_items]
    out: dict[str, Any] = {"matched_keys": [_key_shape(k, verbose) for k in page], "total_key_count": len(keys),
                           "returned_key_count": len(page)}
    if start + max_items < len(keys):
        out["next_token"] = str(start + max_items)
    return out


@key.command("delete")
@click.option("--filter", "filters", multiple=True, required=True)
@command
def key_delete(ctx: Context, filters: tuple[str, ...]) -> dict[str, Any]:
    """Delete the one key the filters match (its owner)."""
    _one(ctx.session("crypto-user"), filters).destroy()
    return {"message": "Key deleted successfully"}


# ------------------------------------------------------------------ crypto
@main.group()
def crypto() -> None:
    """Sign and verify with keys in the cluster."""


def _data(data: str | None, data_path: str | None, name: str = "data") -> bytes:
    if (data is None) == (data_path is None):
        raise CliError(f"give exactly one of --{name} (base64) and --{name}-path")
    if data_path is not None:
        return Path(data_path).read_bytes()
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        raise CliError(f"--{name} is base64") from None


def _mechanism(kind: str, hash_function: str | None, data_type: str, data: bytes) -> Any:
    from ..crypto.params import Mechanism, PssParams
    from ..vocab import CKG

    if kind == "ed25519":
        return Mechanism(CKM.EDDSA)
    if hash_function is None:
        raise CliError("--hash-function is needed (sha1, sha224, sha256, sha384, sha512)")
    digest, rsa_pkcs, rsa_pss, ecdsa = _HASHES[hash_function]
    if data_type == "digest" and len(data) != _HASH_BYTES[hash_function]:
        raise CliError(f"a {hash_function} digest is {_HASH_BYTES[hash_function]} bytes, not {len(data)}")
    mgf = {CKM.SHA_1: CKG.MGF1_SHA1, CKM.SHA224: CKG.MGF1_SHA224, CKM.SHA256: CKG.MGF1_SHA256,
           CKM.SHA384: CKG.MGF1_SHA384, CKM.SHA512: CKG.MGF1_SHA512}[digest]
    if kind == "ecdsa":
        return Mechanism(CKM.ECDSA) if data_type == "digest" else Mechanism(ecdsa)
    if kind == "rsa-pkcs-pss":
        params = PssParams(digest, mgf, _HASH_BYTES[hash_function])
        return Mechanism(CKM.RSA_PKCS_PSS if data_type == "digest" else rsa_pss, params)
    if data_type == "digest":
        raise CliError("rsa-pkcs signs raw data here (--data-type raw)")
    return Mechanism(rsa_pkcs)


_SIGN_KINDS = ["ecdsa", "ed25519", "rsa-pkcs", "rsa-pkcs-pss"]


@crypto.command("sign")
@click.argument("kind", type=click.Choice(_SIGN_KINDS))
@click.option("--key-filter", "filters", multiple=True, required=True)
@click.option("--hash-function", type=click.Choice(sorted(_HASHES)))
@click.option("--data", default=None, help="The data, base64.")
@click.option("--data-path", type=click.Path(dir_okay=False), default=None)
@click.option("--data-type", type=click.Choice(["raw", "digest"]), default="raw", show_default=True)
@click.option("--signature-path", type=click.Path(dir_okay=False), default=None,
              help="Write the signature (raw bytes) there too.")
@command
def crypto_sign(ctx: Context, kind: str, filters: tuple[str, ...], hash_function: str | None, data: str | None,
                data_path: str | None, data_type: str, signature_path: str | None) -> dict[str, Any]:
    """Sign with the private key the filter matches (crypto-user login). ECDSA signatures are r‖s."""
    message = _data(data, data_path)
    private = _one(ctx.session("crypto-user"), filters)
    signature = private.sign(message, _mechanism(kind, hash_function, data_type, message))
    if signature_path:
        Path(signature_path).write_bytes(signature)
    return {"key-reference": _reference(private.handle), "signature": base64.b64encode(signature).decode()}


@crypto.command("verify")
@click.argument("kind", type=click.Choice(_SIGN_KINDS))
@click.option("--key-filter", "filters", multiple=True, required=True)
@click.option("--hash-function", type=click.Choice(sorted(_HASHES)))
@click.option("--data", default=None)
@click.option("--data-path", type=click.Path(dir_okay=False), default=None)
@click.option("--data-type", type=click.Choice(["raw", "digest"]), default="raw", show_default=True)
@click.option("--signature", default=None, help="The signature, base64.")
@click.option("--signature-path", type=click.Path(dir_okay=False), default=None)
@command
def crypto_verify(ctx: Context, kind: str, filters: tuple[str, ...], hash_function: str | None, data: str | None,
                  data_path: str | None, data_type: str, signature: str | None,
                  signature_path: str | None) -> dict[str, Any]:
    """Verify with the public key the filter matches (crypto-user login)."""
    message = _data(data, data_path)
    sig = _data(signature, signature_path, "signature")
    public = _one(ctx.session("crypto-user"), filters)
    public.verify(message, sig, _mechanism(kind, hash_function, data_type, message))
    return {"message": "Signature verified successfully"}


@user.command("unlock")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["crypto-user", "admin"]), required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The user's new password (a reset unlocks the account).")
@command
def user_unlock(ctx: Context, username: str, role: str, password: str) -> dict[str, Any]:
    """Unlock a locked-out user by resetting its password (admin login)."""
    session = ctx.session("admin")
    _check_role(ctx, username, role)
    session.change_password(username, password)
    return {"username": username, "role": role, "locked": "false"}


# ------------------------------------------------------------------ sharing, attributes, files
@key.command("share")
@click.option("--filter", "filters", multiple=True, required=True)
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["crypto-user"]), default="crypto-user", show_default=True)
@command
def key_share(ctx: Context, filters: tuple[str, ...], username: str, role: str) -> dict[str, Any]:
    """Share a key with another crypto user (its owner)."""
    _one(ctx.session("crypto-user"), filters).share(username)
    return {"message": "Key shared successfully"}


@key.command("unshare")
@click.option("--filter", "filters", multiple=True, required=True)
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["crypto-user"]), default="crypto-user", show_default=True)
@command
def key_unshare(ctx: Context, filters: tuple[str, ...], username: str, role: str) -> dict[str, Any]:
    """Stop sharing a key with a crypto user (its owner)."""
    _one(ctx.session("crypto-user"), filters).unshare(username)
    return {"message": "Key unshared successfully"}


@key.command("set-attribute")
@click.option("--filter", "filters", multiple=True, required=True)
@click.option("--name", "attribute", required=True, help="e.g. label, id, sign, decrypt.")
@click.option("--value", required=True)
@command
def key_set_attribute(ctx: Context, filters: tuple[str, ...], attribute: str, value: str) -> dict[str, Any]:
    """Change one attribute of a key (its owner; admins may set only trusted)."""
    cka = _attribute(attribute)
    _one(ctx.session(), filters).set({cka: _parse(cka, value)})
    return {"message": "Attribute set successfully"}


def _octet_string(data: bytes) -> bytes:
    """DER OCTET STRING (X.690 §8.7), the form of CKA_EC_POINT."""
    length = len(data)
    if length < 0x80:
        return bytes([0x04, length]) + data
    size = (length.bit_length() + 7) // 8
    return bytes([0x04, 0x80 | size]) + length.to_bytes(size, "big") + data


def _octets(der: bytes) -> bytes:
    """The contents of a DER OCTET STRING."""
    if len(der) < 2 or der[0] != 0x04:
        raise CliError("the EC point is not a DER OCTET STRING")
    if der[1] < 0x80:
        return der[2:2 + der[1]]
    size = der[1] & 0x7F
    return der[2 + size:2 + size + int.from_bytes(der[2:2 + size], "big")]


def _public_key(key: Any) -> Any:
    """The ``cryptography`` public key of an RSA or EC public-key object."""
    from cryptography.hazmat.primitives.asymmetric import ec as ec_keys
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys

    attrs = key.get(CKA.CLASS, CKA.KEY_TYPE)
    if attrs[CKA.CLASS] != CKO.PUBLIC_KEY:
        raise CliError("the filter must match a public key (attr.class=public-key)")
    if attrs[CKA.KEY_TYPE] == CKK.RSA:
        values = key.get(CKA.MODULUS, CKA.PUBLIC_EXPONENT)
        return rsa_keys.RSAPublicNumbers(int.from_bytes(values[CKA.PUBLIC_EXPONENT], "big"),
                                         int.from_bytes(values[CKA.MODULUS], "big")).public_key()
    if attrs[CKA.KEY_TYPE] == CKK.EC_EDWARDS:
        from cryptography.hazmat.primitives.asymmetric import ed25519 as ed_keys

        return ed_keys.Ed25519PublicKey.from_public_bytes(_octets(key.get(CKA.EC_POINT)[CKA.EC_POINT]))
    if attrs[CKA.KEY_TYPE] == CKK.EC:
        values = key.get(CKA.EC_PARAMS, CKA.EC_POINT)
        curve = {bytes.fromhex(v): n for n, v in _CURVES.items()}.get(values[CKA.EC_PARAMS])
        curves = {"prime256v1": ec_keys.SECP256R1(), "secp256r1": ec_keys.SECP256R1(),
                  "secp224r1": ec_keys.SECP224R1(), "secp384r1": ec_keys.SECP384R1(),
                  "secp521r1": ec_keys.SECP521R1()}
        if curve is None:
            raise CliError("the key's curve cannot be written to a file here")
        return ec_keys.EllipticCurvePublicKey.from_encoded_point(curves[curve], _octets(values[CKA.EC_POINT]))
    raise CliError("only RSA, EC and Ed25519 public keys are written to files")


@key.command("generate-file")
@click.option("--filter", "filters", multiple=True, required=True)
@click.option("--encoding", type=click.Choice(["pem"]), default="pem", show_default=True)
@click.option("--path", "path", type=click.Path(dir_okay=False), required=True)
@command
def key_generate_file(ctx: Context, filters: tuple[str, ...], encoding: str, path: str) -> dict[str, Any]:
    """Write a public key to a PEM file (SubjectPublicKeyInfo)."""
    from cryptography.hazmat.primitives import serialization

    public = _public_key(_one(ctx.session(), filters))
    Path(path).write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    return {"message": "Successfully generated key file"}


@key.group("import")
def key_import() -> None:
    """Bring keys in."""


@key_import.command("pem")
@click.option("--path", "path", type=click.Path(dir_okay=False, exists=True), required=True)
@click.option("--label", required=True)
@click.option("--key-type-class", type=click.Choice(["rsa-public", "ec-public"]), required=True)
@click.option("--attributes", multiple=True)
@command
def key_import_pem(ctx: Context, path: str, label: str, key_type_class: str,
                   attributes: tuple[str, ...]) -> dict[str, Any]:
    """Import a public key from a PEM file (crypto-user login)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec as ec_keys
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys

    try:
        public = serialization.load_pem_public_key(Path(path).read_bytes())
    except ValueError:
        raise CliError(f"{path} holds no PEM public key") from None
    template: dict[Any, Any] = {CKA.CLASS: CKO.PUBLIC_KEY, CKA.LABEL: label, CKA.TOKEN: True}
    if key_type_class == "rsa-public" and isinstance(public, rsa_keys.RSAPublicKey):
        numbers = public.public_numbers()
        template.update({CKA.KEY_TYPE: CKK.RSA, CKA.MODULUS: numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8,
                                                                                "big"),
                         CKA.PUBLIC_EXPONENT: numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")})
    elif key_type_class == "ec-public" and isinstance(public, ec_keys.EllipticCurvePublicKey):
        names = {"secp256r1": "prime256v1", "secp224r1": "secp224r1", "secp384r1": "secp384r1",
                 "secp521r1": "secp521r1"}
        if public.curve.name not in names:
            raise CliError(f"the curve {public.curve.name} is not offered")
        point = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        template.update({CKA.KEY_TYPE: CKK.EC, CKA.EC_PARAMS: bytes.fromhex(_CURVES[names[public.curve.name]]),
                         CKA.EC_POINT: _octet_string(point)})
    else:
        raise CliError(f"{path} does not hold a key of class {key_type_class}")
    template.update(_attributes(attributes))
    return {"key": _key_shape(ctx.session("crypto-user").create_object(template))}


# ------------------------------------------------------------------ wrapping
_WRAP_KINDS = ["aes-gcm", "aes-no-pad", "aes-pkcs5-pad", "rsa-oaep", "rsa-aes"]


GCM_IV_BYTES = 12


def _wrap_mechanism(kind: str, hash_function: str, iv: bytes = b"") -> Any:
    from ..crypto.params import GcmParams, Mechanism, OaepParams, RsaAesKeyWrapParams
    from ..vocab import CKG

    digest = _HASHES[hash_function][0]
    mgf = {CKM.SHA_1: CKG.MGF1_SHA1, CKM.SHA224: CKG.MGF1_SHA224, CKM.SHA256: CKG.MGF1_SHA256,
           CKM.SHA384: CKG.MGF1_SHA384, CKM.SHA512: CKG.MGF1_SHA512}[digest]
    oaep = OaepParams(digest, mgf)
    return {"aes-gcm": Mechanism(CKM.AES_GCM, GcmParams(iv)), "aes-no-pad": Mechanism(CKM.AES_KEY_WRAP),
            "aes-pkcs5-pad": Mechanism(CKM.AES_KEY_WRAP_PAD), "rsa-oaep": Mechanism(CKM.RSA_PKCS_OAEP, oaep),
            "rsa-aes": Mechanism(CKM.RSA_AES_KEY_WRAP, RsaAesKeyWrapParams(256, oaep))}[kind]


@key.command("wrap")
@click.argument("kind", type=click.Choice(_WRAP_KINDS))
@click.option("--payload-filter", "payload", multiple=True, required=True)
@click.option("--wrapping-filter", "wrapping", multiple=True, required=True)
@click.option("--hash-function", type=click.Choice(sorted(_HASHES)), default="sha256", show_default=True,
              help="The OAEP hash (rsa-oaep, rsa-aes).")
@click.option("--path", "path", type=click.Path(dir_okay=False), default=None, help="Write the wrapped key there.")
@command
def key_wrap(ctx: Context, kind: str, payload: tuple[str, ...], wrapping: tuple[str, ...], hash_function: str,
             path: str | None) -> dict[str, Any]:
    """Wrap an extractable key under a wrapping key (crypto-user login). aes-gcm: a fresh 12-byte IV, then the
    ciphertext and the 16-byte tag."""
    session = ctx.session("crypto-user")
    payload_key, wrapping_key = _one(session, payload), _one(session, wrapping)
    iv = os.urandom(GCM_IV_BYTES) if kind == "aes-gcm" else b""
    wrapped = iv + wrapping_key.wrap(payload_key, _wrap_mechanism(kind, hash_function, iv))
    if path:
        Path(path).write_bytes(wrapped)
    return {"payload_key_reference": _reference(payload_key.handle),
            "wrapping_key_reference": _reference(wrapping_key.handle),
            "wrapped_key_data": base64.b64encode(wrapped).decode()}


_UNWRAPPED = {"aes": (CKO.SECRET_KEY, CKK.AES), "generic-secret": (CKO.SECRET_KEY, CKK.GENERIC_SECRET),
              "rsa-private": (CKO.PRIVATE_KEY, CKK.RSA), "ec-private": (CKO.PRIVATE_KEY, CKK.EC)}


@key.command("unwrap")
@click.argument("kind", type=click.Choice(_WRAP_KINDS))
@click.option("--filter", "filters", multiple=True, required=True, help="The unwrapping key.")
@click.option("--key-type-class", type=click.Choice(sorted(_UNWRAPPED)), required=True)
@click.option("--label", required=True)
@click.option("--data", default=None, help="The wrapped key, base64.")
@click.option("--data-path", type=click.Path(dir_okay=False), default=None)
@click.option("--hash-function", type=click.Choice(sorted(_HASHES)), default="sha256", show_default=True)
@click.option("--attributes", multiple=True)
@click.option("--session", "session_key", is_flag=True)
@command
def key_unwrap(ctx: Context, kind: str, filters: tuple[str, ...], key_type_class: str, label: str,
               data: str | None, data_path: str | None, hash_function: str, attributes: tuple[str, ...],
               session_key: bool) -> dict[str, Any]:
    """Unwrap a key into the cluster (crypto-user login)."""
    session = ctx.session("crypto-user")
    cls, key_type = _UNWRAPPED[key_type_class]
    template = {CKA.CLASS: cls, CKA.KEY_TYPE: key_type, CKA.LABEL: label, CKA.TOKEN: not session_key,
                **_attributes(attributes)}
    wrapped = _data(data, data_path)
    iv = wrapped[:GCM_IV_BYTES] if kind == "aes-gcm" else b""
    made = session.unwrap(_wrap_mechanism(kind, hash_function, iv), _one(session, filters), wrapped[len(iv):],
                          template)
    return {"key": _key_shape(made)}


# ------------------------------------------------------------------ MACs
@crypto.group("mac")
def mac() -> None:
    """Message authentication codes."""


def _hmac(hash_function: str) -> CKM:
    return {"sha1": CKM.SHA_1_HMAC, "sha224": CKM.SHA224_HMAC, "sha256": CKM.SHA256_HMAC,
            "sha384": CKM.SHA384_HMAC, "sha512": CKM.SHA512_HMAC}[hash_function]


@mac.command("generate")
@click.argument("kind", type=click.Choice(["hmac"]))
@click.option("--key-filter", "filters", multiple=True, required=True)
@click.option("--hash-function", type=click.Choice(sorted(_HASHES)), required=True)
@click.option("--data", default=None)
@click.option("--data-path", type=click.Path(dir_okay=False), default=None)
@command
def mac_generate(ctx: Context, kind: str, filters: tuple[str, ...], hash_function: str, data: str | None,
                 data_path: str | None) -> dict[str, Any]:
    """An HMAC with the generic secret the filter matches (crypto-user login)."""
    key = _one(ctx.session("crypto-user"), filters)
    tag = key.sign(_data(data, data_path), _hmac(hash_function))
    return {"key-reference": _reference(key.handle), "mac": base64.b64encode(tag).decode()}


@mac.command("verify")
@click.argument("kind", type=click.Choice(["hmac"]))
@click.option("--key-filter", "filters", multiple=True, required=True)
@click.option("--hash-function", type=click.Choice(sorted(_HASHES)), required=True)
@click.option("--data", default=None)
@click.option("--data-path", type=click.Path(dir_okay=False), default=None)
@click.option("--mac", "tag", required=True, help="The MAC, base64.")
@command
def mac_verify(ctx: Context, kind: str, filters: tuple[str, ...], hash_function: str, data: str | None,
               data_path: str | None, tag: str) -> dict[str, Any]:
    """Check an HMAC (crypto-user login)."""
    key = _one(ctx.session("crypto-user"), filters)
    key.verify(_data(data, data_path), _data(tag, None, "mac"), _hmac(hash_function))
    return {"message": "MAC verified successfully"}


def run(argv: list[str] | None = None) -> None:
    """The ``strongroom-cli`` entry point: usage mistakes too answer with the JSON envelope and exit 1."""
    args = argv if argv is not None else sys.argv[1:]
    output = "text" if "--output=text" in args or any(
        a == "--output" and b == "text" for a, b in zip(args, args[1:])) else "json"
    try:
        main.main(args=argv, prog_name="strongroom-cli", standalone_mode=False)
    except click.exceptions.Abort as exc:
        _fail(output, "aborted: a value was needed and no terminal could be asked (give it as an option, e.g. "
                      "--password)", exc)
    except click.ClickException as exc:
        _fail(output, exc.format_message() + (f" (see: strongroom-cli {exc.ctx.command_path.partition(' ')[2]} "
                                              "--help)".replace("  ", " ") if getattr(exc, "ctx", None) else ""), exc)


if __name__ == "__main__":
    run()
