"""``key import pem``: public keys, and private keys that never cross the wire in plaintext.

A private key is imported as the service's procedure does, by unwrapping: the HSM makes a fresh RSA-3072 session
key pair whose private half only unwraps; this process wraps the key's PKCS#8 under the public half with
``CKM_RSA_AES_KEY_WRAP`` (PKCS#11 3.0 §2.1.21: a fresh AES-256 key, RSA-OAEP-SHA256 encrypted, then the RFC 5649
wrap of the key under it) and the HSM unwraps it into a token key. The session pair is destroyed after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ...vocab import CKA, CKK, CKO
from .context import CliError, Context, command
from .key_commands import CURVES, SHARE_OPTION, key
from .key_selection import attributes_of, check_share_targets, key_shape, share_new_keys
from .list_options import ListOption

IMPORT_KEY_BITS = 3072
_CLASSES = ["ec-private", "ec-public", "rsa-private", "rsa-public"]
_HOLDS = "RSA keys, EC keys on prime256v1, secp224r1, secp384r1 or secp521r1, and Ed25519 keys"


@key.group("import")
def key_import() -> None:
    """Bring keys in."""


def _load(path: str, private: bool) -> Any:
    """The key in a PEM file, as ``cryptography`` reads it; :class:`CliError` for anything else."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    text = Path(path).read_bytes()
    kind = "private" if private else "public"
    try:
        if private:
            return serialization.load_pem_private_key(text, password=None)
        return serialization.load_pem_public_key(text)
    except TypeError:
        raise CliError(f"{path} holds an encrypted private key: decrypt it first (openssl pkey -in {path} -out "
                       "FILE, on a machine you trust) and import FILE") from None
    except UnsupportedAlgorithm:
        raise CliError(f"{path} holds a {kind} key of a kind that cannot be imported; Strongroom holds "
                       f"{_HOLDS}") from None
    except ValueError:
        other = "public" if private else "private"
        hint = f" (it looks like a {other} key: --key-type-class …-{other})" if f"{other.upper()} KEY" in \
            text.decode("latin-1") else ""
        raise CliError(f"{path} holds no PEM {kind} key{hint}") from None


