"""``crypto``: sign, verify and MACs with keys in the cluster."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import click

from ...vocab import CKM
from .context import CliError, Context, command, main
from .key_selection import one, reference
from .list_options import ListOption

HASHES = {"sha1": (CKM.SHA_1, CKM.SHA1_RSA_PKCS, CKM.SHA1_RSA_PKCS_PSS, CKM.ECDSA_SHA1),
           "sha224": (CKM.SHA224, CKM.SHA224_RSA_PKCS, CKM.SHA224_RSA_PKCS_PSS, CKM.ECDSA_SHA224),
           "sha256": (CKM.SHA256, CKM.SHA256_RSA_PKCS, CKM.SHA256_RSA_PKCS_PSS, CKM.ECDSA_SHA256),
           "sha384": (CKM.SHA384, CKM.SHA384_RSA_PKCS, CKM.SHA384_RSA_PKCS_PSS, CKM.ECDSA_SHA384),
           "sha512": (CKM.SHA512, CKM.SHA512_RSA_PKCS, CKM.SHA512_RSA_PKCS_PSS, CKM.ECDSA_SHA512)}
HASH_BYTES = {"sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64}


@main.group()
def crypto() -> None:
    """Sign, verify, encrypt, decrypt and MACs with keys in the cluster."""


def read_data(data: str | None, data_path: str | None, name: str = "data") -> bytes:
    """``--NAME`` (base64) or the file ``--NAME-path``, whichever of the two was given."""
    if data_path is not None and data is None:
        return Path(data_path).read_bytes()
    if data is None or data_path is not None:
        raise CliError(f"give exactly one of --{name} (base64) and --{name}-path")
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        raise CliError(f"--{name} is base64") from None


def _mechanism(kind: str, hash_function: str | None, data_type: str, data: bytes) -> Any:
    from ...mechanism_params import Mechanism, PssParams
    from ...vocab import CKG

    if kind == "ed25519":
        return Mechanism(CKM.EDDSA)
    if hash_function is None:
        raise CliError("--hash-function is needed (sha1, sha224, sha256, sha384, sha512)")
    digest, rsa_pkcs, rsa_pss, ecdsa = HASHES[hash_function]
    if data_type == "digest" and len(data) != HASH_BYTES[hash_function]:
        raise CliError(f"a {hash_function} digest is {HASH_BYTES[hash_function]} bytes, not {len(data)}")
    mgf = {CKM.SHA_1: CKG.MGF1_SHA1, CKM.SHA224: CKG.MGF1_SHA224, CKM.SHA256: CKG.MGF1_SHA256,
           CKM.SHA384: CKG.MGF1_SHA384, CKM.SHA512: CKG.MGF1_SHA512}[digest]
    if kind == "ecdsa":
        return Mechanism(CKM.ECDSA) if data_type == "digest" else Mechanism(ecdsa)
    if kind == "rsa-pkcs-pss":
        params = PssParams(digest, mgf, HASH_BYTES[hash_function])
        return Mechanism(CKM.RSA_PKCS_PSS if data_type == "digest" else rsa_pss, params)
    if data_type == "digest":
        raise CliError("rsa-pkcs signs raw data here (--data-type raw)")
    return Mechanism(rsa_pkcs)


_SIGN_KINDS = ["ecdsa", "ed25519", "rsa-pkcs", "rsa-pkcs-pss"]


@crypto.command("sign")
@click.argument("kind", type=click.Choice(_SIGN_KINDS))
@click.option("--key-filter", "filters", cls=ListOption, required=True)
@click.option("--hash-function", type=click.Choice(sorted(HASHES)))
@click.option("--data", default=None, help="The data, base64.")
@click.option("--data-path", type=click.Path(dir_okay=False), default=None)
@click.option("--data-type", type=click.Choice(["raw", "digest"]), default="raw", show_default=True)
@click.option("--signature-path", type=click.Path(dir_okay=False), default=None,
              help="Write the signature (raw bytes) there too.")
@command
def crypto_sign(ctx: Context, kind: str, filters: tuple[str, ...], hash_function: str | None, data: str | None,
                data_path: str | None, data_type: str, signature_path: str | None) -> dict[str, Any]:
    """Sign with the private key the filter matches (crypto-user login). ECDSA signatures are r‖s."""
    message = read_data(data, data_path)
    private = one(ctx.session("crypto-user"), filters)
    signature = private.sign(message, _mechanism(kind, hash_function, data_type, message))
    if signature_path:
        Path(signature_path).write_bytes(signature)
    return {"key-reference": reference(private.handle), "signature": base64.b64encode(signature).decode()}


@crypto.command("verify")
@click.argument("kind", type=click.Choice(_SIGN_KINDS))
@click.option("--key-filter", "filters", cls=ListOption, required=True)
@click.option("--hash-function", type=click.Choice(sorted(HASHES)))
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
    message = read_data(data, data_path)
    sig = read_data(signature, signature_path, "signature")
    public = one(ctx.session("crypto-user"), filters)
    public.verify(message, sig, _mechanism(kind, hash_function, data_type, message))
    return {"message": "Signature verified successfully"}



@crypto.group("mac")
def mac() -> None:
    """Message authentication codes."""


def _hmac(hash_function: str) -> CKM:
    return {"sha1": CKM.SHA_1_HMAC, "sha224": CKM.SHA224_HMAC, "sha256": CKM.SHA256_HMAC,
            "sha384": CKM.SHA384_HMAC, "sha512": CKM.SHA512_HMAC}[hash_function]


@mac.command("generate")
@click.argument("kind", type=click.Choice(["hmac"]))
@click.option("--key-filter", "filters", cls=ListOption, required=True)
@click.option("--hash-function", type=click.Choice(sorted(HASHES)), required=True)
@click.option("--data", default=None)
@click.option("--data-path", type=click.Path(dir_okay=False), default=None)
@command
def mac_generate(ctx: Context, kind: str, filters: tuple[str, ...], hash_function: str, data: str | None,
                 data_path: str | None) -> dict[str, Any]:
    """An HMAC with the generic secret the filter matches (crypto-user login)."""
    key = one(ctx.session("crypto-user"), filters)
    tag = key.sign(read_data(data, data_path), _hmac(hash_function))
    return {"key-reference": reference(key.handle), "mac": base64.b64encode(tag).decode()}


@mac.command("verify")
@click.argument("kind", type=click.Choice(["hmac"]))
@click.option("--key-filter", "filters", cls=ListOption, required=True)
@click.option("--hash-function", type=click.Choice(sorted(HASHES)), required=True)
@click.option("--data", default=None)
@click.option("--data-path", type=click.Path(dir_okay=False), default=None)
@click.option("--mac", "tag", required=True, help="The MAC, base64.")
@command
def mac_verify(ctx: Context, kind: str, filters: tuple[str, ...], hash_function: str, data: str | None,
               data_path: str | None, tag: str) -> dict[str, Any]:
    """Check an HMAC (crypto-user login)."""
    key = one(ctx.session("crypto-user"), filters)
    key.verify(read_data(data, data_path), read_data(tag, None, "mac"), _hmac(hash_function))
    return {"message": "MAC verified successfully"}

