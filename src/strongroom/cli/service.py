"""``strongroom``: service commands (start a local deployment, run a node)."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import StrongroomError

if TYPE_CHECKING:
    from ..node import Settings


@click.group()
def main() -> None:
    """Strongroom service commands."""


def _settings(password_hash_memory_kib: int) -> "Settings":
    from ..node import Settings

    return Settings(argon2_memory_kib=password_hash_memory_kib,
                    argon2_time_cost=3 if password_hash_memory_kib >= 65536 else 1)


_HASH_MEMORY = click.option(
    "--password-hash-memory-kib", type=click.IntRange(1024, 4 * 1024 * 1024), default=65536, show_default=True,
    help="argon2id memory cost in KiB for password hashes (RFC 9106).")


@main.command("init-node")
@click.option("--data-dir", type=click.Path(path_type=Path), required=True, help="New node's data directory.")
@click.option("--preco-password-file", type=click.File("r"), required=True,
              help="File holding the initial admin password (8-32 characters), changed by activation.")
@click.option("--cluster-id", default=None, help="Cluster id (generated if omitted).")
@click.option("--cluster-key", is_flag=True,
              help="Also make the cluster key and its CSR (a cluster managed by a control plane).")
@_HASH_MEMORY
def init_node(data_dir: Path, preco_password_file, cluster_id: str | None, cluster_key: bool,
              password_hash_memory_kib: int) -> None:
    """Initialise an HSM node in DATA_DIR: node key, masking key and the unactivated admin."""
    from ..node import HSM
    from ..store import Store

    try:
        HSM.initialize(data_dir, cluster_id=cluster_id, preco_password=preco_password_file.read().strip(),
                       settings=_settings(password_hash_memory_kib), open=False, cluster_key=cluster_key)
        store = Store(data_dir / "hsm.sqlite")
        cluster_id, serial = (store.get_setting(n).decode() for n in ("cluster_id", "serial"))
        store.close()
    except StrongroomError as exc:
        raise click.ClickException(f"{exc.message} ({exc.ckr_name})") from None
    click.echo(json.dumps({"data_dir": str(data_dir), "cluster_id": cluster_id, "serial": serial}))


@main.group()
def fleet() -> None:
    """The fleet: the CA that vouches for genuine Strongroom HSMs, and provisioning of HSM identities."""


@fleet.command("init")
@click.option("--dir", "folder", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="New fleet directory (fleet CA certificate and key).")
def fleet_init(folder: Path) -> None:
    """Make a fleet CA in DIR (fleet-ca.crt, fleet-ca.key mode 0600)."""
    from ..protocol.certificates import CertificateAuthority

    if (folder / "fleet-ca.key").exists():
        raise click.ClickException(f"{folder} already holds a fleet")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = CertificateAuthority(folder, "fleet-ca", days=3650)
    click.echo(json.dumps({"fleet_ca": str(ca.issued.cert)}))


@fleet.command("provision")
@click.option("--fleet", "folder", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True)
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--name", required=True, help="The HSM's name in its certificate.")
def fleet_provision(folder: Path, data_dir: Path, name: str) -> None:
    """Give the HSM data directory DATA_DIR an identity key and a certificate from the fleet CA."""
    from ..replication.membership import Identity, provision

    if Identity.present(data_dir) or (data_dir / "hsm.sqlite").exists():
        raise click.ClickException(f"{data_dir} already holds an HSM identity")
    if not name.strip() or len(name) > 64:
        raise click.BadParameter("a name of 1-64 characters", param_hint="--name")
    try:
        provision(data_dir, folder / "fleet-ca.crt", folder / "fleet-ca.key", name)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"data_dir": str(data_dir), "name": name}))


@fleet.command("appliance")
@click.option("--fleet", "folder", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory for the control plane's appliance.key (0600) and appliance.crt.")
def fleet_appliance(folder: Path, out: Path) -> None:
    """Issue a control plane its appliance identity: a TLS client certificate from the fleet CA, which the HSMs
    of the fleet accept as the appliance user (health, joins of new HSMs, cluster initialisation)."""
    from ..replication.membership import issue_appliance

    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        issue_appliance(folder / "fleet-ca.crt", folder / "fleet-ca.key", out / "appliance.key",
                        out / "appliance.crt")
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"certificate": str(out / "appliance.crt"), "key": str(out / "appliance.key")}))


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--listen", default="127.0.0.1:2225", show_default=True, help="HOST:PORT to serve (port 0: any).")
@click.option("--raft-listen", default=None,
              help="HOST:PORT of the replication channel [default: the --listen host, its port + 1, or a free "
                   "port with --listen port 0; a restarted node must keep its address].")
@click.option("--peers", default="", help="Comma-separated replication addresses of the other members (first "
                                          "start of a cluster formed from several initialised nodes).")
@click.option("--join-config", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Client configuration (JSON) of the cluster to join; for a data directory with a fleet "
                   "identity and no HSM yet.")
@click.option("--join-pin-file", type=click.File("r"), default=None,
              help="File holding username:password of an admin (or the appliance user, with --join-role).")
@click.option("--join-role", type=click.Choice(["admin", "appliance"]), default="admin", show_default=True)
@click.option("--advertise", default=None,
              help="HOST:PORT clients reach this node at [default: the bound --listen address].")
@click.option("--log-compaction-entries", type=click.IntRange(2, None), default=20_000, show_default=True,
              help="Compact the replicated log into a snapshot once it holds this many entries.")
@click.option("--managed", is_flag=True,
              help="A control plane manages this HSM: it serves TLS with its fleet identity until the cluster is "
                   "initialised, then with a certificate under the cluster key; it accepts the fleet's appliance "
                   "identity and joins without a password when the control plane admitted it.")
@click.option("--cert", "cert_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM certificate chain of the node, chaining to the cluster's trust anchor.")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM private key of the node certificate.")
@click.option("--client-ca", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM CA that client certificates must chain to.")
@click.option("--require-client-cert", is_flag=True, help="Refuse clients without a certificate (mutual TLS).")
@click.option("--idle-timeout", type=float, default=600.0, show_default=True, help="Seconds.")
@click.option("--read-timeout", type=float, default=30.0, show_default=True, help="Seconds.")
@_HASH_MEMORY
def node(data_dir: Path, listen: str, raft_listen: str | None, peers: str, join_config: str | None, join_pin_file,
         join_role: str, advertise: str | None, log_compaction_entries: int, managed: bool, cert_file: str | None,
         key_file: str | None, client_ca: str | None, require_client_cert: bool, idle_timeout: float,
         read_timeout: float, password_hash_memory_kib: int) -> None:
    """Run one HSM node: serve its data directory over TLS 1.3 and take part in the cluster's replicated log
    until stopped (SIGTERM or Ctrl-C). With --join-config, a provisioned data directory first joins that
    cluster. A restarted node rejoins its cluster and catches up.

    Prints one JSON line {"listening": "HOST:PORT", "raft": "HOST:PORT", ...} once it accepts connections.
    """
    from ..node import HSM
    from ..protocol.tls import server_context
    from ..replication import RaftLog

    host, port = _host_port(listen)
    raft_address = _raft_address(data_dir, host, port, raft_listen)
    if advertise is not None:
        _host_port(advertise, "--advertise", any_port=False)
    peer_list = [p.strip() for p in peers.split(",") if p.strip()]
    for peer in peer_list:
        _host_port(peer, "--peers", any_port=False)

    def replication(members: list[str], joining: bool = False) -> Any:
        return lambda machine, secret: RaftLog(machine, data_dir / "raft", raft_address, members, secret,
                                               compaction_entries=log_compaction_entries, joining=joining)

    settings = _settings(password_hash_memory_kib)
    if not managed and (cert_file is None or key_file is None):
        raise click.BadParameter("a node needs its TLS certificate and key (or --managed)", param_hint="--cert/--key")
    try:
        if managed:
            ctx = _managed_context(data_dir, client_ca, require_client_cert)
        else:
            ctx = server_context(cert_file, key_file, client_ca_file=client_ca,
                                 require_client_cert=require_client_cert)
        if join_config is not None and (data_dir / "hsm.sqlite").exists():
            _check_same_cluster(data_dir, join_config)
        if join_config is not None and not (data_dir / "hsm.sqlite").exists():
            if join_pin_file is None and not managed:
                raise click.BadParameter("joining needs the credentials of an admin", param_hint="--join-pin-file")
            # Both ports must be free before the cluster takes this node in: a member that cannot start
            # would count against the cluster's majority.
            _check_bindable(host, port, "--listen")
            _check_bindable(*_host_port(raft_address, "--raft-listen"), "--raft-listen")
            pin = join_pin_file.read().strip() if join_pin_file is not None else None
            cluster_id, masking_key, members = _join(data_dir, join_config, pin, join_role, raft_address)
            hsm = HSM.initialize(data_dir, cluster_id=cluster_id, masking_key=masking_key, settings=settings,
                                 replication=replication([m for m in members if m != raft_address], joining=True))
        else:
            hsm = HSM(data_dir, settings=settings, replication=replication(peer_list))
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except StrongroomError as exc:
        raise click.ClickException(f"{exc.message} ({exc.ckr_name})") from None

    import threading

    stop = threading.Event()

    def publish(endpoint: str) -> None:
        hsm.publish_endpoint(raft_address, advertise or endpoint, stop)

    every_second = None
    if managed:
        tls_host = (advertise or listen).rpartition(":")[0].strip("[]") or "127.0.0.1"
        every_second = _tls_refresher(hsm, ctx, data_dir, tls_host)
    try:
        _serve(hsm, ctx, host, int(port), announce={"raft": raft_address}, on_listening=publish,
               every_second=every_second, idle_timeout_s=idle_timeout, read_timeout_s=read_timeout)
    finally:
        stop.set()


def _managed_context(data_dir: Path, client_ca: str | None, require_client_cert: bool) -> Any:
    """The TLS context of a managed HSM: its certificate under the cluster key once it has one, else its fleet
    identity; client certificates from the fleet CA (the control plane's appliance identity) and ``client_ca``."""
    import ssl

    from ..node.cluster_identity import TLS_CERT, TLS_KEY
    from ..protocol.tls import server_context
    from ..replication.membership import FLEET_CA, IDENTITY_CERT, IDENTITY_KEY

    issued = (data_dir / TLS_CERT).is_file() and (data_dir / TLS_KEY).is_file()
    cert, key = (data_dir / TLS_CERT, data_dir / TLS_KEY) if issued else (data_dir / IDENTITY_CERT,
                                                                         data_dir / IDENTITY_KEY)
    ctx = server_context(cert, key, client_ca_file=client_ca, require_client_cert=require_client_cert)
    ctx.load_verify_locations(cafile=str(data_dir / FLEET_CA))
    if ctx.verify_mode == ssl.CERT_NONE:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def _tls_refresher(hsm: Any, ctx: Any, data_dir: Path, host: str) -> Any:
    """A check (run every second) that issues this HSM a TLS certificate under the cluster key once the cluster
    is initialised, and serves it to new connections from then on."""
    from ..node import cluster_identity

    def refresh() -> None:
        identity = hsm.cluster_identity()
        if identity is None or not identity.certificate or cluster_identity.issued_for(identity, data_dir):
            return
        chain, key = cluster_identity.issue_tls(identity, hsm.barrier, hsm.cluster_id, [host], data_dir)
        ctx.load_cert_chain(str(chain), str(key))

    return refresh


def _join(data_dir: Path, config_file: str, pin: str | None, role: str,
          raft_address: str) -> tuple[str, bytes, list[str]]:
    """Join through a member of a client configuration; return the cluster id, the masking key and the
    members' replication addresses. Without ``pin`` the join counts on the control plane's admission."""
    import asyncio
    import time

    from ..client import ClientConfig
    from ..client.connection import open_connection
    from ..protocol.tls import client_context
    from ..replication import membership
    from ..vendor import CKU_APPLIANCE
    from ..vocab import CKF, CKU

    identity = membership.Identity.load(data_dir)
    config = ClientConfig.from_file(config_file)
    try:
        ctx = client_context(config.trust_anchor, cert_file=config.client_cert, key_file=config.client_key)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot load the trust anchor or client certificate named in {config_file} "
                                   f"({config.trust_anchor}): {exc}") from None

    async def attempt(endpoint: str) -> tuple[str, bytes, list[str]]:
        conn = await open_connection(endpoint, ctx, server_name=config.server_name,
                                     timeout_s=config.connect_timeout_s)
        try:
            session = await conn.call("open_session", int(CKF.SERIAL_SESSION | CKF.RW_SESSION))
            if pin is not None:
                await conn.call("login", session, int(CKU.SO) if role == "admin" else CKU_APPLIANCE, pin)
            challenge = await conn.call("join_challenge")
            cluster_id = conn.node["cluster_id"]
            signature = membership.sign_join(identity, challenge, cluster_id, raft_address)
            answer = await conn.call("join_cluster", session, identity.certificate, raft_address, signature,
                                     timeout_s=30.0)
        finally:
            conn.close()
        key = membership.unwrap_masking_key(identity, answer["ephemeral"], answer["wrapped_key"], cluster_id)
        return answer["cluster_id"], key, answer["members"]

    async def run() -> tuple[str, bytes, list[str]]:
        # A member catching up (or a cluster between leaders) answers with a retryable error: try the
        # members in turn until one admits this node or the time is up.
        deadline = time.monotonic() + max(30.0, config.timeout_s)
        while True:
            error: StrongroomError | None = None
            for endpoint in config.endpoints:
                try:
                    return await attempt(endpoint)
                except StrongroomError as exc:
                    if not exc.retryable:
                        raise
                    error = exc
            if time.monotonic() > deadline:
                raise error  # type: ignore[misc]
            await asyncio.sleep(0.5)

    return asyncio.run(run())


