"""A small client of the control plane's API for Strongroom's own tools (``strongroom up``): AWS JSON 1.1 over
HTTP with SigV4, as boto3 sends it, with no AWS library needed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from . import sigv4
from .api import CONTENT_TYPE, TARGET_PREFIX


class ControlError(Exception):
    """An error the API answered: ``code`` is its ``__type``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ControlClient:
    url: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"
    timeout_s: float = 60.0

    def call(self, operation: str, **members: Any) -> dict[str, Any]:
        """Run one operation (e.g. ``call("DescribeClusters", Filters={...})``) and return its output.

        Raises:
            ControlError: what the API answered with an error.
            OSError: the API could not be reached.
        """
        body = json.dumps(members).encode()
        headers = sigv4.sign("POST", self.url.rstrip("/") + "/", {"Content-Type": CONTENT_TYPE,
                                                                   "X-Amz-Target": TARGET_PREFIX + operation},
                             body, self.access_key_id, self.secret_access_key, self.region)
        request = urllib.request.Request(self.url.rstrip("/") + "/", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())
            except ValueError:
                error = {}
            raise ControlError(error.get("__type", f"HTTP {exc.code}"), error.get("Message", "")) from None
