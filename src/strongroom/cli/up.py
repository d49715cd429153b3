"""``strongroom up``: the whole service on one machine, in the foreground — the command behind ``make run``.

The first start makes a fleet, runs the control plane, creates one cluster of N HSMs through its API, initialises
it with a locally made owner CA (its key, ``owner-ca.key``, signs owner unlock requests), activates it with the
initial admin password the first HSM made (``PreCoPassword``) and a random new one, creates a crypto user and starts
the client agent with its PKCS#11 socket. Every HSM port requires a client certificate: ``up`` issues one for the
agent and one for the command line from the owner CA (``clients/``, keys 0600). The control plane serves HTTPS
with a certificate from a local CA of its own (``control-ca.crt``, named ``control_plane_ca`` in
``cluster.json``). It writes ``cluster.json`` (where everything is; also an SDK configuration, with the agent's
certificate) and ``credentials.json`` (mode 0600). A later start resumes the same cluster with the same keys.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..control.provider import die_with_parent, terminate
from .local_pki import OWNER_CA, client_certificates, control_tls, owner_ca, sign_csr

PKCS11_MODULE = next(iter(sorted(Path("/usr/lib").glob("*/pkcs11/p11-kit-client.so"))),
                     Path("/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"))
CRYPTO_USER = "app"
START_TIMEOUT_S = 180.0
AGENT_GRACE_S = 120  # how long a stopped up's agent holds connected applications for the next start's agent


class Reporter:
    """Progress for people (rich) or, with ``--json``, one JSON object per line for operators."""

    def __init__(self, as_json: bool) -> None:
        from rich.console import Console

        self.as_json = as_json
        self.console = Console(stderr=False, highlight=False, soft_wrap=True)  # a long line is not cut up
        self.status: Any = None

    def step(self, text: str) -> None:
        if self.as_json:
            click.echo(json.dumps({"step": text}))
            return
        if self.status is None:
            self.status = self.console.status(text)
            self.status.start()
        else:
            self.status.update(text)
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}")

    def done(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


def _start(argv: list[str], log: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """A child process that announces itself with one JSON line on stdout."""
    with open(log, "a") as err:
        process = subprocess.Popen([sys.executable, "-m", "strongroom", *argv], stdout=subprocess.PIPE, stderr=err,
                                   text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
                                   preexec_fn=die_with_parent)
    line = process.stdout.readline() if process.stdout else ""
    try:
        return process, json.loads(line)
    except ValueError:
        process.kill()
        process.wait(10)
        raise click.ClickException(f"strongroom {argv[0]} did not start: {log.read_text()[-1500:]}") from None


def _handed_over(agent: subprocess.Popen[str]) -> bool:
    """Whether the agent that ended handed its socket to another one (an agent started on the same socket)."""
    if agent.returncode != 0 or agent.stdout is None:
        return False
    return any(line.strip() == json.dumps({"handed_over": True}) for line in agent.stdout.read().splitlines())


def _stop_agent(agent: subprocess.Popen[str] | None, report: Reporter) -> None:
    """SIGTERM to the agent. Without applications connected it ends at once; with some, it says it holds them
    for the next start's agent (``{"holding": N}``) and is left running, so that they keep their connection."""
    import select

    if agent is None or agent.poll() is not None or agent.stdout is None:
        terminate(agent)
        return
    agent.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        readable, _, _ = select.select([agent.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = agent.stdout.readline() if readable else ""
        if not line:
            break  # it ended (or said nothing in time)
        try:
            holding = json.loads(line).get("holding")
        except (ValueError, AttributeError):
            continue
        if holding:
            report.step(f"the agent holds {holding} PKCS#11 applications for {AGENT_GRACE_S} s: the next "
                        "start takes them over")
            return
    terminate(agent)


def _write_private(path: Path, data: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")


def _describe(control: Any, cluster_id: str) -> dict[str, Any] | None:
    from ..control.api_client import ControlError

    try:
        clusters = control.call("DescribeClusters", Filters={"clusterIds": [cluster_id]})["Clusters"]
    except ControlError:
        return None
    return clusters[0] if clusters and clusters[0]["State"] != "DELETED" else None


def _live(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for h in cluster["Hsms"] if h["State"] in ("ACTIVE", "DEGRADED", "CREATE_IN_PROGRESS")]


def _all_active(cluster: dict[str, Any] | None, count: int) -> bool:
    return cluster is not None and cluster["State"] == "ACTIVE" and len(cluster["Hsms"]) >= count and all(
        h["State"] == "ACTIVE" for h in cluster["Hsms"])


def _activate(cluster: dict[str, Any], anchor: Path, credentials: dict[str, Any]) -> None:
    """Change the initial admin password (the first HSM's, from ``credentials["admin"]["initial_password"]``) and
    create the crypto user, whichever of the two is not done yet (a first start may have stopped between them)."""
    import strongroom.client as sdk

    from ..errors import PinIncorrect, StrongroomError

    admin_pw, user = credentials["admin"]["password"], credentials["crypto_user"]
    initial = credentials["admin"].get("initial_password")
    config = {"endpoints": [h["Endpoint"] for h in cluster["Hsms"] if h.get("Endpoint")],
              "trust_anchor": str(anchor.resolve()), "timeout_s": 60, "server_name": cluster["ClusterId"],
              **{k: str(anchor.parent.resolve() / v) for k, v in client_certificates(anchor.parent).items()}}
    with sdk.connect(sdk.ClientConfig.from_dict(config, certificate="cli")) as connection:
        try:
            if initial:
                admin = connection.login("admin", initial, role="admin")
                admin.activate(admin_pw)
                admin.close()
        except PinIncorrect:
            pass  # activated before
        with connection.login("admin", admin_pw, role="admin") as admin:
            if user["username"] not in [u["username"] for u in admin.list_users()]:
                try:
                    admin.create_user(user["username"], user["password"])
                except StrongroomError:
                    if user["username"] not in [u["username"] for u in admin.list_users()]:
                        raise


def _converge(control: Any, data_dir: Path, cluster_id: str | None, hsms: int, report: Reporter,
              wait: Callable[..., Any], mode: str | None = None) -> str:
    """Drive the cluster to ACTIVE with at least ``hsms`` HSMs from wherever it stands (nothing, or a first
    start that stopped half way); return its id. A new cluster is made in ``mode`` (``FIPS`` if ``None``); an
    existing one keeps its own, and the report says so when ``mode`` asks for the other."""
    state_file = data_dir / "cluster.json"
    credentials = json.loads((data_dir / "credentials.json").read_text())
    cluster = _describe(control, cluster_id) if cluster_id else None
    if cluster is None or not cluster_id:
        report.step("creating the cluster")
        subnets = [f"subnet-{secrets.token_hex(4)}" for _ in range(max(1, min(hsms, 10)))]
        cluster_id = str(control.call("CreateCluster", HsmType="hsm2m.medium", SubnetIds=subnets,
                                      Mode=mode or "FIPS")["Cluster"]["ClusterId"])
        state_file.write_text(json.dumps({"cluster_id": cluster_id}, indent=2) + "\n")
        cluster = _describe(control, cluster_id)
    else:
        report.step(f"resuming cluster {cluster_id}")
    if cluster is None:
        raise click.ClickException(f"the control plane does not describe cluster {cluster_id}")
    if mode is not None and cluster.get("Mode", "FIPS") != mode:
        report.step(f"cluster {cluster_id} keeps its mode {cluster.get('Mode', 'FIPS')}: a cluster's mode is fixed "
                    f"when it is created (--mode {mode} applies to a new data directory)")
    zones = sorted(cluster["SubnetMapping"])
    if cluster["State"] == "UNINITIALIZED":
        if not _live(cluster):
            report.step("creating the first HSM (it makes the cluster key)")
            control.call("CreateHsm", ClusterId=cluster_id, AvailabilityZone=zones[0])
        cluster = wait(lambda: _describe(control, cluster_id), lambda c: c and c["Certificates"].get("ClusterCsr"))
        report.step("initialising the cluster with the local owner CA")
        ca_cert, ca_key, anchor = owner_ca(data_dir)
        control.call("InitializeCluster", ClusterId=cluster_id, TrustAnchor=anchor.read_text(),
                     SignedCert=sign_csr(cluster["Certificates"]["ClusterCsr"], ca_cert, ca_key))
    cluster = wait(lambda: _describe(control, cluster_id),
                   lambda c: c and c["State"] in ("INITIALIZED", "ACTIVE", "DEGRADED"))
    if cluster["State"] == "INITIALIZED":
        if cluster.get("PreCoPassword"):  # the first HSM's random initial password, until activation
            credentials["admin"]["initial_password"] = cluster["PreCoPassword"]
            _write_private(data_dir / "credentials.json", credentials)
        report.step("activating the cluster and creating the crypto user")
        _activate(cluster, data_dir / "owner-ca.crt", credentials)
    wait(lambda: _describe(control, cluster_id), lambda c: _all_active(c, 1))
    while len(_live(_describe(control, cluster_id) or {"Hsms": []})) < hsms:
        count = len(_live(_describe(control, cluster_id) or {"Hsms": []}))
        report.step(f"creating HSM {count + 1} of {hsms} (it joins and catches up)")
        control.call("CreateHsm", ClusterId=cluster_id, AvailabilityZone=zones[count % len(zones)])
        wait(lambda: _describe(control, cluster_id), lambda c, n=count + 1: _all_active(c, n))
    return cluster_id


def open_to_group(data_dir: Path, group: str) -> None:
    """Let members of ``group`` reach the PKCS#11 socket in ``data_dir``: the data directory becomes searchable by
    the group (its group set to ``group``, group bits ``--x``: no listing, no writing) unless it already is; the
    socket itself the agent makes 0660 with that group.

    Raises:
        click.ClickException: no such group, or a folder above ``data_dir`` the group cannot search (``up`` does
            not change folders it did not make).
    """
    from ..pkcs11.agent import group_id, unreachable_folder

    try:
        gid = group_id(group)
    except ValueError as exc:
        raise click.ClickException(f"--socket-group: {exc}") from None
    if unreachable_folder(data_dir, gid) == data_dir:
        os.chown(data_dir, -1, gid)
        os.chmod(data_dir, (data_dir.stat().st_mode & 0o707) | 0o010)  # noqa: S103 (search only, for the group)
    closed = unreachable_folder(data_dir, gid)
    if closed is not None:
        mode = closed.stat().st_mode & 0o777
        raise click.ClickException(
            f"--socket-group {group}: the group cannot reach {data_dir / 'pkcs11.sock'}: {closed} (mode {mode:04o}) "
            f"is not searchable by it; allow it (chgrp {group} and chmod g+x, or chmod o+x) or choose a --data-dir "
            "the group can reach")


def run(data_dir: Path, hsms: int, control_listen: str | None, hash_memory_kib: int, as_json: bool,
        socket_group: str | None = None, mode: str | None = None) -> None:
    from ..control.api_client import ControlClient, ControlError
    from ..control.process import AlreadyRunning, hold_lock
    from ..trust.ca import CertificateAuthority

    report = Reporter(as_json)
    os.umask(0o077)  # what up and its processes make is the owner's alone (--socket-group is set by name)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    if socket_group is not None:
        open_to_group(data_dir, socket_group)
    try:
        lock = hold_lock(data_dir / "up.lock", "strongroom up")
    except AlreadyRunning as exc:
        raise click.ClickException(str(exc)) from None
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def wait(what: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float = START_TIMEOUT_S) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = what()
            if done(value):
                return value
            if stop.is_set():
                raise click.Abort()
            if time.monotonic() > deadline:
                raise click.ClickException(f"timed out waiting; last state: {value}")
            time.sleep(0.3)

    state_file, credentials_file = data_dir / "cluster.json", data_dir / "credentials.json"
    previous = json.loads(state_file.read_text()) if state_file.exists() else {}
    if control_listen is None:  # the same API address as last time, if it is free
        control_listen = "127.0.0.1:" + (previous.get("control_plane_url", "").rpartition(":")[2] or "0")
    control_process = agent = None
    try:
        if not (data_dir / "fleet" / "fleet-ca.key").exists():
            report.step("making the fleet (the CA that vouches for genuine HSMs)")
            (data_dir / "fleet").mkdir(mode=0o700, exist_ok=True)
            CertificateAuthority(data_dir / "fleet", "fleet-ca", days=3650)
        if not credentials_file.exists():  # before anything uses them: a start cut short must not lose them
            _write_private(credentials_file, {
                "admin": {"username": "admin", "password": secrets.token_urlsafe(18)},
                "crypto_user": {"username": CRYPTO_USER, "password": secrets.token_urlsafe(18)}})
        report.step("starting the control plane")
        argv = ["control", "--dir", str(data_dir / "control"), "--fleet", str(data_dir / "fleet"),
                "--password-hash-memory-kib", str(hash_memory_kib), *control_tls(data_dir)]
        try:
            control_process, info = _start([*argv, "--listen", control_listen], logs / "control.log")
        except click.ClickException:
            control_process, info = _start([*argv, "--listen", "127.0.0.1:0"], logs / "control.log")
        keys = json.loads(Path(info["credentials"]).read_text())
        control = ControlClient(info["url"], keys["access_key_id"], keys["secret_access_key"], keys["region"],
                                str(data_dir / "control-ca.crt"))
        cluster_id = _converge(control, data_dir, previous.get("cluster_id"), hsms, report, wait, mode)
        cluster = _describe(control, cluster_id)
        if cluster is None:
            raise click.ClickException(f"the control plane does not describe cluster {cluster_id}")
        credentials = json.loads(credentials_file.read_text())
        credentials["control_plane"] = keys
        _write_private(credentials_file, credentials)
        socket_path = data_dir / "pkcs11.sock"
        summary = _summary(info["url"], cluster, data_dir)
        _write_atomically(state_file, summary)
        report.step("starting the client agent (PKCS#11)")
        group = ["--socket-group", socket_group] if socket_group is not None else []
        agent, started = _start(["client", "--config", str(state_file), "--socket", str(socket_path),
                                 "--handover-grace", str(AGENT_GRACE_S), *group], logs / "agent.log")
        if started.get("taken_over"):
            count = started["taken_over"]
            report.step(f"the agent took over {count} PKCS#11 application{'s' if count != 1 else ''} from the last "
                        "start")
        report.done()
        _announce(report, data_dir, summary, credentials)
        while not stop.wait(1.0):
            if agent is not None and agent.poll() is not None and _handed_over(agent):
                report.step(f"another agent took {socket_path} over (its applications with it)")
                report.done()
                agent = None  # not this process's to watch or stop any more
            if control_process.poll() is not None or (agent is not None and agent.poll() is not None):
                raise click.ClickException("a Strongroom process stopped; see the logs in " + str(logs))
            summary = _follow_membership(control, cluster_id, info["url"], data_dir, summary)
    except ControlError as exc:
        raise click.ClickException(f"the control plane refused: {exc}") from None
    finally:
        report.done()
        _stop_agent(agent, report)
        report.done()
        terminate(control_process, 90)
        lock.close()


def _summary(url: str, cluster: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """``cluster.json``: where everything is, and an SDK configuration of the cluster's HSMs (those serving,
    ``ACTIVE`` or ``DEGRADED``, as the control plane describes them). The SDK's paths are relative to the file,
    so a copied data directory names its own files; ``pkcs11_socket`` is absolute, as ``P11_KIT_SERVER_ADDRESS``
    needs it (each start writes the file again, so a copy names its own socket)."""
    serving = [h for h in cluster["Hsms"] if h["State"] in ("ACTIVE", "DEGRADED") and h.get("Endpoint")]
    return {
        "control_plane_url": url, "control_plane_ca": "control-ca.crt", "cluster_id": cluster["ClusterId"],
        "mode": cluster.get("Mode", "FIPS"),
        "hsms": [{"hsm_id": h["HsmId"], "endpoint": h["Endpoint"]} for h in serving],
        "trust_anchor": f"{OWNER_CA}.crt", "pkcs11_socket": str(data_dir / "pkcs11.sock"),
        "pkcs11_module": str(PKCS11_MODULE),
        # the SDK reads these (paths relative to this file): the agent's certificate is the SDK's default,
        # strongroom-cli reads cli_cert and cli_key; the HSMs' certificates name the cluster id
        "endpoints": [h["Endpoint"] for h in serving], "server_name": cluster["ClusterId"],
        **client_certificates(data_dir),
    }


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` whole under a temporary name, then rename it into place: a reader sees the old file or
    the new one, never a part."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)


def _follow_membership(control: Any, cluster_id: str, url: str, data_dir: Path,
                       summary: dict[str, Any]) -> dict[str, Any]:
    """Rewrite ``cluster.json`` when the control plane's view of the cluster's HSMs changed (an HSM created,
    deleted or replaced); the SDK, the agent and the command line follow the file. Returns the current summary."""
    try:
        cluster = _describe(control, cluster_id)
    except OSError:  # the control plane did not answer this time; asked again in a second
        return summary
    if cluster is None:
        return summary
    fresh = _summary(url, cluster, data_dir)
    if fresh["hsms"] and fresh != summary:
        _write_atomically(data_dir / "cluster.json", fresh)
        return fresh
    return summary


def _announce(report: Reporter, data_dir: Path, summary: dict[str, Any], credentials: dict[str, Any]) -> None:
    user = credentials["crypto_user"]
    if report.as_json:
        click.echo(json.dumps({"ready": True, **summary}))
        sys.stdout.flush()
        return
    hsms = "\n".join(f"  {h['hsm_id']}  {h['endpoint']}" for h in summary["hsms"])
    report.console.print("[bold]Strongroom is up[/bold]")
    report.console.print(  # plain lines, no box: the commands copy as they are
        f"cluster {summary['cluster_id']} ({summary['mode']}) with {len(summary['hsms'])} HSMs\n{hsms}\n"
        f"control plane {summary['control_plane_url']}\n"
        f"cluster.json and credentials.json (mode 0600) in {data_dir}\n\n"
        "Next steps:\n"
        f"  export P11_KIT_SERVER_ADDRESS=unix:path={summary['pkcs11_socket']}\n"
        f"  pkcs11-tool --module {summary['pkcs11_module']} -l -O   # PIN {user['username']}:<password>, asked\n"
        f"  python -c 'import strongroom.client as s; s.connect(\"{data_dir}/cluster.json\")'\n"
        f"  aws cloudhsmv2 describe-clusters --endpoint-url {summary['control_plane_url']} "
        f"--ca-bundle {data_dir / summary['control_plane_ca']}", markup=False)
    click.echo("ready")
    sys.stdout.flush()