def _raft_address(data_dir: Path, host: str, port: int, given: str | None) -> str:
    """This node's replication address: ``given``, else the one it had (a member keeps its address), else the
    listen port + 1 (or a free port when listening on port 0)."""
    known_file = data_dir / "raft" / "self"
    known = known_file.read_text().strip() if known_file.is_file() else None
    if given is not None:
        h, p = _host_port(given, "--raft-listen", any_port=False)
        address = f"{h}:{p}"
        if known is not None and known != address:
            raise click.ClickException(f"this node replicates on {known}; remove it from its cluster and join "
                                       f"again to change its replication address")
        return address
    if known:
        return known
    if port == 65535:
        raise click.BadParameter("the replication port would be 65536: give --raft-listen", param_hint="--listen")
    return f"{host}:{port + 1 if port else _free_port(host)}"


def _check_bindable(host: str, port: int, option: str) -> None:
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port} ({option}): {exc.strerror or exc}") from None


def _check_same_cluster(data_dir: Path, config_file: str) -> None:
    """A data directory that already holds an HSM restarts; refuse when it belongs to another cluster than the
    one ``--join-config`` names (when a member of that one answers)."""
    import asyncio

    from ..client import ClientConfig
    from ..client.connection import open_connection
    from ..protocol.tls import client_context
    from ..store import Store

    store = Store(data_dir / "hsm.sqlite")
    try:
        mine = (store.get_setting("cluster_id") or b"").decode()
    finally:
        store.close()
    config = ClientConfig.from_file(config_file)
    ctx = client_context(config.trust_anchor, cert_file=config.client_cert, key_file=config.client_key)

    async def theirs() -> str | None:
        for endpoint in config.endpoints:
            try:
                conn = await open_connection(endpoint, ctx, server_name=config.server_name, timeout_s=3.0)
            except StrongroomError:
                continue
            conn.close()
            return conn.node.get("cluster_id")
        return None

    other = asyncio.run(theirs())
    if other is not None and other != mine:
        raise click.ClickException(f"{data_dir} already holds an HSM of {mine}, not of {other}; give --join-config "
                                   f"only with an empty, provisioned data directory")


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as sock:
        sock.bind((host.strip("[]"), 0))
        return sock.getsockname()[1]


def _host_port(listen: str, option: str = "--listen", *, any_port: bool = True) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    low = 0 if any_port else 1
    if not host or not port.isdigit() or not low <= int(port) <= 65535:
        raise click.BadParameter(f"expected HOST:PORT with a port of {low}-65535", param_hint=option)
    return host, int(port)


def _serve(hsm: Any, ctx: Any, host: str, port: int, *, announce: dict[str, Any] | None = None,
           on_listening: Any = None, every_second: Any = None, **server_options: Any) -> None:
    """Serve ``hsm`` until SIGTERM or SIGINT; print one JSON line with the bound address once listening
    (after calling ``on_listening("HOST:PORT")``); call ``every_second()`` (in a thread) meanwhile."""
    import asyncio

    import uvloop

    from ..node.server import NodeServer

    async def serve() -> None:
        server = NodeServer(hsm, ctx, **server_options)
        try:
            listener = await server.start(host.strip("[]"), port)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        bound = listener.sockets[0].getsockname()
        if on_listening is not None:
            on_listening(f"{bound[0]}:{bound[1]}")
        click.echo(json.dumps({"listening": f"{bound[0]}:{bound[1]}", "serial": hsm.serial,
                               "cluster_id": hsm.cluster_id, "state": hsm.state, **(announce or {})}))
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        async def periodically() -> None:
            while True:
                await asyncio.sleep(1.0)
                try:
                    await asyncio.to_thread(every_second)
                except Exception:  # noqa: BLE001 - reported, and tried again next time
                    logging.getLogger("strongroom.node").exception("periodic task failed")

        task = asyncio.ensure_future(periodically()) if every_second is not None else None
        await stop.wait()
        if task is not None:
            task.cancel()
        listener.close()
        server.close()

    try:
        uvloop.run(serve())
    finally:
        hsm.close()


