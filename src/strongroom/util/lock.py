"""An exclusive lock on a file for the life of a process (``flock(2)``), the guard of a data directory."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO


def hold_lock(path: Path) -> IO[str] | None:
    """An exclusive lock on ``path`` for this process's life: the open file (closing it releases the lock), or
    ``None`` when another process (or another open handle here) holds it."""
    handle = open(path, "a+")  # noqa: SIM115 - the open file is the lock, held after this returns
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle
