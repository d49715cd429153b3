"""An exclusive lock on a file for the life of a process (``flock(2)``), the guard of a data directory."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


def hold_lock(path: Path) -> IO[str] | None:
    """An exclusive lock on ``path`` for this process's life: the open file (closing it releases the lock), or
    ``None`` when another process (or another open handle here) holds it. The file is mode 0600: a user who
    could open it could hold the lock and keep the directory's owner from starting."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if os.fstat(fd).st_uid == os.getuid():
        os.fchmod(fd, 0o600)  # a lock file an earlier version made readable by everyone
    handle = os.fdopen(fd, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle
