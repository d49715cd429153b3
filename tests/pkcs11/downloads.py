"""What a test does when a download it needs (Debian packages, a PyPI source distribution) fails.

Such tests carry the ``network`` marker (``pytest -m "not network"`` leaves them out). Offline they skip; with
``CI`` set in the environment they fail instead, so a green CI run has run them.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unreachable(reason: str) -> NoReturn:
    """Skip the running test for ``reason``, or fail it when ``CI`` is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: a download that fails is a failure)")
    pytest.skip(reason)
