"""A real node process for the benchmarks: certificates, data directory, start/stop, and /proc readings.

The node runs as ``python -m strongroom node`` on loopback with a throw-away CA (ECDSA P-256, like a real
cluster). ``fill_objects`` seals token objects straight into a data directory through the node's own path
(the same envelope and index columns as ``C_CreateObject``), so a node can be started on a large store
without creating every object over the network.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Cheap password hashing: logins are not what is measured, and the benchmark logs in a few times.
HASH_MEMORY_KIB = 1024
ADMIN_PW = "admin-pass-1"
USER = "bench"
USER_PW = "bench-pass"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ PKI
@dataclass
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(folder: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1 / localhost and the client certificate every node requires,
    written as PEM files into ``folder``."""
    from strongroom.trust.ca import CertificateAuthority

    folder.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority(folder, "ca", days=1)
    server, client = ca.issue("node", server=True), ca.issue("client", server=False)
    return Pki(ca.issued.cert, server.cert, server.key, client.cert, client.key)


# ------------------------------------------------------------------ process
def strongroom_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "strongroom", *args]


def initial_password_file(data_dir: Path) -> Path:
    """Where ``init_node`` has the node write its initial admin password (beside the data directory)."""
    return data_dir.parent / f"{data_dir.name}.initial-password"


def initial_password(data_dir: Path) -> str:
    """The initial admin password the node made for ``data_dir`` (random, made inside the HSM)."""
    return initial_password_file(data_dir).read_text().strip()


