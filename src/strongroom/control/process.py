"""Running a control plane: its records, identity, first access key, HSM provider, worker and HTTP server.

Layout of its directory (``strongroom control --dir``): ``state.db`` (SQLite, unless a database URL is given),
``appliance.crt``/``appliance.key`` (its identity towards HSMs, issued from the fleet on first start),
``credentials.json`` (mode 0600: the first access key), ``hsms/`` (local HSM data directories) and
``clusters/`` (each cluster's trust anchor, read by joining HSMs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StrongroomError
from ..trust.fleet import issue_appliance
from ..util import lock as file_lock
from ..vocab import CKR
from .appliance import Appliance
from .cloudhsmv2 import ControlPlane
from .lifecycle import Lifecycle
from .provider import LocalProvider
from .records import AccessKey, Store

_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass
class Settings:
    """How to run a control plane.

    Attributes:
        folder: its directory (see the module's docstring).
        fleet: the fleet directory (the local provider provisions HSM identities from it).
        listen: ``HOST:PORT`` of the HTTP API (port 0: any free port).
        database_url: a SQLAlchemy URL; ``sqlite:///<folder>/state.db`` if empty.
        region: the region it answers for.
        node_args: extra options for every ``strongroom node`` it starts.
    """

    folder: Path
    fleet: Path
    listen: str = "127.0.0.1:8080"
    database_url: str = ""
    region: str = "us-east-1"
    node_args: tuple[str, ...] = ()


class AlreadyRunning(StrongroomError):
    """``CKR_FUNCTION_FAILED``: another process holds the directory (its lock file)."""

    ckr = CKR.FUNCTION_FAILED


def hold_lock(path: Path, what: str) -> Any:
    """An exclusive lock on ``path`` for this process's life (the open file; closing it releases the lock).

    Raises:
        AlreadyRunning: another process holds it.
    """
    handle = file_lock.hold_lock(path)
    if handle is None:
        raise AlreadyRunning(f"{what} already runs on {path.parent}")
    return handle


def _first_access_key(store: Store, folder: Path, region: str) -> Path:
    """Issue the first access key unless one exists; it is written to ``credentials.json`` (0600)."""
    path = folder / "credentials.json"
    with store.session() as session:
        if session.query(AccessKey).first() is not None and path.exists():
            return path
        key = AccessKey(access_key_id="AKIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16)),
                        secret_access_key=secrets.token_urlsafe(30)[:40])
        session.add(key)
        credentials = {"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key,
                       "region": region}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(credentials, fh, indent=2)
    return path


def _appliance(folder: Path, fleet: Path) -> Appliance:
    certificate, key = folder / "appliance.crt", folder / "appliance.key"
    if not certificate.exists():
        issue_appliance(fleet / "fleet-ca.crt", fleet / "fleet-ca.key", key, certificate)
    return Appliance(certificate, key, fleet / "fleet-ca.crt")


def run(settings: Settings, ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then stop the worker and every HSM process it started.

    ``ready`` is called with ``{"url", "credentials"}`` once the API accepts requests.
    """
    import uvicorn

    from .api import make_app

    folder = Path(settings.folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)  # it holds the API's secrets and the appliance key
    lock = hold_lock(folder / "lock", "a control plane")
    store = Store(settings.database_url or f"sqlite:///{folder / 'state.db'}")
    if (folder / "state.db").exists():
        (folder / "state.db").chmod(0o600)
    credentials = _first_access_key(store, folder, settings.region)
    provider = LocalProvider(folder / "hsms", settings.fleet, settings.node_args)
    lifecycle = Lifecycle(store, provider, _appliance(folder, settings.fleet), folder / "clusters")
    control = ControlPlane(store, settings.region, lifecycle)
    host, _, port = settings.listen.rpartition(":")
    sock = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), int(port)))
    bound = sock.getsockname()
    server = uvicorn.Server(uvicorn.Config(make_app(control), log_level="warning", lifespan="off"))
    # Our own signal handling: uvicorn's raises the signal again once it has stopped, which would end this
    # process before it stops the HSMs it started.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        original = server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets=sockets)
            if ready is not None:
                ready({"url": f"http://{host}:{bound[1]}", "credentials": str(credentials)})

        server.startup = startup  # type: ignore[method-assign]
        await server.serve(sockets=[sock])

    lifecycle.start()
    try:
        asyncio.run(serve())
    finally:
        lifecycle.stop()
        provider.stop_all()
        store.close()
        lock.close()
