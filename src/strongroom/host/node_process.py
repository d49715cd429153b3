"""An HSM node's process: prepare or open its data directory, join a cluster if asked, serve until signalled.

``strongroom init-node`` and ``strongroom node`` (:mod:`strongroom.cli.service`) parse their options and call
:func:`initialize` and :func:`run`; what they cannot do raises :class:`StartupError`, which names the option at
fault when one is. Once listening, :func:`run` prints one JSON line (``{"listening": "HOST:PORT", "raft": …}``)
on standard output, which the control plane's provider, ``strongroom up`` and the tests read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..errors import StrongroomError
from ..node.boundary import HSM, Settings
from ..util.address import host_port
from ..vocab import CKR

_log = logging.getLogger("strongroom.node")


class StartupError(StrongroomError):
    """``CKR_FUNCTION_FAILED``: the node cannot start as asked.

    Attributes:
        option: the command-line option at fault (``"--listen"``), or ``None`` when the cause lies elsewhere.
    """

    ckr = CKR.FUNCTION_FAILED

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class NodeOptions:
    """How to run a node (the options of ``strongroom node``, which documents each)."""

    data_dir: Path
    listen: str = "127.0.0.1:2225"
    raft_listen: str | None = None
    peers: str = ""
    join_config: str | None = None
    join_pin: str | None = None
    join_role: str = "admin"
    advertise: str | None = None
    log_compaction_entries: int = 20_000
    managed: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    client_ca: str | None = None
    idle_timeout_s: float = 600.0
    read_timeout_s: float = 30.0
    password_hash_memory_kib: int = 65536


def settings_for(password_hash_memory_kib: int) -> Settings:
    """Node settings with this argon2id memory cost (RFC 9106: 3 passes from 64 MiB, else 1)."""
    return Settings(argon2_memory_kib=password_hash_memory_kib,
                    argon2_time_cost=3 if password_hash_memory_kib >= 65536 else 1)


def _address(text: str, option: str, *, any_port: bool = True) -> tuple[str, int]:
    try:
        return host_port(text, any_port=any_port)
    except ValueError as exc:
        raise StartupError(str(exc), option) from None


def _described(exc: StrongroomError) -> StartupError:
    return StartupError(f"{exc.message} ({exc.ckr_name})")


def initialize(data_dir: Path, *, cluster_id: str | None, cluster_key: bool, password_hash_memory_kib: int,
               initial_password_file: Path | None = None, mode: str = "FIPS") -> dict[str, str]:
    """Initialise an HSM node in ``data_dir`` (node key, masking key, the unactivated admin with a random initial
    password, written to ``initial_password_file`` when given) founding a cluster of ``mode`` (``FIPS`` or
    ``NON_FIPS``); return ``{"data_dir", "cluster_id", "serial", "mode"}``.

    Raises:
        StartupError: the HSM refused (``DeviceError`` for a directory that already holds a node, …).
    """
    from ..store import Store

    try:
        HSM.initialize(data_dir, cluster_id=cluster_id, settings=settings_for(password_hash_memory_kib), open=False,
                       cluster_key=cluster_key, initial_password_file=initial_password_file, mode=mode)
        store = Store(data_dir / "hsm.sqlite")
        cluster_id, serial = ((store.get_setting(n) or b"").decode() for n in ("cluster_id", "serial"))
        store.close()
    except StrongroomError as exc:
        raise _described(exc) from None
    return {"data_dir": str(data_dir), "cluster_id": cluster_id, "serial": serial, "mode": mode}


def run(options: NodeOptions) -> None:
    """Run one HSM node until SIGTERM or SIGINT: open (or, with ``join_config``, first join) its data directory,
    serve it over TLS 1.3 and take part in the cluster's replicated log.

    Raises:
        StartupError: a bad option, a port in use, a data directory of another cluster, a refused join, …
    """
    from ..replication import RaftLog
    from ..replication.log import REMOVED_MARKER
    from ..trust.fleet import Identity
    from ..trust.fleet_tls import replication_tls

    data_dir = options.data_dir
    host, port = _address(options.listen, "--listen")
    raft_address = _raft_address(data_dir, host, port, options.raft_listen)
    if options.advertise is not None:
        _address(options.advertise, "--advertise", any_port=False)
    peer_list = [p.strip() for p in options.peers.split(",") if p.strip()]
    for peer in peer_list:
        _address(peer, "--peers", any_port=False)

    def replication(members: list[str], joining: bool = False) -> Any:
        # A node with a fleet identity replicates over mutual TLS with it (read when the log starts: a joining
        # node is provisioned before it runs).
        def log(machine: Any, secret: bytes) -> RaftLog:
            tls = replication_tls(Identity.load(data_dir)) if Identity.present(data_dir) else None
            return RaftLog(machine, data_dir / "raft", raft_address, members, secret,
                           compaction_entries=options.log_compaction_entries, joining=joining, tls=tls,
                           on_removed=lambda: os.kill(os.getpid(), signal.SIGTERM))  # removed: the process ends
        return log

    if (data_dir / "raft" / REMOVED_MARKER).exists():
        raise StartupError(f"this HSM was removed from its cluster ({data_dir / 'raft' / REMOVED_MARKER}): it "
                           "does not start again; join a new, provisioned data directory instead", "--data-dir")

    settings = settings_for(options.password_hash_memory_kib)
    if not options.managed and (options.cert_file is None or options.key_file is None):
        raise StartupError("a node needs its TLS certificate and key (or --managed)", "--cert/--key")
    if not options.managed and options.client_ca is None:
        raise StartupError("a node needs the CA its clients' certificates chain to (mutual TLS)", "--client-ca")
    hsm: HSM
    try:
        ctx = _server_context(options)
        has_hsm = (data_dir / "hsm.sqlite").exists()
        if options.join_config is not None and has_hsm:
            _check_same_cluster(data_dir, options.join_config)
        if options.join_config is not None and not has_hsm:
            if options.join_pin is None and not options.managed:
                raise StartupError("joining needs the credentials of an admin", "--join-pin-file")
            # Both ports must be free before the cluster takes this node in: a member that cannot start
            # would count against the cluster's majority.
            _check_bindable(host, port, "--listen")
            _check_bindable(*_address(raft_address, "--raft-listen"), "--raft-listen")
            cluster_id, masking_key, members = _join(data_dir, options.join_config, options.join_pin,
                                                     options.join_role, raft_address)
            hsm = cast(HSM, HSM.initialize(  # it opens the node it makes (open=True)
                data_dir, cluster_id=cluster_id, masking_key=masking_key, settings=settings,
                replication=replication([m for m in members if m != raft_address], joining=True)))
        else:
            hsm = HSM(data_dir, settings=settings, replication=replication(peer_list))
    except (OSError, ValueError) as exc:
        raise StartupError(str(exc)) from None
    except StrongroomError as exc:
        raise _described(exc) from None

    stop = threading.Event()

    def publish(endpoint: str) -> None:
        hsm.publish_endpoint(raft_address, options.advertise or endpoint, stop)

    every_second = None
    if options.managed:
        tls_host = (options.advertise or options.listen).rpartition(":")[0].strip("[]") or "127.0.0.1"
        every_second = _tls_refresher(hsm, ctx, data_dir, tls_host, options.client_ca)
        try:  # a restarted HSM of an initialised cluster serves its owner's clients from the start
            every_second()
        except Exception:  # tried again every second
            _log.exception("TLS refresh failed")
    try:
        serve(hsm, ctx, host, int(port), announce={"raft": raft_address}, on_listening=publish,
              every_second=every_second, idle_timeout_s=options.idle_timeout_s,
              read_timeout_s=options.read_timeout_s)
    finally:
        stop.set()


def _server_context(options: NodeOptions) -> ssl.SSLContext:
    """The node's TLS context; every client must present a certificate (:mod:`strongroom.protocol.tls`).

    A hand-assembled node trusts ``--client-ca`` and, when provisioned, its fleet CA (joining HSMs present their
    fleet identity); a managed node is :func:`_managed_context`."""
    from ..protocol.tls import server_context
    from ..trust.fleet import FLEET_CA

    if options.managed:
        return _managed_context(options.data_dir, options.client_ca)
    if options.cert_file is None or options.key_file is None:
        raise StartupError("a node needs its TLS certificate and key (or --managed)", "--cert/--key")
    if options.client_ca is None:
        raise StartupError("a node needs the CA its clients' certificates chain to (mutual TLS)", "--client-ca")
    fleet_ca = options.data_dir / FLEET_CA
    return server_context(options.cert_file, options.key_file,
                          [options.client_ca, *([fleet_ca] if fleet_ca.is_file() else [])])


def _managed_context(data_dir: Path, client_ca: str | None, cluster_key: bytes | None = None) -> ssl.SSLContext:
    """The TLS context of a managed HSM: its certificate under the cluster key once it has one, or the cluster
    certificate itself with ``cluster_key`` (PEM, loaded from a memory file: it never reaches the disk), else its
    fleet identity. Clients: the fleet CA (the control plane's appliance identity, joining HSMs) and
    ``client_ca``; once the cluster is initialised also the owner's trust anchor and the registered client CAs,
    which :func:`_tls_refresher` follows (before ``InitializeCluster`` only the fleet may talk)."""
    from ..protocol.tls import server_context
    from ..trust.cluster_certificate import TLS_CERT, TLS_KEY
    from ..trust.fleet import FLEET_CA, IDENTITY_CERT, IDENTITY_KEY

    clients: list[Path | str] = [data_dir / FLEET_CA, *([client_ca] if client_ca is not None else [])]
    if cluster_key is not None:
        memory = os.memfd_create("cluster-key")
        try:
            os.write(memory, cluster_key)
            return server_context(data_dir / TLS_CERT, Path(f"/proc/self/fd/{memory}"), clients)
        finally:
            os.close(memory)
    issued = (data_dir / TLS_CERT).is_file() and (data_dir / TLS_KEY).is_file()
    cert, key = (data_dir / TLS_CERT, data_dir / TLS_KEY) if issued else (data_dir / IDENTITY_CERT,
                                                                         data_dir / IDENTITY_KEY)
    return server_context(cert, key, clients)


def _tls_refresher(hsm: HSM, ctx: ssl.SSLContext, data_dir: Path, host: str,
                   client_ca: str | None) -> Callable[[], None]:
    """A check (run every second, and once before serving) that follows the replicated cluster identity: once
    the cluster is initialised it issues this HSM a TLS certificate under the cluster key (or, for a cluster
    certificate that is not a CA, serves that certificate with the cluster key), and it trusts for
    client certificates the owner's trust anchor and the client CAs admins registered (and no longer one they
    unregistered). Each change builds a new context that ``ctx`` hands every new connection from then on (at
    the ClientHello, before any certificate is checked); established connections keep theirs."""
    from ..protocol.tls import trust_clients
    from ..trust import cluster_certificate

    current = [ctx]
    served: list[tuple[bool, bytes, tuple[bytes, ...]]] = [(False, b"", ())]

    def hand_over(ssl_object: Any, _server_name: str | None, _base: ssl.SSLContext) -> None:
        if current[0] is not ctx:
            ssl_object.context = current[0]

    ctx.sni_callback = hand_over

    def refresh() -> None:
        identity = hsm.cluster_identity()
        barrier = hsm.barrier
        if identity is None or not identity.certificate or barrier is None:
            return
        itself = cluster_certificate.serves_itself(identity)
        if itself and not cluster_certificate.issued_for(identity, data_dir):
            cluster_certificate.write_served_certificate(identity, data_dir)
        elif not itself and not cluster_certificate.issued_for(identity, data_dir, hsm.cluster_id):
            cluster_certificate.issue_tls(identity, barrier, hsm.cluster_id, [host], data_dir)
        wanted = (cluster_certificate.issued_for(identity, data_dir), identity.certificate,
                  tuple(identity.client_anchors()))
        if wanted == served[0]:
            return
        key = cluster_certificate.cluster_key_pem(identity, barrier, hsm.cluster_id) if itself else None
        fresh = _managed_context(data_dir, client_ca, key)
        for anchor in wanted[2]:
            trust_clients(fresh, anchor)
        current[0], served[0] = fresh, wanted

    return refresh


def _client_side(data_dir: Path, config_file: str) -> tuple[Any, ssl.SSLContext]:
    """The configuration ``--join-config`` names and a TLS context for its members: a joining HSM presents its
    fleet identity as its client certificate (members trust the fleet CA), else the configuration's own."""
    from ..client import ClientConfig
    from ..protocol.tls import client_context
    from ..trust.fleet import IDENTITY_CERT, IDENTITY_KEY, Identity

    config = ClientConfig.from_file(config_file)
    cert, key = ((data_dir / IDENTITY_CERT, data_dir / IDENTITY_KEY) if Identity.present(data_dir)
                 else (config.client_cert, config.client_key))
    try:
        ctx = client_context(config.trust_anchor, cert_file=cert, key_file=key)
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot load the trust anchor or client certificate named in {config_file} "
                           f"({config.trust_anchor}): {exc}") from None
    return config, ctx


