"""A small client of the control plane's API for Strongroom's own tools (``strongroom up``): AWS JSON 1.1 over
HTTPS with SigV4, as boto3 sends it, with no AWS library needed. Each request signs a fresh
``amz-sdk-invocation-id``, as AWS SDKs do, so two identical calls are two requests, not a replay."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import StrongroomError
from . import sigv4
from .api import CONTENT_TYPE, TARGET_PREFIX
from .api_errors import BY_CODE


class ControlError(StrongroomError):
    """An error the API answered.

    Args:
        code: the answer's ``__type`` (``HTTP <status>`` for an answer without one); ``ckr`` and ``retryable``
            are those of the API's error class of that name (:data:`~.api_errors.BY_CODE`), else
            ``CKR_GENERAL_ERROR`` and not retryable.
        message: the answer's ``Message``.
    """

    def __init__(self, code: str, message: str) -> None:
        known = BY_CODE.get(code)
        if known is not None:
            self.ckr, self.retryable = known.ckr, known.retryable
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ControlClient:
    """A client of one control plane.

    Attributes:
        url: the API's base URL (``https://HOST:PORT``, as the control plane prints it when it serves).
        access_key_id, secret_access_key: an access key the control plane issued (``credentials.json``).
        region: the region the control plane answers for (the SigV4 scope).
        ca_file: the CA (PEM file) the API's certificate is verified with; the system's CAs when empty.
        timeout_s: how long one call may take, in seconds.
    """

    url: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"
    ca_file: str = ""
    timeout_s: float = 60.0

    def call(self, operation: str, **members: Any) -> dict[str, Any]:
        """Run one operation (e.g. ``call("DescribeClusters", Filters={...})``) and return its output.

        Raises:
            ControlError: what the API answered with an error.
            OSError: the API could not be reached.
        """
        body = json.dumps(members).encode()
        headers = sigv4.sign("POST", self.url.rstrip("/") + "/", {
            "Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation,
            "amz-sdk-invocation-id": str(uuid.uuid4())}, body, self.access_key_id, self.secret_access_key, self.region)
        context = ssl.create_default_context(cafile=self.ca_file or None)
        # The URL is the control plane's own (its ready line, or cluster.json), not a caller's input.
        request = urllib.request.Request(  # noqa: S310
            self.url.rstrip("/") + "/", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=context) as answer:  # noqa: S310
                output: dict[str, Any] = json.loads(answer.read() or b"{}")
                return output
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())
            except ValueError:
                error = {}
            raise ControlError(error.get("__type", f"HTTP {exc.code}"), error.get("Message", "")) from None
