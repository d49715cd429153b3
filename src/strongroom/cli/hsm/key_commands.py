"""``key``: generate, list, delete, share, change, export and import keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ...errors import StrongroomError
from ...vocab import CKA, CKK, CKM, CKO
from .context import CliError, Context, command, main
from .key_selection import (
    attribute_named,
    attributes_of,
    check_share_targets,
    key_shape,
    matching,
    one,
    parse,
    share_new_keys,
)
from .list_options import ListOption

# The curves --curve offers, by the names the service's CLI uses (their OIDs: strongroom.crypto.keys).
CURVES = ("ed25519", "prime256v1", "secp224r1", "secp256r1", "secp384r1", "secp521r1")

@main.group()
def key() -> None:
    """Keys: generate, list, delete."""


@key.group("generate-symmetric")
def generate_symmetric() -> None:
    """Secret keys."""


SHARE_OPTION = click.option(
    "--share-crypto-users", "share_with", cls=ListOption,
    help="Crypto users to share the new key with at once (space-separated usernames).")


def _generate_secret(ctx: Context, mechanism: CKM, label: str, length: int, attributes: tuple[str, ...],
                     session_key: bool, share_with: tuple[str, ...]) -> dict[str, Any]:
    session = ctx.session("crypto-user")
    template = {CKA.LABEL: label, CKA.VALUE_LEN: length, **attributes_of(attributes)}
    check_share_targets(session, share_with, ctx.username, session_key=session_key)
    made = session.generate_key(mechanism, template, token=not session_key)
    share_new_keys([made], [made], share_with)
    return {"key": key_shape(made)}


@generate_symmetric.command("aes")
@click.option("--label", required=True)
@click.option("--key-length-bytes", type=click.Choice(["16", "24", "32"]), required=True)
@click.option("--attributes", cls=ListOption,
              help="name=value, e.g. encrypt=true (space-separated, or repeat the flag).")
@click.option("--session", "session_key", is_flag=True, help="A session key (gone when the command ends).")
@SHARE_OPTION
@command
def generate_aes(ctx: Context, label: str, key_length_bytes: str, attributes: tuple[str, ...],
                 session_key: bool, share_with: tuple[str, ...]) -> dict[str, Any]:
    """An AES key (crypto-user login)."""
    return _generate_secret(ctx, CKM.AES_KEY_GEN, label, int(key_length_bytes), attributes, session_key,
                            share_with)


@generate_symmetric.command("generic-secret")
@click.option("--label", required=True)
@click.option("--key-length-bytes", type=click.IntRange(1, 800), required=True)
@click.option("--attributes", cls=ListOption,
              help="name=value, e.g. sign=true (space-separated, or repeat the flag).")
@click.option("--session", "session_key", is_flag=True)
@SHARE_OPTION
@command
def generate_generic(ctx: Context, label: str, key_length_bytes: int, attributes: tuple[str, ...],
                     session_key: bool, share_with: tuple[str, ...]) -> dict[str, Any]:
    """A generic secret (HMAC) key (crypto-user login)."""
    return _generate_secret(ctx, CKM.GENERIC_SECRET_KEY_GEN, label, key_length_bytes, attributes, session_key,
                            share_with)


@key.group("generate-asymmetric-pair")
def generate_pair() -> None:
    """Key pairs."""


def _pair(ctx: Context, mechanism: CKM, public: dict[Any, Any], private: dict[Any, Any], public_label: str,
          private_label: str, public_attributes: tuple[str, ...], private_attributes: tuple[str, ...],
          session_key: bool, share_with: tuple[str, ...]) -> dict[str, Any]:
    session = ctx.session("crypto-user")
    public_template = {**public, CKA.LABEL: public_label, **attributes_of(public_attributes)}
    private_template = {**private, CKA.LABEL: private_label, **attributes_of(private_attributes)}
    check_share_targets(session, share_with, ctx.username, session_key=session_key)
    pub, priv = session.generate_key_pair(mechanism, public_template, private_template, token=not session_key)
    share_new_keys([priv], [pub, priv], share_with)  # public keys are every crypto user's to read
    return {"public_key": key_shape(pub), "private_key": key_shape(priv)}


_PAIR_OPTIONS = [
    click.option("--public-label", required=True), click.option("--private-label", required=True),
    click.option("--public-attributes", cls=ListOption), click.option("--private-attributes", cls=ListOption),
    click.option("--session", "session_key", is_flag=True), SHARE_OPTION,
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
                 session_key: bool, share_with: tuple[str, ...]) -> dict[str, Any]:
    """An RSA key pair (crypto-user login)."""
    if not public_exponent.isdigit() or int(public_exponent) < 3:
        raise CliError("--public-exponent is an odd number such as 65537")
    exponent = int(public_exponent)
    e_bytes = exponent.to_bytes(max(1, (exponent.bit_length() + 7) // 8), "big")
    return _pair(ctx, CKM.RSA_PKCS_KEY_PAIR_GEN, {CKA.MODULUS_BITS: int(modulus_size_bits),
                                                  CKA.PUBLIC_EXPONENT: e_bytes}, {}, public_label, private_label,
                 public_attributes, private_attributes, session_key, share_with)


@generate_pair.command("ec")
@click.option("--curve", type=click.Choice(sorted(CURVES)), required=True)
@_pair_options
@command
def generate_ec(ctx: Context, curve: str, public_label: str, private_label: str, public_attributes: tuple[str, ...],
                private_attributes: tuple[str, ...], session_key: bool, share_with: tuple[str, ...]) -> dict[str, Any]:
    """An EC key pair, or an Ed25519 pair with --curve ed25519 (crypto-user login)."""
    from ...crypto.keys import ec_params_for_name

    mechanism = CKM.EC_EDWARDS_KEY_PAIR_GEN if curve == "ed25519" else CKM.EC_KEY_PAIR_GEN
    return _pair(ctx, mechanism, {CKA.EC_PARAMS: ec_params_for_name(curve)}, {}, public_label,
                 private_label, public_attributes, private_attributes, session_key, share_with)


@key.command("list")
@click.option("--filter", "filters", cls=ListOption,
              help="attr.<name>=<value> or key-reference=0x… (space-separated, or repeat the flag).")
@click.option("--max-items", type=click.IntRange(1, None), default=10, show_default=True)
@click.option("--starting-token", default="0")
@click.option("-v", "--verbose", is_flag=True, help="All attributes, not only the label.")
@command
def key_list(ctx: Context, filters: tuple[str, ...], max_items: int, starting_token: str,
             verbose: bool) -> dict[str, Any]:
    """Keys the login sees, matching the filters."""
    keys = matching(ctx.session(), filters)
    if not starting_token.isdigit():
        raise CliError("--starting-token is the next_token of an earlier answer")
    start = int(starting_token)
    page = keys[start:start + max_items]
    out: dict[str, Any] = {"matched_keys": [key_shape(k, verbose) for k in page], "total_key_count": len(keys),
                           "returned_key_count": len(page)}
    if start + max_items < len(keys):
        out["next_token"] = str(start + max_items)
    return out


@key.command("delete")
@click.option("--filter", "filters", cls=ListOption, required=True)
@command
def key_delete(ctx: Context, filters: tuple[str, ...]) -> dict[str, Any]:
    """Delete the one key the filters match (its owner)."""
    one(ctx.session("crypto-user"), filters).destroy()
    return {"message": "Key deleted successfully"}


def _sharing_command(name: str, unshare: bool, doc: str, message: str) -> None:
    """``key share`` / ``key unshare``: the same options, one call of the key's owner."""

    @click.option("--filter", "filters", cls=ListOption, required=True)
    @click.option("--username", required=True)
    @click.option("--role", type=click.Choice(["crypto-user"]), default="crypto-user", show_default=True)
    @command
    def run(ctx: Context, filters: tuple[str, ...], username: str, role: str) -> dict[str, Any]:
        target = one(ctx.session("crypto-user"), filters)
        (target.unshare if unshare else target.share)(username)
        return {"message": message}

    run.__doc__ = doc
    key.command(name, help=doc)(run)


