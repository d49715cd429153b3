"""A throwaway PostgreSQL server for the control plane's records (Debian's ``postgresql`` package).

Started in a temporary directory on a free loopback port with trust authentication, as the ``postgres`` user
when the suite runs as root (PostgreSQL refuses to run as root), and stopped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """Yields a SQLAlchemy URL (``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``).

    Raises:
        FileNotFoundError: without Debian's PostgreSQL binaries.
    """
    if BIN is None:
        raise FileNotFoundError("no /usr/lib/postgresql/*/bin: install Debian's postgresql")
    folder = Path(tempfile.mkdtemp(prefix="strongroom-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    data, port = folder / "data", _free_port()
    subprocess.run(_as_server_user([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                    "--no-sync"]), check=True, capture_output=True, timeout=120)
    server = subprocess.Popen(_as_server_user([str(BIN / "postgres"), "-D", str(data), "-p", str(port),
                                               "-h", "127.0.0.1", "-k", str(folder), "-F"]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the throwaway PostgreSQL server did not start")
            time.sleep(0.2)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(folder, ignore_errors=True)