@main.command()
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Client configuration (JSON) of the cluster.")
@click.option("--socket", "socket_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Unix socket to serve p11-kit RPC on (created with mode 0600).")
@click.option("--socket-group", default=None,
              help="Group (name or id) whose members may use the socket too (mode 0660).")
@click.option("--token-label", default=None, help="The token's label [default: the cluster id].")
def client(config_file: str, socket_path: Path, socket_group: str | None, token_label: str | None) -> None:
    """Run the client agent: PKCS#11 applications reach the cluster through p11-kit's p11-kit-client.so
    (P11_KIT_SERVER_ADDRESS=unix:path=SOCKET). Prints one JSON line {"socket": PATH} once it serves."""
    import uvloop

    from ..client import ClientConfig
    from ..pkcs11.agent import Agent

    try:
        agent = Agent(ClientConfig.from_file(config_file), socket_path, token_label, group=socket_group)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except StrongroomError as exc:
        raise click.ClickException(f"{exc.message} ({exc.ckr_name})") from None

    def ready() -> None:
        click.echo(json.dumps({"socket": str(socket_path)}))
        sys.stdout.flush()

    uvloop.run(agent.serve_until_signalled(ready))
    socket_path.unlink(missing_ok=True)


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("./var"),
              show_default=True, help="Directory for everything: fleet, control plane, HSM data, credentials.")