def _key_type(loaded: Any, key_type_class: str, path: str) -> CKK:
    """The ``CKA_KEY_TYPE`` of a loaded key that ``--key-type-class`` accepts."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    family = key_type_class.partition("-")[0]
    if family == "rsa" and isinstance(loaded, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return CKK.RSA
    if family == "ec" and isinstance(loaded, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return CKK.EC_EDWARDS
    if family == "ec" and isinstance(loaded, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if loaded.curve.name not in CURVES:
            raise CliError(f"{path}: the curve {loaded.curve.name} cannot be imported; Strongroom holds {_HOLDS}")
        return CKK.EC
    if isinstance(loaded, (rsa.RSAPrivateKey, rsa.RSAPublicKey, ec.EllipticCurvePrivateKey,
                           ec.EllipticCurvePublicKey, ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        raise CliError(f"{path} does not hold a key of class {key_type_class}")
    raise CliError(f"{path} holds a {type(loaded).__name__.lstrip('_')} that cannot be imported; Strongroom holds "
                   f"{_HOLDS}")


def _public_template(public: Any, key_type: CKK) -> dict[Any, Any]:
    from cryptography.hazmat.primitives import serialization

    from ...crypto import der
    from ...crypto.keys import ec_params_for

    if key_type is CKK.RSA:
        numbers = public.public_numbers()
        return {CKA.MODULUS: numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"),
                CKA.PUBLIC_EXPONENT: numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")}
    if key_type is CKK.EC:
        point = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    else:
        point = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {CKA.EC_PARAMS: ec_params_for(public), CKA.EC_POINT: der.encode(der.OCTET_STRING, point)}


def _wrap_for(unwrapping_public: Any, pkcs8: bytes) -> bytes:
    """``CKM_RSA_AES_KEY_WRAP`` of ``pkcs8`` under an RSA public key: OAEP(SHA-256) of a fresh AES-256 key, then
    the RFC 5649 wrap (AES key wrap with padding) of the key material under it."""
    import os

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

    aes_key = os.urandom(32)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    return bytes(unwrapping_public.encrypt(aes_key, oaep)) + aes_key_wrap_with_padding(aes_key, pkcs8)


def import_private(session: Any, private: Any, template: dict[Any, Any]) -> Any:
    """Import a ``cryptography`` private key into the cluster under ``template`` by unwrapping it (see the
    module's docstring); the key's plaintext is never sent. Returns the new key."""
    from cryptography.hazmat.primitives import serialization

    from ...crypto.keys import public_key_from_attributes
    from ...mechanism_params import Mechanism, OaepParams, RsaAesKeyWrapParams
    from ...vocab import CKG, CKM

    pkcs8 = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    exponent = (65537).to_bytes(3, "big")
    public_half, unwrapping = session.generate_key_pair(
        CKM.RSA_PKCS_KEY_PAIR_GEN, {CKA.MODULUS_BITS: IMPORT_KEY_BITS, CKA.PUBLIC_EXPONENT: exponent,
                                    CKA.LABEL: "key-import"},
        {CKA.UNWRAP: True, CKA.SIGN: False, CKA.DECRYPT: False, CKA.EXTRACTABLE: False,
         CKA.LABEL: "key-import"}, token=False)
    try:
        wrapping = public_key_from_attributes(CKK.RSA, public_half.get(CKA.MODULUS, CKA.PUBLIC_EXPONENT))
        mechanism = Mechanism(CKM.RSA_AES_KEY_WRAP, RsaAesKeyWrapParams(256, OaepParams(CKM.SHA256, CKG.MGF1_SHA256)))
        return session.unwrap(mechanism, unwrapping, _wrap_for(wrapping, pkcs8), template)
    finally:
        for temporary in (unwrapping, public_half):
            temporary.destroy()


@key_import.command("pem")
@click.option("--path", "path", type=click.Path(dir_okay=False, exists=True), required=True,
              help="The PEM file: a public key (SubjectPublicKeyInfo) or an unencrypted private key (PKCS#8, "
                   "PKCS#1 or SEC 1).")
@click.option("--label", required=True)
@click.option("--key-type-class", type=click.Choice(_CLASSES), required=True,
              help="ec-* also takes Ed25519 keys.")
@click.option("--attributes", cls=ListOption, help="name=value for the new key (space-separated).")
@SHARE_OPTION
@command
def key_import_pem(ctx: Context, path: str, label: str, key_type_class: str, attributes: tuple[str, ...],
                   share_with: tuple[str, ...]) -> dict[str, Any]:
    """Import a public or private key from a PEM file (crypto-user login). A private key is wrapped in this
    process and unwrapped in the HSM: its plaintext never crosses the wire."""
    private = key_type_class.endswith("-private")
    loaded = _load(path, private)
    key_type = _key_type(loaded, key_type_class, path)
    session = ctx.session("crypto-user")
    template: dict[Any, Any] = {CKA.CLASS: CKO.PRIVATE_KEY if private else CKO.PUBLIC_KEY,
                                CKA.KEY_TYPE: key_type, CKA.LABEL: label, CKA.TOKEN: True}
    if private:
        if share_with:
            check_share_targets(session, share_with, ctx.username)
        made = import_private(session, loaded, {**template, **attributes_of(attributes)})
        share_new_keys([made], [made], share_with)
    else:
        if share_with:
            raise CliError("public keys are every crypto user's already: --share-crypto-users is for private keys")
        template.update(_public_template(loaded, key_type))
        made = session.create_object({**template, **attributes_of(attributes)})
    return {"key": key_shape(made), "message": "Successfully imported key"}