def init_node(data_dir: Path) -> str:
    """``strongroom init-node`` into a new data directory; returns the initial admin password the node made."""
    initial_password_file(data_dir).unlink(missing_ok=True)
    done = subprocess.run(
        strongroom_cmd(
            "init-node",
            "--data-dir",
            str(data_dir),
            "--initial-password-file",
            str(initial_password_file(data_dir)),
            "--cluster-id",
            "cluster-bench000001",
            "--password-hash-memory-kib",
            str(HASH_MEMORY_KIB),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"init-node failed: {done.stderr}")
    return initial_password(data_dir)


@dataclass
class NodeProcess:
    process: subprocess.Popen
    endpoint: str
    start_s: float
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def status(self, field: str) -> int:
        """A ``kB`` field of /proc/PID/status (``VmRSS``, ``VmHWM``), in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def cpu_s(self) -> float:
        """User + system CPU seconds of the whole node process so far (/proc/PID/stat)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def raft_address(data_dir: Path) -> str:
    """The node's replication address, chosen once (a node keeps it across restarts)."""
    import socket

    path = data_dir.parent / f"{data_dir.name}.raft"
    if not path.exists():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            path.write_text(f"127.0.0.1:{sock.getsockname()[1]}")
    return path.read_text()


def start_node(
    data_dir: Path, pki: Pki, *, wrapper: list[str] | None = None, timeout_s: float = 300,
    extra: list[str] | None = None,
) -> NodeProcess:
    """Start ``strongroom node`` on 127.0.0.1 (any free port) and wait for its ``listening`` line.

    ``wrapper`` goes in front of the Python command (for example a profiler); ``extra`` after its options.
    """
    log = data_dir.parent / f"{data_dir.name}.log"
    cmd = strongroom_cmd(
        "node",
        "--data-dir",
        str(data_dir),
        "--listen",
        "127.0.0.1:0",
        "--cert",
        str(pki.server_cert),
        "--key",
        str(pki.server_key),
        "--client-ca",
        str(pki.ca_cert),
        "--password-hash-memory-kib",
        str(HASH_MEMORY_KIB),
        "--raft-listen",
        raft_address(data_dir),
        *(extra or []),
    )
    t0 = time.perf_counter()
    with open(log, "w") as err:
        process = subprocess.Popen(
            [*(wrapper or []), *cmd],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + timeout_s
    while True:
        line = process.stdout.readline()
        if not line or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the node did not start: {log.read_text()[-2000:]}")
        try:
            endpoint = json.loads(line)["listening"]
            break
        except (ValueError, KeyError):
            continue  # a wrapper's own output
    return NodeProcess(process, endpoint, time.perf_counter() - t0, log)


def client_config(node: NodeProcess, pki: Pki) -> dict:
    return {"endpoints": [node.endpoint], "trust_anchor": str(pki.ca_cert), "client_cert": str(pki.client_cert),
            "client_key": str(pki.client_key), "timeout_s": 120}


def setup_users(config: dict, initial: str) -> None:
    """Activate the admin (its ``initial`` password, from :func:`init_node`) and create the crypto user ``USER``
    through the SDK."""
    import strongroom.client as sdk

    with sdk.connect(config) as cluster:
        admin = cluster.login("admin", initial, role="admin")
        admin.activate(ADMIN_PW)
        admin.create_user(USER, USER_PW)
        admin.close()


# ------------------------------------------------------------------ big store
def label_of(i: int) -> str:
    return f"key-{i}"


def fill_objects(
    data_dir: Path,
    count: int,
    *,
    batch: int = 5_000,
    advance: Callable[[int], None] = lambda n: None,
    lookups: int = 0,
) -> dict:
    """Activate the admin, create ``USER`` and seal ``count`` AES token keys labelled ``key-0``, ``key-1``, …
    into an initialised data directory, one log entry per ``batch``. Run before the node starts.

    With ``lookups`` > 0 it also times that many find-by-label calls in-process (no network), for
    comparison with the same lookups through the SDK. Returns timings and the in-process latencies.
    """
    from strongroom.node import HSM, Application, Settings
    from strongroom.objects import templates
    from strongroom.objects.attributes import normalize_template
    from strongroom.objects.model import HsmObject
    from strongroom.replication import Change, RaftLog
    from strongroom.vocab import CKA, CKK, CKO, CKU

    # The node's own log (the address it will serve with), so the node process continues the same log.
    address = raft_address(data_dir)
    hsm = HSM(data_dir, settings=Settings(argon2_memory_kib=HASH_MEMORY_KIB, argon2_time_cost=1),
              replication=lambda machine, secret: RaftLog(machine, data_dir / "raft", address, [], secret))
    try:
        app = Application(hsm)
        s = app.open_session()
        app.login(s, CKU.SO, f"admin:{initial_password(data_dir)}")
        app.activate(s, ADMIN_PW)
        app.create_user(s, USER, USER_PW, "crypto-user")
        app.close_all_sessions()
        start = time.perf_counter()
        for first in range(0, count, batch):
            change = Change()
            for i in range(first, min(first + batch, count)):
                attrs = templates.for_create(
                    normalize_template(
                        {
                            CKA.CLASS: CKO.SECRET_KEY,
                            CKA.KEY_TYPE: CKK.AES,
                            CKA.VALUE: bytes(32),
                            CKA.TOKEN: True,
                            CKA.LABEL: label_of(i),
                        }
                    )
                )
                material = attrs.pop(CKA.VALUE)
                obj = HsmObject(hsm.repository.new_handle(True), attrs, material, USER)
                hsm.repository.put_object(change, obj, new=True)
            hsm.commit(change, timeout_s=120)
            advance(min(batch, count - first))
        fill_s = time.perf_counter() - start
        latencies: list[int] = []
        if lookups:
            hsm.repository.drop_cached()  # as after a restart: nothing decoded yet
            app.login(s := app.open_session(), CKU.USER, f"{USER}:{USER_PW}")
            for n in range(lookups):
                label = label_of(lookup_index(n, count))
                t0 = time.perf_counter_ns()
                found = app.find(s, {CKA.LABEL: label})
                latencies.append(time.perf_counter_ns() - t0)
                assert len(found) == 1, (label, found)
            app.close_all_sessions()
        return {"fill_s": fill_s, "latencies_ns": latencies}
    finally:
        hsm.close()


def lookup_index(n: int, count: int) -> int:
    """The n-th label to look up: spread over the whole store, no repeats within ``count`` lookups."""
    return (n * 7919) % count
