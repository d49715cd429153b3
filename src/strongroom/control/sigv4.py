"""AWS Signature Version 4 on the receiving side: the control plane checks what boto3 and the AWS CLI sign.

The signer hashes a canonical form of the request (method, path, query, the headers it names, the body's SHA-256)
into a string to sign bound to a date, region and service (the *scope*), and signs it with HMAC-SHA256 under a
key derived from the secret access key and that scope. The server rebuilds the same string from what arrived and
compares. Specification: "Signature Version 4 signing process" (AWS General Reference) and "Create a signed AWS
API request"; the service's signing name is ``cloudhsm`` (not the endpoint prefix ``cloudhsmv2``).
"""

from __future__ import annotations

import datetime
import hmac as stdlib_hmac
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from ..errors import AuthError
from ..vocab import CKR

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "cloudhsm"
MAX_SKEW = datetime.timedelta(minutes=15)  # the window AWS accepts between the signer's clock and its own


_CKR_BY_CODE = {
    "MissingAuthenticationTokenException": CKR.USER_NOT_LOGGED_IN,  # no credentials at all (HTTP 403)
    "IncompleteSignatureException": CKR.ARGUMENTS_BAD,  # a malformed Authorization header or date
    "UnrecognizedClientException": CKR.PIN_INCORRECT,  # an access key id the control plane never issued
    "InvalidSignatureException": CKR.PIN_INCORRECT,  # a wrong signature, an expired date or a foreign scope
}


class SignatureError(AuthError):
    """A request whose signature does not check out.

    Args:
        code: the error name AWS answers with (the JSON ``__type``); it decides ``ckr``:
            ``MissingAuthenticationTokenException`` is ``CKR_USER_NOT_LOGGED_IN`` (HTTP 403),
            ``IncompleteSignatureException`` ``CKR_ARGUMENTS_BAD``, ``UnrecognizedClientException`` and
            ``InvalidSignatureException`` ``CKR_PIN_INCORRECT`` (HTTP 400).
        message: the answer's ``Message``.
    """

    def __init__(self, code: str, message: str) -> None:
        self.ckr = _CKR_BY_CODE.get(code, CKR.GENERAL_ERROR)
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Credential:
    """What the signer claims: the access key id and the scope of the signing key."""

    access_key_id: str
    date: str  # YYYYMMDD
    region: str
    service: str