@click.option("--hsms", type=click.IntRange(1, 7), default=3, show_default=True, help="HSMs in the cluster.")
@click.option("--control-listen", default=None,
              help="HOST:PORT of the control plane's API [default: the port of the last start if free, else any; "
                   "written to cluster.json].")
@click.option("--json", "as_json", is_flag=True, help="Progress and the summary as JSON lines.")
@_HASH_MEMORY
def up(data_dir: Path, hsms: int, control_listen: str | None, as_json: bool, password_hash_memory_kib: int) -> None:
    """Run Strongroom on this machine in the foreground: a control plane, a cluster of HSMS HSM processes and the
    client agent with its PKCS#11 socket. The first start creates, initialises and activates the cluster and
    writes DATA_DIR/cluster.json and DATA_DIR/credentials.json (mode 0600); later starts resume it with its keys.
    Prints "ready" once everything serves; Ctrl-C or SIGTERM stops every process."""
    from .up import run

    if control_listen is not None:
        _host_port(control_listen, "--control-listen")
    run(data_dir, hsms, control_listen, password_hash_memory_kib, as_json)


@main.command()
@click.option("--dir", "folder", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The control plane's directory (records, identity, credentials, local HSM data).")
@click.option("--fleet", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
              help="The fleet directory: new HSMs get their identities from it.")
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT of the API (port 0: any).")
@click.option("--database-url", default="", help="SQLAlchemy URL of the records [default: SQLite in --dir].")
@click.option("--region", default="us-east-1", show_default=True)
@_HASH_MEMORY
def control(folder: Path, fleet: Path, listen: str, database_url: str, region: str,
            password_hash_memory_kib: int) -> None:
    """Run the control plane: the cloudhsmv2 API (AWS JSON 1.1 with SigV4, for boto3 and the AWS CLI) over
    clusters whose HSMs run as local processes, initialised, health-checked and replaced when they fail.

    Prints one JSON line {"url": …, "credentials": …} once it serves; the first access key is in the
    credentials file (mode 0600). Stops every HSM it started on SIGTERM or Ctrl-C."""
    from ..control.server import AlreadyRunning, Settings, run

    _host_port(listen)

    def ready(info: dict[str, Any]) -> None:
        click.echo(json.dumps(info))
        sys.stdout.flush()

    try:
        run(Settings(folder, fleet, listen, database_url, region,
                     ("--password-hash-memory-kib", str(password_hash_memory_kib))), ready)
    except AlreadyRunning as exc:
        raise click.ClickException(str(exc)) from None