_sharing_command("share", False, "Share a key with another crypto user (its owner).", "Key shared successfully")
_sharing_command("unshare", True, "Stop sharing a key with a crypto user (its owner).", "Key unshared successfully")


@key.command("set-attribute")
@click.option("--filter", "filters", cls=ListOption, required=True)
@click.option("--name", "attribute", required=True, help="e.g. label, id, sign, decrypt.")
@click.option("--value", required=True)
@command
def key_set_attribute(ctx: Context, filters: tuple[str, ...], attribute: str, value: str) -> dict[str, Any]:
    """Change one attribute of a key (its owner; admins may set only trusted)."""
    cka = attribute_named(attribute)
    one(ctx.session(), filters).set({cka: parse(cka, value)})
    return {"message": "Attribute set successfully"}



def _public_key(key: Any) -> Any:
    """The ``cryptography`` public key of an RSA, EC or Ed25519 public-key object."""
    from ...crypto.keys import ED25519, curve_from_ec_params, public_key_from_attributes, public_key_from_point

    attrs = key.get(CKA.CLASS, CKA.KEY_TYPE)
    if attrs[CKA.CLASS] != CKO.PUBLIC_KEY:
        raise CliError("the filter must match a public key (attr.class=public-key)")
    if attrs[CKA.KEY_TYPE] == CKK.RSA:
        return public_key_from_attributes(CKK.RSA, key.get(CKA.MODULUS, CKA.PUBLIC_EXPONENT))
    if attrs[CKA.KEY_TYPE] == CKK.EC_EDWARDS:
        return public_key_from_point(ED25519, key.get(CKA.EC_POINT)[CKA.EC_POINT])
    if attrs[CKA.KEY_TYPE] == CKK.EC:
        values = key.get(CKA.EC_PARAMS, CKA.EC_POINT)
        try:
            curve = curve_from_ec_params(values[CKA.EC_PARAMS])
        except StrongroomError:
            curve = None
        if curve is None or curve.name not in CURVES:
            raise CliError("the key's curve cannot be written to a file here")
        return public_key_from_attributes(CKK.EC, values)
    raise CliError("only RSA, EC and Ed25519 public keys are written to files")


@key.command("generate-file")
@click.option("--filter", "filters", cls=ListOption, required=True)
@click.option("--encoding", type=click.Choice(["pem"]), default="pem", show_default=True)
@click.option("--path", "path", type=click.Path(dir_okay=False), required=True)
@command
def key_generate_file(ctx: Context, filters: tuple[str, ...], encoding: str, path: str) -> dict[str, Any]:
    """Write a public key to a PEM file (SubjectPublicKeyInfo)."""
    from cryptography.hazmat.primitives import serialization

    public = _public_key(one(ctx.session(), filters))
    Path(path).write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    return {"message": "Successfully generated key file"}
