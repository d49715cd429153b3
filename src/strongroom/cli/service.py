"""``strongroom``: service commands (the fleet, an HSM node, the client agent, the control plane, ``up``).

The commands parse and check their options and hand over: a node's process to :mod:`strongroom.host.node_process`,
the fleet's certificates to :mod:`strongroom.trust`, the agent to :mod:`strongroom.pkcs11.agent`, the control
plane to :mod:`strongroom.control.process` and a local deployment to :mod:`strongroom.cli.up`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from ..errors import StrongroomError
from ..util.address import host_port
from .doctor import doctor
from .version_option import VersionedGroup

if TYPE_CHECKING:
    from ..host.node_process import StartupError


@click.group(cls=VersionedGroup)
def main() -> None:
    """Strongroom service commands."""


main.add_command(doctor)


_HASH_MEMORY = click.option(
    "--password-hash-memory-kib", type=click.IntRange(1024, 4 * 1024 * 1024), default=65536, show_default=True,
    help="argon2id memory cost in KiB for password hashes (RFC 9106).")
_MODE = click.option("--mode", type=click.Choice(["FIPS", "NON_FIPS"]), default=None, help="A new cluster's mode, "
                     "fixed for its life [default: FIPS]: FIPS refuses what FIPS 140-3 does not approve, NON_FIPS "
                     "also offers RSA 1024, SHA-1 signatures, CKM_RSA_X_509. A resumed cluster keeps its own.")


def _host_port(listen: str, option: str = "--listen", *, any_port: bool = True) -> tuple[str, int]:
    try:
        return host_port(listen, any_port=any_port)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _refused(exc: StartupError) -> NoReturn:
    """A node that cannot start: a usage error when an option is at fault, else a failure (exit code 1)."""
    if exc.option is not None:
        raise click.BadParameter(str(exc), param_hint=exc.option) from None
    raise click.ClickException(str(exc)) from None


@main.command("init-node")
@click.option("--data-dir", type=click.Path(path_type=Path), required=True, help="New node's data directory.")
@click.option("--cluster-id", default=None, help="Cluster id (generated if omitted).")
@click.option("--cluster-key", is_flag=True,
              help="Also make the cluster key and its CSR (a cluster managed by a control plane).")
@click.option("--initial-password-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="For a cluster assembled by hand (no control plane): a new file (0600) that receives the "
                   "initial admin password. Otherwise the control plane reads it from the HSM (PreCoPassword).")
@_MODE
@_HASH_MEMORY
def init_node(data_dir: Path, cluster_id: str | None, cluster_key: bool, initial_password_file: Path | None,
              mode: str | None, password_hash_memory_kib: int) -> None:
    """Initialise an HSM node in DATA_DIR: node key, masking key and the unactivated admin, whose initial
    password the HSM makes at random."""
    from ..host import node_process as process

    try:
        made = process.initialize(data_dir, cluster_id=cluster_id, cluster_key=cluster_key,
                                  password_hash_memory_kib=password_hash_memory_kib,
                                  initial_password_file=initial_password_file, mode=mode or "FIPS")
    except process.StartupError as exc:
        _refused(exc)
    click.echo(json.dumps(made))


@main.group()
def fleet() -> None:
    """The fleet: the CA that vouches for genuine Strongroom HSMs, and provisioning of HSM identities."""


@fleet.command("init")
@click.option("--dir", "folder", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="New fleet directory (fleet CA certificate and key).")
def fleet_init(folder: Path) -> None:
    """Make a fleet CA in DIR (fleet-ca.crt, fleet-ca.key mode 0600)."""
    from ..trust.ca import CertificateAuthority

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
    from ..trust.fleet import Identity, provision

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
    from ..trust.fleet import issue_appliance

    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        issue_appliance(folder / "fleet-ca.crt", folder / "fleet-ca.key", out / "appliance.key",
                        out / "appliance.crt")
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"certificate": str(out / "appliance.crt"), "key": str(out / "appliance.key")}))


@main.group()
def owner() -> None:
    """The cluster owner's tools, with its CA (the trust anchor given at InitializeCluster), which ``strongroom
    up`` keeps in its data directory and real owners keep offline: it signs unlock requests and issues the
    client certificates every HSM port requires."""


@owner.command("sign-unlock")
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False, exists=True), required=True,
              help="The owner CA's private key (PEM; strongroom up keeps it as owner-ca.key).")
@click.option("--cluster-id", required=True, help="The cluster the request is for.")
@click.option("--username", default="admin", show_default=True, help="The admin to unlock.")
@click.option("--valid-for", "valid_for_s", type=click.IntRange(1, 7 * 24 * 3600), default=3600, show_default=True,
              help="Seconds until the request expires.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="New file for the signed request (for strongroom-cli user unlock --owner-signed).")
def owner_sign_unlock(key_file: Path, cluster_id: str, username: str, valid_for_s: int, out: Path) -> None:
    """Sign a one-time unlock request for an admin of CLUSTER_ID with the owner CA's key, offline: the way back
    in when every admin is locked out. Any HSM of the cluster accepts it once, before it expires."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from ..errors import StrongroomError
    from ..trust import owner_unlock

    data = key_file.read_bytes()
    try:
        try:
            key = serialization.load_pem_private_key(data, None)
        except TypeError:  # an encrypted key
            key = serialization.load_pem_private_key(
                data, click.prompt("owner CA key password", hide_input=True).encode())
    except ValueError as exc:
        raise click.ClickException(f"{key_file} is not a PEM private key: {exc}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise click.ClickException("the owner CA key must be an EC or RSA key")
    try:
        signed = owner_unlock.sign(key, cluster_id, username, valid_for_s)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except StrongroomError as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:
        raise click.ClickException(f"cannot make {out}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(signed)
    claims = json.loads(signed)["claims"]
    click.echo(json.dumps({"out": str(out), **claims}))


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
              help="PEM CA that client certificates must chain to (needed with --cert: every client presents a "
                   "certificate; a provisioned node also accepts its fleet's, for joining HSMs). With --managed: "
                   "an extra client CA beside the fleet's and, once initialised, the owner's.")
@click.option("--idle-timeout", type=float, default=600.0, show_default=True, help="Seconds.")
@click.option("--read-timeout", type=float, default=30.0, show_default=True, help="Seconds.")
@_HASH_MEMORY
def node(data_dir: Path, listen: str, raft_listen: str | None, peers: str, join_config: str | None,
         join_pin_file: IO[str] | None,
         join_role: str, advertise: str | None, log_compaction_entries: int, managed: bool, cert_file: str | None,
         key_file: str | None, client_ca: str | None, idle_timeout: float,
         read_timeout: float, password_hash_memory_kib: int) -> None:
    """Run one HSM node: serve its data directory over TLS 1.3 and take part in the cluster's replicated log
    until stopped (SIGTERM or Ctrl-C). With --join-config, a provisioned data directory first joins that
    cluster. A restarted node rejoins its cluster and catches up.

    Prints one JSON line {"listening": "HOST:PORT", "raft": "HOST:PORT", ...} once it accepts connections.
    """
    from ..host import node_process as process
    from ..util.process_log import to_stderr

    to_stderr()
    options = process.NodeOptions(
        data_dir, listen, raft_listen, peers, join_config,
        join_pin_file.read().strip() if join_pin_file is not None else None, join_role, advertise,
        log_compaction_entries, managed, cert_file, key_file, client_ca, idle_timeout,
        read_timeout, password_hash_memory_kib)
    try:
        process.run(options)
    except process.StartupError as exc:
        _refused(exc)


@main.command()
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Client configuration (JSON) of the cluster.")
@click.option("--socket", "socket_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Unix socket to serve p11-kit RPC on (created with mode 0600).")
@click.option("--socket-group", default=None,
              help="Group (name or id) whose members may use the socket too (mode 0660).")
@click.option("--token-label", default=None, help="The token's label [default: the cluster id].")
@click.option("--handover-grace", type=click.FloatRange(0, 3600), default=0.0, show_default=True,
              help="Seconds a stopping agent holds connected applications for the next agent on the socket "
                   "(0: it stops at once).")
def client(config_file: str, socket_path: Path, socket_group: str | None, token_label: str | None,
           handover_grace: float) -> None:
    """Run the client agent: PKCS#11 applications reach the cluster through p11-kit's p11-kit-client.so
    (P11_KIT_SERVER_ADDRESS=unix:path=SOCKET). Prints one JSON line {"socket": PATH, "taken_over": N} once it
    serves. An agent started on the socket of a running one (same user, same client key) takes its
    applications over, which keep their sessions and login (the running one prints {"handed_over": true} and
    ends); a stopped agent with applications connected holds them up to --handover-grace seconds for the next
    one (printing {"holding": N}), a second signal ends it."""
    import uvloop

    from ..client import ClientConfig
    from ..pkcs11.agent import Agent
    from ..pkcs11.handover import HandoverError
    from ..util.process_log import to_stderr

    to_stderr()

    try:
        agent = Agent(ClientConfig.from_file(config_file), socket_path, token_label, group=socket_group,
                      grace_s=handover_grace)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except StrongroomError as exc:
        raise click.ClickException(f"{exc.message} ({exc.ckr_name})") from None

    def ready() -> None:
        click.echo(json.dumps({"socket": str(socket_path), "taken_over": agent.taken_over}))
        sys.stdout.flush()

    def say(line: dict[str, Any]) -> None:
        try:
            click.echo(json.dumps(line))
            sys.stdout.flush()
        except OSError:
            pass  # nobody reads the output any more

    def holding(count: int) -> None:
        _outlive_parent()  # the process that started it may stop now; the next agent takes over
        say({"holding": count, "grace_s": handover_grace})

    try:
        if uvloop.run(agent.serve_until_signalled(ready, holding)):
            say({"handed_over": True})
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {socket_path}: {exc.strerror or exc}") from None
    except HandoverError as exc:
        raise click.ClickException(f"an agent serves {socket_path} and did not hand it over: {exc}") from None


def _outlive_parent() -> None:
    """Undo ``PR_SET_PDEATHSIG`` (the SIGTERM Linux sends when the starting process dies)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, 0)  # PR_SET_PDEATHSIG, none
    except (OSError, AttributeError):
        pass


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("./var"),
              show_default=True, help="Directory for everything: fleet, control plane, HSM data, credentials.")
@click.option("--hsms", type=click.IntRange(1, 7), default=3, show_default=True, help="HSMs in the cluster.")
@click.option("--control-listen", default=None,
              help="HOST:PORT of the control plane's API [default: the port of the last start if free, else any; "
                   "written to cluster.json].")
@click.option("--json", "as_json", is_flag=True, help="Progress and the summary as JSON lines.")
@click.option("--socket-group", default=None,
              help="Group (name or id) whose members may use the PKCS#11 socket too (mode 0660; the data directory "
                   "becomes searchable by it).")
@_MODE
@_HASH_MEMORY
def up(data_dir: Path, hsms: int, control_listen: str | None, as_json: bool, socket_group: str | None,
       mode: str | None, password_hash_memory_kib: int) -> None:
    """Run Strongroom on this machine in the foreground: a control plane, a cluster of HSMS HSM processes and the
    client agent with its PKCS#11 socket. The first start creates, initialises and activates the cluster and
    writes DATA_DIR/cluster.json and DATA_DIR/credentials.json (mode 0600); later starts resume it with its keys.
    Prints "ready" once everything serves; Ctrl-C or SIGTERM stops every process, except an agent with PKCS#11
    applications connected: it holds them up to 120 s, and the next start's agent takes them over. With
    --socket-group, members of that group may use the PKCS#11 socket too (a web server's worker user, say)."""
    from .up import run

    if control_listen is not None:
        _host_port(control_listen, "--control-listen")
    run(data_dir, hsms, control_listen, password_hash_memory_kib, as_json, socket_group, mode)


@owner.command("issue-client")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False, exists=True), default=Path("./var"),
              show_default=True, help="The data directory of strongroom up (owner-ca.crt, owner-ca.key).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory for NAME.crt, NAME.key (mode 0600), owner-ca.crt and cluster.json.")
