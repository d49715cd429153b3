"""The control plane's HTTP face: the AWS JSON 1.1 protocol of the ``cloudhsmv2`` service, for boto3 and the CLI.

A request is ``POST /`` with ``X-Amz-Target: BaldrApiService.<Operation>``, ``Content-Type:
application/x-amz-json-1.1``, a JSON object body and a SigV4 signature (signing name ``cloudhsm``) by an access
key the control plane issued and still holds active; a changing request is accepted once (:mod:`.replay`). A
success is HTTP 200 with the output members as JSON; an error is answered with
``{"__type": <exception name>, "Message": …}`` and the HTTP status of its ``CKR_*`` in
:data:`strongroom.errors.OUTCOMES` (400; 403 without credentials; 500 for an internal failure).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import http_status
from . import access_keys, replay, sigv4
from .api_errors import ApiError, InternalFailure, RequestTimeout, SerializationError, UnknownOperation
from .cloudhsmv2 import OPERATIONS, ControlPlane, changes_state

log = logging.getLogger("strongroom.control")

TARGET_PREFIX = "BaldrApiService."
CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_BODY_BYTES = 1024 * 1024
BODY_TIMEOUT_S = 30.0


def _answer(body: dict[str, Any], status: int = 200) -> Response:
    return JSONResponse(body, status_code=status, media_type=CONTENT_TYPE,
                        headers={"x-amzn-RequestId": str(uuid.uuid4())})


def _error(exc: ApiError | sigv4.SignatureError) -> Response:
    return _answer({"__type": exc.code, "Message": exc.message}, http_status(exc))


async def _limited_body(request: Request, timeout_s: float) -> bytes:
    """The body, read only up to ``MAX_BODY_BYTES`` and within ``timeout_s`` seconds (an unsigned request cannot
    make the server hold more, or hold it longer).

    Raises:
        SerializationError: for a longer body.
        RequestTimeout: the body did not arrive in time.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise SerializationError(f"the body is over {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise SerializationError(f"the body is over {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout_s)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
    return b"".join(chunks)


def make_app(control: ControlPlane, *, body_timeout_s: float = BODY_TIMEOUT_S) -> Starlette:
    """The ASGI application serving ``control``'s operations (its access keys open under ``control.sealing``)."""

    def authenticate(request: Request, headers: dict[str, str], body: bytes) -> sigv4.Credential:
        found: list[access_keys.Secret] = []

        def secret_for(access_key_id: str) -> str | None:
            key = access_keys.secret(control.store, control.sealing, access_key_id)
            if key is None:
                return None
            found.append(key)
            return key.secret_access_key

        credential = sigv4.verify(request.method, request.url.path, request.url.query, headers, body, secret_for,
                                  signed_required=("x-amz-target",))
        if not found[0].active:  # told only to a caller who holds the secret
            raise sigv4.SignatureError(
                "UnrecognizedClientException",
                f"The access key {credential.access_key_id} is inactive: an administrator deactivated it.")
        return credential

    async def endpoint(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = await _limited_body(request, body_timeout_s)
            try:
                credential = await asyncio.to_thread(authenticate, request, headers, body)
            except sigv4.SignatureError as exc:
                return _error(exc)
            if credential.region != control.region:
                return _error(sigv4.SignatureError(
                    "InvalidSignatureException",
                    f"Credential should be scoped to a valid region, not '{credential.region[:40]}'. This endpoint "
                    f"serves '{control.region}'."))
            if not headers.get("content-type", "").startswith("application/x-amz-json-1."):
                raise SerializationError(f"Content-Type must be {CONTENT_TYPE}")
            target = headers.get("x-amz-target", "")
            name = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
            if name not in OPERATIONS:
                raise UnknownOperation(f"the operation {target!r:.80} is not known")
            try:
                members = json.loads(body or b"{}")
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise SerializationError("the body is not JSON (or is nested too deeply)") from None
            if not isinstance(members, dict):
                raise SerializationError("the body must be a JSON object")
            if changes_state(name):
                signed_at = datetime.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(
                    tzinfo=datetime.UTC)
                try:
                    await asyncio.to_thread(replay.accept_once, control.store, headers["authorization"], signed_at)
                except sigv4.SignatureError as exc:
                    return _error(exc)
            return _answer(await asyncio.to_thread(control.call, name, members))
        except ApiError as exc:
            return _error(exc)
        except Exception:  # an answer for the client; the details stay in the control plane's log
            log.exception("operation failed")
            return _error(InternalFailure("an internal error occurred; retry"))

    return Starlette(routes=[Route("/", endpoint, methods=["POST"])])
