"""The log of a Strongroom service process (an HSM node, the client agent): standard error, one line a record.

Refusals are logged at ``INFO``: the call, the ``CKR_*`` name and the reason (the error's message), so an
operator reads why an application was refused. Messages never hold a PIN, a password or key material.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def to_stderr(level: int = logging.INFO) -> None:
    """Send the process's log records of ``level`` and above to standard error (once per process).

    Args:
        level: the lowest ``logging`` level written; ``INFO`` shows every refusal.
    """
    root = logging.getLogger()
    if any(getattr(handler, "strongroom", False) for handler in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.strongroom = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