@click.option("--name", default="client", show_default=True, help="The certificate's common name and file stem.")
@click.option("--days", type=click.IntRange(1, 3650), default=825, show_default=True, help="Validity.")
def issue_client(data_dir: Path, out: Path, name: str, days: int) -> None:
    """Issue a client certificate for a new application host from the owner CA, with a cluster.json that the
    SDK, the client agent and strongroom-cli read. Copy OUT to the host. Prints the written paths as JSON."""
    from .local_pki import issue_client as issue

    if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64:
        raise click.BadParameter("1-64 letters, digits, '-' or '_'", param_hint="--name")
    try:
        click.echo(json.dumps(issue(data_dir.resolve(), out, name, days)))
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@main.group(invoke_without_command=True)
@click.option("--dir", "folder", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The control plane's directory (records, sealing key, identity, credentials, local HSM data).")
@click.option("--fleet", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="The fleet directory: new HSMs get their identities from it.")
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT of the API (port 0: any).")
@click.option("--database-url", default="", help="SQLAlchemy URL of the records [default: SQLite in --dir].")
@click.option("--region", default="us-east-1", show_default=True)
@click.option("--tls-cert", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="PEM certificate chain of the API [default: issued from a CA the control plane makes in --dir, "
                   "tls-ca.crt].")
@click.option("--tls-key", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="PEM private key of --tls-cert.")
@click.option("--insecure-plain-http", "plain_http", is_flag=True,
              help="Serve plain HTTP instead of HTTPS; refused unless --listen is a loopback address.")
@click.option("--header-timeout", type=click.FloatRange(0.1, 300), default=10.0, show_default=True,
              help="Seconds a client may take to send a request's headers before its connection is closed.")
@click.option("--body-timeout", type=click.FloatRange(0.1, 600), default=30.0, show_default=True,
              help="Seconds a client may take to send a request's body.")
@_HASH_MEMORY
@click.pass_context
def control(ctx: click.Context, folder: Path | None, fleet: Path | None, listen: str, database_url: str,
            region: str, tls_cert: Path | None, tls_key: Path | None, plain_http: bool, header_timeout: float,
            body_timeout: float, password_hash_memory_kib: int) -> None:
    """Run the control plane: the cloudhsmv2 API (AWS JSON 1.1 with SigV4 over HTTPS, for boto3 and the AWS CLI)
    over clusters whose HSMs run as local processes, initialised, health-checked and replaced when they fail.

    Prints one JSON line {"url": "https://…", "credentials": …, "ca": …} once it serves; the first access key is
    in the credentials file (mode 0600), "ca" the CA to verify the API with (when it issued its own certificate).
    Stops every HSM it started on SIGTERM or Ctrl-C. Access keys: strongroom control access-key --help."""
    if ctx.invoked_subcommand is not None:
        return
    from ..control.process import AlreadyRunning, Settings, run
    from ..control.server import NotLoopback

    if folder is None or fleet is None:
        raise click.UsageError("--dir and --fleet are required to run the control plane")
    if (tls_cert is None) != (tls_key is None):
        raise click.BadParameter("give --tls-cert and --tls-key together", param_hint="--tls-cert")
    if plain_http and tls_cert is not None:
        raise click.BadParameter("--insecure-plain-http serves no certificate", param_hint="--insecure-plain-http")
    _host_port(listen)

    def ready(info: dict[str, Any]) -> None:
        click.echo(json.dumps(info))
        sys.stdout.flush()

    try:
        run(Settings(folder, fleet, listen, database_url, region,
                     ("--password-hash-memory-kib", str(password_hash_memory_kib)), tls_cert, tls_key, plain_http,
                     header_timeout, body_timeout), ready)
    except NotLoopback as exc:
        raise click.BadParameter(exc.message, param_hint="--insecure-plain-http") from None
    except AlreadyRunning as exc:
        raise click.ClickException(str(exc)) from None


_CONTROL_DIR = click.option("--dir", "folder", type=click.Path(path_type=Path, file_okay=False, exists=True),
                            required=True, help="The control plane's directory (its sealing key and records).")
_DATABASE = click.option("--database-url", default="",
                         help="SQLAlchemy URL of the records, as the control plane was given [default: SQLite in "
                              "--dir].")


@control.group("access-key")
def access_key() -> None:
    """The API's access keys, managed on the control plane's directory (whoever can read its sealing key is its
    administrator); a change applies from the API's next request, while it runs."""


def _on_keys(folder: Path, database_url: str, action: Any) -> None:
    from ..control.process import open_store

    if not (folder / "sealing.key").is_file():
        raise click.BadParameter(f"{folder} holds no sealing.key: not a control plane's directory",
                                 param_hint="--dir")
    try:
        store, sealing = open_store(folder, database_url)
    except (OSError, StrongroomError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        click.echo(json.dumps(action(store, sealing), indent=2))
    except StrongroomError as exc:
        raise click.ClickException(f"{exc.message} ({exc.ckr_name})") from None
    finally:
        store.close()


@access_key.command("create")
@_CONTROL_DIR
@_DATABASE
def access_key_create(folder: Path, database_url: str) -> None:
    """Issue a new active access key; prints its id and secret (shown this once)."""
    from ..control import access_keys

    _on_keys(folder, database_url, access_keys.create)


@access_key.command("list")
@_CONTROL_DIR
@_DATABASE
def access_key_list(folder: Path, database_url: str) -> None:
    """Every access key with its status and creation time (no secret)."""
    from ..control import access_keys

    _on_keys(folder, database_url, lambda store, _sealing: access_keys.listing(store))


def _status_command(name: str, status: str, doc: str) -> None:
    """``access-key deactivate`` / ``activate``: one key's status."""

    @_CONTROL_DIR
    @_DATABASE
    @click.argument("access_key_id")
    def run(folder: Path, database_url: str, access_key_id: str) -> None:
        from ..control import access_keys

        _on_keys(folder, database_url,
                 lambda store, _sealing: access_keys.set_status(store, access_key_id, getattr(access_keys, status)))

    access_key.command(name, help=doc)(run)


_status_command("deactivate", "INACTIVE",
                "Make ACCESS_KEY_ID inactive: its requests are refused (UnrecognizedClientException).")
_status_command("activate", "ACTIVE", "Make ACCESS_KEY_ID active again.")


@access_key.command("delete")
@_CONTROL_DIR
@_DATABASE
@click.argument("access_key_id")
def access_key_delete(folder: Path, database_url: str, access_key_id: str) -> None:
    """Delete ACCESS_KEY_ID for good: its requests are refused as an unknown key's."""
    from ..control import access_keys

    _on_keys(folder, database_url, lambda store, _sealing: access_keys.delete(store, access_key_id))
