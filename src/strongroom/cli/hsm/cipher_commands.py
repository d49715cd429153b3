"""``crypto encrypt`` and ``crypto decrypt``: AES-GCM, AES-CBC with PKCS#7 padding and RSA-OAEP with keys in the
cluster, with the option names of the service's ``crypto sign`` and ``key wrap``/``unwrap`` (``--key-filter``,
``--data``/``--data-path``, ``--hash-function``, ``--iv``, ``--aad``, ``--tag-length-bits``, ``--path``).

Layouts (what ``encrypted_data`` and the ``--path`` file hold, and what decrypt reads):

- ``aes-gcm`` (NIST SP 800-38D): the HSM's fresh 12-byte IV, then the ciphertext, then the tag.
- ``aes-cbc-pad`` (NIST SP 800-38A, PKCS#7 padding): the 16-byte IV, then the ciphertext.
- ``rsa-oaep`` (RFC 8017 §7.1): the ciphertext, as long as the modulus.

Decrypt with ``--iv`` reads the data without the IV in front.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import click

from ...vocab import CKG, CKM
from .context import CliError, Context, command
from .crypto_commands import HASHES, crypto, read_data
from .key_selection import one, reference
from .list_options import ListOption

GCM_IV_BYTES, CBC_IV_BYTES = 12, 16
_KINDS = ["aes-cbc-pad", "aes-gcm", "rsa-oaep"]
_MGF = {"sha1": CKG.MGF1_SHA1, "sha224": CKG.MGF1_SHA224, "sha256": CKG.MGF1_SHA256, "sha384": CKG.MGF1_SHA384,
        "sha512": CKG.MGF1_SHA512}


def _hex(value: str | None, option: str) -> bytes:
    if value is None:
        return b""
    try:
        return bytes.fromhex(value[2:] if value.lower().startswith("0x") else value)
    except ValueError:
        raise CliError(f"{option} is hex bytes such as 0x0102, not {value[:40]!r}") from None


def _mechanism(kind: str, hash_function: str, iv: bytes, aad: bytes, tag_length_bits: int) -> Any:
    from ...mechanism_params import GcmParams, Mechanism, OaepParams

    if kind == "aes-gcm":
        return Mechanism(CKM.AES_GCM, GcmParams(iv, aad, tag_length_bits))
    if kind == "aes-cbc-pad":
        return Mechanism(CKM.AES_CBC_PAD, iv)
    return Mechanism(CKM.RSA_PKCS_OAEP, OaepParams(HASHES[hash_function][0], _MGF[hash_function]))


def _check(kind: str, iv: bytes, aad: bytes, tag_length_bits: int) -> None:
    if kind != "aes-gcm" and (aad or tag_length_bits != 128):
        raise CliError("--aad and --tag-length-bits are for aes-gcm")
    if kind == "rsa-oaep" and iv:
        raise CliError("rsa-oaep takes no --iv")
    if tag_length_bits not in range(96, 129, 8):
        raise CliError("--tag-length-bits is 96, 104, 112, 120 or 128")
    wanted = {"aes-gcm": GCM_IV_BYTES, "aes-cbc-pad": CBC_IV_BYTES}.get(kind)
    if iv and len(iv) != wanted:
        raise CliError(f"the {kind} IV is {wanted} bytes, not {len(iv)}")


_OPTIONS = [
    click.argument("kind", type=click.Choice(_KINDS)),
    click.option("--key-filter", "filters", cls=ListOption, required=True,
                 help="key-reference=0x… or attr.NAME=VALUE … selecting one key."),
    click.option("--data", default=None, help="The input, base64."),
    click.option("--data-path", type=click.Path(dir_okay=False, exists=True), default=None,
                 help="The input, a binary file."),
    click.option("--hash-function", type=click.Choice(sorted(HASHES)), default="sha256", show_default=True,
                 help="rsa-oaep: the OAEP hash, and MGF1's."),
    click.option("--aad", default=None, help="aes-gcm: additional authenticated data, hex."),
    click.option("--tag-length-bits", type=int, default=128, show_default=True, help="aes-gcm: 96 to 128."),
    click.option("--path", "path", type=click.Path(dir_okay=False), default=None,
                 help="Write the output (binary) to this file."),
]


def _options(fn: Any) -> Any:
    for option in reversed(_OPTIONS):
        fn = option(fn)
    return fn


@crypto.command("encrypt")
@_options
@click.option("--iv", default=None, help="aes-cbc-pad: the 16-byte IV, hex [default: random from the HSM]. "
                                         "aes-gcm: the HSM always makes the IV.")
@command
def crypto_encrypt(ctx: Context, kind: str, filters: tuple[str, ...], data: str | None, data_path: str | None,
                   hash_function: str, aad: str | None, tag_length_bits: int, path: str | None,
                   iv: str | None) -> dict[str, Any]:
    """Encrypt with the key the filter matches (crypto-user login; the key needs encrypt=true). Answers
    encrypted_data, base64 (with --path, the file holds those bytes and the answer their count): aes-gcm the
    HSM's 12-byte IV, ciphertext and tag; aes-cbc-pad the 16-byte IV and ciphertext; rsa-oaep the ciphertext."""
    chosen, extra = _hex(iv, "--iv"), _hex(aad, "--aad")
    _check(kind, chosen, extra, tag_length_bits)
    if kind == "aes-gcm" and chosen:
        raise CliError("aes-gcm: the HSM makes a fresh IV for every encryption; give no --iv")
    plain = read_data(data, data_path)
    session = ctx.session("crypto-user")
    target = one(session, filters)
    if kind == "aes-cbc-pad" and not chosen:
        chosen = session.random(CBC_IV_BYTES)
    out = target.encrypt(plain, _mechanism(kind, hash_function, chosen, extra, tag_length_bits))
    if kind == "aes-cbc-pad":
        out = chosen + out  # the HSM returns an AES-GCM IV in front itself
    answer: dict[str, Any] = {"key-reference": reference(target.handle)}
    if path:  # the data goes to the file only, as decrypt's
        Path(path).write_bytes(out)
        answer.update(path=path, encrypted_bytes=len(out))
    else:
        answer["encrypted_data"] = base64.b64encode(out).decode()
    if kind != "rsa-oaep":
        answer["iv"] = "0x" + out[:GCM_IV_BYTES if kind == "aes-gcm" else CBC_IV_BYTES].hex()
    return answer