def _join(data_dir: Path, config_file: str, pin: str | None, role: str,
          raft_address: str) -> tuple[str, bytes, list[str]]:
    """Join through a member of a client configuration (:func:`strongroom.client.join.join`); return the cluster
    id, the masking key and the members' replication addresses."""
    from ..client import ConnectionLost
    from ..client.join import join
    from ..trust.fleet import Identity

    identity = Identity.load(data_dir)
    config, ctx = _client_side(data_dir, config_file)
    try:
        admission = join(config, ctx, identity, raft_address, pin, role)
    except ConnectionLost as exc:
        raise StartupError(f"{exc.message} ({exc.ckr_name}); members refuse, at the TLS handshake, an HSM whose "
                           "fleet identity is not from their fleet CA") from None
    return admission.cluster_id, admission.masking_key, admission.members


def _check_same_cluster(data_dir: Path, config_file: str) -> None:
    """A data directory that already holds an HSM restarts; refuse when it belongs to another cluster than the
    one ``--join-config`` names (when a member of that one answers)."""
    from ..client.join import cluster_id_of
    from ..store import Store

    store = Store(data_dir / "hsm.sqlite")
    try:
        mine = (store.get_setting("cluster_id") or b"").decode()
    finally:
        store.close()
    config, ctx = _client_side(data_dir, config_file)
    other = cluster_id_of(config, ctx)
    if other is not None and other != mine:
        raise StartupError(f"{data_dir} already holds an HSM of {mine}, not of {other}; give --join-config "
                           f"only with an empty, provisioned data directory")


