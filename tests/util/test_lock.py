"""The data directory's lock file: only its owner may open it (whoever can open it can hold the lock and keep
the directory's owner from starting)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from strongroom.util.lock import hold_lock


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_lock_file_is_made_0600_and_an_older_open_one_is_closed_to_others(tmp_path):
    old = os.umask(0o022)
    try:
        fresh = hold_lock(tmp_path / "up.lock")
        assert fresh is not None and _mode(tmp_path / "up.lock") == 0o600
        fresh.close()
        earlier = tmp_path / "control.lock"
        earlier.write_text("")
        earlier.chmod(0o644)  # as an earlier version left it
        held = hold_lock(earlier)
        assert held is not None and _mode(earlier) == 0o600
        held.close()
    finally:
        os.umask(old)


def test_another_user_cannot_take_the_lock():
    """An outsider (nobody) who could open the file would flock it and stop strongroom up from starting."""
    if os.getuid() != 0:
        pytest.skip("acting as another user needs root")
    folder = Path(tempfile.mkdtemp(prefix="lock-"))  # in /tmp, which everyone may enter
    folder.chmod(0o755)  # open to all, as a data directory of an earlier version was
    path = folder / "up.lock"
    old = os.umask(0o022)
    try:
        hold_lock(path).close()
    finally:
        os.umask(old)

    def nobody() -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    probe = "import sys\ntry:\n    open(sys.argv[1])\nexcept PermissionError:\n    print('refused')\n"
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    try:
        done = subprocess.run([python, "-I", "-c", probe, str(path)], capture_output=True, text=True, timeout=30,
                              preexec_fn=nobody, cwd="/")
        assert done.stdout.strip() == "refused", done.stderr
        assert hold_lock(path) is not None  # the owner still takes it
    finally:
        shutil.rmtree(folder)
