"""Running a control plane: its records, identity, first access key, HSM provider, worker and HTTP server.

Layout of its directory (``strongroom control --dir``, mode 0700, every file 0600): ``state.db`` (SQLite, unless
a database URL is given; with its ``-wal`` and ``-shm``), ``sealing.key`` (the key its secrets are sealed under),
``appliance.crt``/``appliance.key`` (its identity towards HSMs, issued from the fleet on first start),
``credentials.json`` (the first access key), ``tls-ca.crt``/``tls-ca.key`` and ``tls-server.crt``/``.key`` (the
API's own CA and certificate, when it is given none), ``hsms/`` (local HSM data directories) and ``clusters/``
(each cluster's trust anchor, read by joining HSMs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StrongroomError
from ..trust.ca import CertificateAuthority
from ..trust.fleet import issue_appliance
from ..util import lock as file_lock
from ..vocab import CKR
from . import access_keys, server
from .appliance import Appliance
from .cloudhsmv2 import ControlPlane
from .lifecycle import Lifecycle
from .provider import LocalProvider
from .records import AccessKey, Store
from .sealed import SealingKey


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
        tls_certificate, tls_key: the API's certificate chain and key (PEM); without them it issues itself one
            from a CA it makes in ``folder`` (``tls-ca.crt``, for clients to verify).
        plain_http: serve plain HTTP instead (a loopback ``listen`` address only).
        header_timeout_s, body_timeout_s: how long a client may take to send a request's headers, and its body.
    """

    folder: Path
    fleet: Path
    listen: str = "127.0.0.1:8080"
    database_url: str = ""
    region: str = "us-east-1"
    node_args: tuple[str, ...] = ()
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    plain_http: bool = False
    header_timeout_s: float = server.HEADER_TIMEOUT_S
    body_timeout_s: float = 30.0


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


def _first_access_key(store: Store, sealing: SealingKey, folder: Path, region: str) -> Path:
    """Issue the first access key unless one exists; it is written to ``credentials.json`` (0600)."""
    path = folder / "credentials.json"
    with store.session() as session:
        if session.query(AccessKey).first() is not None and path.exists():
            return path
    key = access_keys.create(store, sealing)
    credentials = {"access_key_id": key["access_key_id"], "secret_access_key": key["secret_access_key"],
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


def _own_tls(folder: Path, host: str) -> server.Tls:
    """The API's certificate from its own CA (made once; the certificate is issued anew at each start, for the
    address it listens on)."""
    if not (folder / "tls-ca.key").exists():
        CertificateAuthority(folder, "tls-ca", days=3650)
    ca = CertificateAuthority.load(folder, "tls-ca")
    hosts = ["localhost", "127.0.0.1", "::1"]
    bare = host.strip("[]")
    if bare in ("", "0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
        hosts.append(socket.gethostname())
    elif bare not in hosts:
        hosts.append(bare)
    issued = ca.issue("tls-server", server=True, hosts=tuple(hosts))
    return server.Tls(issued.cert, issued.key)


def open_store(folder: Path, database_url: str = "") -> tuple[Store, SealingKey]:
    """The records and the sealing key of the control plane in ``folder`` (the key made on first use)."""
    sealing = SealingKey.load(folder, create=True)
    store = Store(database_url or f"sqlite:///{folder / 'state.db'}")
    access_keys.seal_clear_secrets(store, sealing)
    return store, sealing


def run(settings: Settings, ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then stop the worker and every HSM process it started.

    ``ready`` is called with ``{"url", "credentials"}`` (and ``"ca"``, the CA to verify the API with, when it
    issued its own certificate) once the API accepts requests.

    Raises:
        AlreadyRunning: another control plane holds the directory.
        server.NotLoopback: plain HTTP asked for on an address that is not loopback.
    """
    import uvicorn

    from .api import make_app

    host, _, port = settings.listen.rpartition(":")
    if settings.plain_http and not server.is_loopback(host):
        raise server.NotLoopback(f"plain HTTP is served on a loopback address only, not on {host!r:.60}")
    os.umask(0o077)  # every file it and its HSMs write is private: secrets, keys, records
    # Paths are resolved here, where it runs: HSM processes start in other folders, and the records store paths
    # relative to the directory (a copy of it runs on its own data).
    folder = Path(settings.folder).resolve()
    fleet = Path(settings.fleet).resolve()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)  # it holds the API's secrets and the appliance key
    lock = hold_lock(folder / "lock", "a control plane")
    store, sealing = open_store(folder, settings.database_url)
    credentials = _first_access_key(store, sealing, folder, settings.region)
    tls: server.Tls | None = None
    info: dict[str, Any] = {"credentials": str(credentials)}
    if settings.tls_certificate is not None and settings.tls_key is not None:
        tls = server.Tls(settings.tls_certificate, settings.tls_key)
    elif not settings.plain_http:
        tls = _own_tls(folder, host)
        info["ca"] = str(folder / "tls-ca.crt")
    provider = LocalProvider(folder / "hsms", fleet, settings.node_args)
    lifecycle = Lifecycle(store, provider, _appliance(folder, fleet), folder / "clusters", sealing)
    control = ControlPlane(store, settings.region, lifecycle, sealing=sealing)
    sock = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), int(port)))
    bound = sock.getsockname()
    config = server.config(make_app(control, body_timeout_s=settings.body_timeout_s), tls=tls, host=host,
                           header_timeout_s=settings.header_timeout_s)
    api_server = uvicorn.Server(config)
    # Our own signal handling: uvicorn's raises the signal again once it has stopped, which would end this
    # process before it stops the HSMs it started.
    api_server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(api_server, "should_exit", True))
        original = api_server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets=sockets)
            if ready is not None:
                ready({"url": f"{'https' if tls else 'http'}://{host}:{bound[1]}", **info})

        api_server.startup = startup  # type: ignore[method-assign]
        await api_server.serve(sockets=[sock])

    lifecycle.start()
    try:
        asyncio.run(serve())
    finally:
        lifecycle.stop()
        provider.stop_all()
        store.close()
        lock.close()