@crypto.command("decrypt")
@_options
@click.option("--iv", default=None, help="The IV, hex, when the data does not start with it.")
@command
def crypto_decrypt(ctx: Context, kind: str, filters: tuple[str, ...], data: str | None, data_path: str | None,
                   hash_function: str, aad: str | None, tag_length_bits: int, path: str | None,
                   iv: str | None) -> dict[str, Any]:
    """Decrypt what crypto encrypt made (IV in front; with --iv, the data without it) with the key the filter
    matches (crypto-user login; the key needs decrypt=true). Answers decrypted_data, base64, or with --path
    only writes it there."""
    given, extra = _hex(iv, "--iv"), _hex(aad, "--aad")
    _check(kind, given, extra, tag_length_bits)
    sealed = read_data(data, data_path)
    size = {"aes-gcm": GCM_IV_BYTES, "aes-cbc-pad": CBC_IV_BYTES}.get(kind, 0)
    chosen, body = (given, sealed) if given or not size else (sealed[:size], sealed[size:])
    if size and len(chosen) != size:
        raise CliError(f"the data is {len(sealed)} bytes: too short to start with a {size}-byte IV")
    target = one(ctx.session("crypto-user"), filters)
    plain = target.decrypt(body, _mechanism(kind, hash_function, chosen, extra, tag_length_bits))
    if path:
        Path(path).write_bytes(plain)
        return {"key-reference": reference(target.handle), "path": path, "decrypted_bytes": len(plain)}
    return {"key-reference": reference(target.handle), "decrypted_data": base64.b64encode(plain).decode()}