def _raft_address(data_dir: Path, host: str, port: int, given: str | None) -> str:
    """This node's replication address: ``given``, else the one it had (a member keeps its address), else the
    listen port + 1 (or a free port when listening on port 0)."""
    known_file = data_dir / "raft" / "self"
    known = known_file.read_text().strip() if known_file.is_file() else None
    if given is not None:
        h, p = _address(given, "--raft-listen", any_port=False)
        address = f"{h}:{p}"
        if known is not None and known != address:
            raise StartupError(f"this node replicates on {known}; remove it from its cluster and join again to "
                               f"change its replication address")
        return address
    if known:
        return known
    if port == 65535:
        raise StartupError("the replication port would be 65536: give --raft-listen", "--listen")
    return f"{host}:{port + 1 if port else _free_port(host)}"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET


def _check_bindable(host: str, port: int, option: str) -> None:
    if port == 0:
        return
    with socket.socket(_family(host)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            raise StartupError(f"cannot listen on {host}:{port} ({option}): {exc.strerror or exc}") from None


def _free_port(host: str) -> int:
    with socket.socket(_family(host)) as sock:
        sock.bind((host.strip("[]"), 0))
        port: int = sock.getsockname()[1]
        return port


def serve(hsm: HSM, ctx: ssl.SSLContext, host: str, port: int, *, announce: dict[str, Any] | None = None,
          on_listening: Callable[[str], None] | None = None, every_second: Callable[[], None] | None = None,
          **server_options: Any) -> None:
    """Serve ``hsm`` until SIGTERM or SIGINT; print one JSON line with the bound address once listening
    (after calling ``on_listening("HOST:PORT")``); call ``every_second()`` (in a thread) meanwhile. Closes
    ``hsm`` when it returns.

    Raises:
        StartupError: the address cannot be listened on.
    """
    import uvloop

    from ..node.listener import NodeServer

    async def serving() -> None:
        server = NodeServer(hsm, ctx, **server_options)
        try:
            listener = await server.start(host.strip("[]"), port)
        except OSError as exc:
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        bound = listener.sockets[0].getsockname()
        if on_listening is not None:
            on_listening(f"{bound[0]}:{bound[1]}")
        sys.stdout.write(json.dumps({"listening": f"{bound[0]}:{bound[1]}", "serial": hsm.serial,
                                     "cluster_id": hsm.cluster_id, "state": hsm.state, **(announce or {})}) + "\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        async def periodically(task: Callable[[], None]) -> None:
            while True:
                await asyncio.sleep(1.0)
                try:
                    await asyncio.to_thread(task)
                except Exception:  # reported, and tried again next time
                    _log.exception("periodic task failed")

        periodic = asyncio.ensure_future(periodically(every_second)) if every_second is not None else None
        await stop.wait()
        if periodic is not None:
            periodic.cancel()
        listener.close()
        server.close()

    try:
        uvloop.run(serving())
    finally:
        hsm.close()