def sha256_hex(data: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize().hex()


def _hmac(key: bytes, message: str) -> bytes:
    mac = crypto_hmac.HMAC(key, hashes.SHA256())
    mac.update(message.encode("utf-8"))
    return mac.finalize()


def signing_key(secret_access_key: str, credential: Credential) -> bytes:
    """The derived key of the scope: HMAC chain over date, region, service and ``aws4_request``."""
    key = _hmac(("AWS4" + secret_access_key).encode("utf-8"), credential.date)
    for part in (credential.region, credential.service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _canonical_query(query: str) -> str:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    encoded = [(urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~")) for k, v in pairs]
    return "&".join(f"{k}={v}" for k, v in sorted(encoded))


def canonical_request(method: str, path: str, query: str, headers: Mapping[str, str], signed: list[str],
                      body: bytes) -> str:
    """The canonical request: method, URI-encoded path, sorted query, the signed headers (lower-case names,
    values with runs of spaces folded), their names, and the body's SHA-256 in hex."""
    lines = [method.upper(), urllib.parse.quote(path or "/", safe="/-_.~"), _canonical_query(query)]
    lines += [f"{name}:{' '.join(headers.get(name, '').split())}" for name in signed]
    return "\n".join([*lines, "", ";".join(signed), sha256_hex(body)])


def parse_authorization(value: str) -> tuple[Credential, list[str], str]:
    """The credential, the signed header names and the signature (hex) of an ``Authorization`` header.

    Raises:
        SignatureError: ``IncompleteSignatureException`` for a malformed header.
    """
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError("IncompleteSignatureException", f"Unsupported signature algorithm {algorithm!r:.40}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, _, val = part.strip().partition("=")
        fields[name] = val
    try:
        scope = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except KeyError as exc:
        raise SignatureError("IncompleteSignatureException",
                             f"Authorization header requires '{exc.args[0]}' parameter") from None
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise SignatureError("IncompleteSignatureException", "Credential should be scoped to a valid region")
    return Credential(*scope[:4]), signed, signature


def verify(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
           secret_for: Callable[[str], str | None], *, now: datetime.datetime | None = None,
           signed_required: tuple[str, ...] = ()) -> Credential:
    """Check a SigV4-signed request and return its credential.

    Args:
        headers: the request's headers with lower-case names.
        secret_for: the secret access key of an access key id, or ``None`` for an unknown one.
        now: the server's time (UTC), for the clock-skew check.
        signed_required: headers (lower-case) the signature must cover besides ``host`` (e.g. the operation's
            ``x-amz-target``, so that a captured request cannot be sent again as another operation).

    Raises:
        SignatureError: ``MissingAuthenticationTokenException`` without an Authorization header,
            ``IncompleteSignatureException`` for a malformed one, ``UnrecognizedClientException`` for an unknown
            access key, ``InvalidSignatureException`` for a wrong signature (wrong secret, altered body or header)
            or a date outside the allowed skew.
    """
    authorization = headers.get("authorization")
    if not authorization:
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    credential, signed, signature = parse_authorization(authorization)
    for name in ("host", *signed_required):
        if name not in signed:
            raise SignatureError("InvalidSignatureException", f"'{name}' must be a signed header")
    amz_date = headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        raise SignatureError("IncompleteSignatureException", "X-Amz-Date is missing or malformed") from None
    now = now or datetime.datetime.now(datetime.UTC)
    if abs(now - when) > MAX_SKEW:
        raise SignatureError("InvalidSignatureException",
                             f"Signature expired: {amz_date} is now earlier or later than the allowed window")
    if credential.date != amz_date[:8] or credential.service != SERVICE:  # before the secret is looked up
        raise SignatureError("InvalidSignatureException",
                             f"Credential should be scoped to service '{SERVICE}' and the request date")
    secret = secret_for(credential.access_key_id)
    if secret is None:
        raise SignatureError("UnrecognizedClientException", "The security token included in the request is invalid.")
    canonical = canonical_request(method, path, query, headers, signed, body)
    scope = "/".join((credential.date, credential.region, credential.service, "aws4_request"))
    to_sign = "\n".join((ALGORITHM, amz_date, scope, sha256_hex(canonical.encode("utf-8"))))
    expected = _hmac(signing_key(secret, credential), to_sign).hex()
    if not stdlib_hmac.compare_digest(expected, signature):
        raise SignatureError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.")
    return credential


def sign(method: str, url: str, headers: dict[str, str], body: bytes, access_key_id: str, secret_access_key: str,
         region: str, *, now: datetime.datetime | None = None) -> dict[str, str]:
    """The headers of a request signed with SigV4 for the ``cloudhsm`` service (``Host``, ``X-Amz-Date`` and
    ``Authorization`` added to ``headers``); every given header is signed."""
    parts = urllib.parse.urlsplit(url)
    now = now or datetime.datetime.now(datetime.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    signed_headers = {**{k.lower(): v for k, v in headers.items()}, "host": parts.netloc, "x-amz-date": amz_date}
    names = sorted(signed_headers)
    credential = Credential(access_key_id, amz_date[:8], region, SERVICE)
    canonical = canonical_request(method, parts.path or "/", parts.query, signed_headers, names, body)
    scope = "/".join((credential.date, region, SERVICE, "aws4_request"))
    to_sign = "\n".join((ALGORITHM, amz_date, scope, sha256_hex(canonical.encode("utf-8"))))
    signature = _hmac(signing_key(secret_access_key, credential), to_sign).hex()
    return {**headers, "Host": parts.netloc, "X-Amz-Date": amz_date,
            "Authorization": f"{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={';'.join(names)}, "
                             f"Signature={signature}"}
