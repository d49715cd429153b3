"""``key wrap`` and ``key unwrap``: keys out of and into the cluster under a wrapping key."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import click

from ...vocab import CKA, CKK, CKM, CKO
from .context import Context, command
from .crypto_commands import HASHES, read_data
from .key_commands import SHARE_OPTION, key
from .key_selection import attributes_of, check_share_targets, key_shape, one, reference, share_new_keys
from .list_options import ListOption

_WRAP_KINDS = ["aes-gcm", "aes-no-pad", "aes-pkcs5-pad", "rsa-oaep", "rsa-aes"]


GCM_IV_BYTES = 12


def _wrap_mechanism(kind: str, hash_function: str, iv: bytes = b"") -> Any:
    from ...mechanism_params import GcmParams, Mechanism, OaepParams, RsaAesKeyWrapParams
    from ...vocab import CKG

    digest = HASHES[hash_function][0]
    mgf = {CKM.SHA_1: CKG.MGF1_SHA1, CKM.SHA224: CKG.MGF1_SHA224, CKM.SHA256: CKG.MGF1_SHA256,
           CKM.SHA384: CKG.MGF1_SHA384, CKM.SHA512: CKG.MGF1_SHA512}[digest]
    oaep = OaepParams(digest, mgf)
    return {"aes-gcm": Mechanism(CKM.AES_GCM, GcmParams(iv)), "aes-no-pad": Mechanism(CKM.AES_KEY_WRAP),
            "aes-pkcs5-pad": Mechanism(CKM.AES_KEY_WRAP_PAD), "rsa-oaep": Mechanism(CKM.RSA_PKCS_OAEP, oaep),
            "rsa-aes": Mechanism(CKM.RSA_AES_KEY_WRAP, RsaAesKeyWrapParams(256, oaep))}[kind]


@key.command("wrap")
@click.argument("kind", type=click.Choice(_WRAP_KINDS))
@click.option("--payload-filter", "payload", cls=ListOption, required=True)
@click.option("--wrapping-filter", "wrapping", cls=ListOption, required=True)
@click.option("--hash-function", type=click.Choice(sorted(HASHES)), default="sha256", show_default=True,
              help="The OAEP hash (rsa-oaep, rsa-aes).")
@click.option("--path", "path", type=click.Path(dir_okay=False), default=None, help="Write the wrapped key there.")
@command
def key_wrap(ctx: Context, kind: str, payload: tuple[str, ...], wrapping: tuple[str, ...], hash_function: str,
             path: str | None) -> dict[str, Any]:
    """Wrap an extractable key under a wrapping key (crypto-user login). aes-gcm: a fresh 12-byte IV, then the
    ciphertext and the 16-byte tag."""
    session = ctx.session("crypto-user")
    payload_key, wrapping_key = one(session, payload), one(session, wrapping)
    iv = os.urandom(GCM_IV_BYTES) if kind == "aes-gcm" else b""
    wrapped = iv + wrapping_key.wrap(payload_key, _wrap_mechanism(kind, hash_function, iv))
    answer: dict[str, Any] = {"payload_key_reference": reference(payload_key.handle),
                              "wrapping_key_reference": reference(wrapping_key.handle)}
    if path:  # the wrapped key goes to the file only
        Path(path).write_bytes(wrapped)
        answer.update(path=path, wrapped_bytes=len(wrapped))
    else:
        answer["wrapped_key_data"] = base64.b64encode(wrapped).decode()
    return answer


_UNWRAPPED = {"aes": (CKO.SECRET_KEY, CKK.AES), "generic-secret": (CKO.SECRET_KEY, CKK.GENERIC_SECRET),
              "rsa-private": (CKO.PRIVATE_KEY, CKK.RSA), "ec-private": (CKO.PRIVATE_KEY, CKK.EC)}


@key.command("unwrap")
@click.argument("kind", type=click.Choice(_WRAP_KINDS))
@click.option("--filter", "filters", cls=ListOption, required=True, help="The unwrapping key.")
@click.option("--key-type-class", type=click.Choice(sorted(_UNWRAPPED)), required=True)
@click.option("--label", required=True)
@click.option("--data", default=None, help="The wrapped key, base64.")
@click.option("--data-path", type=click.Path(dir_okay=False), default=None)
@click.option("--hash-function", type=click.Choice(sorted(HASHES)), default="sha256", show_default=True)
@click.option("--attributes", cls=ListOption)
@click.option("--session", "session_key", is_flag=True)
@SHARE_OPTION
@command
def key_unwrap(ctx: Context, kind: str, filters: tuple[str, ...], key_type_class: str, label: str,
               data: str | None, data_path: str | None, hash_function: str, attributes: tuple[str, ...],
               session_key: bool, share_with: tuple[str, ...]) -> dict[str, Any]:
    """Unwrap a key into the cluster (crypto-user login)."""
    session = ctx.session("crypto-user")
    check_share_targets(session, share_with, ctx.username, session_key=session_key)
    cls, key_type = _UNWRAPPED[key_type_class]
    template = {CKA.CLASS: cls, CKA.KEY_TYPE: key_type, CKA.LABEL: label, CKA.TOKEN: not session_key,
                **attributes_of(attributes)}
    wrapped = read_data(data, data_path)
    iv = wrapped[:GCM_IV_BYTES] if kind == "aes-gcm" else b""
    made = session.unwrap(_wrap_mechanism(kind, hash_function, iv), one(session, filters), wrapped[len(iv):],
                          template)
    share_new_keys([made], [made], share_with)
    return {"key": key_shape(made)}

