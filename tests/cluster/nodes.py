"""Start and stop real ``strongroom node`` processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .pki import CA, Issued

TEST_HASH_MEMORY_KIB = "1024"


@dataclass
class NodeProcess:
    data_dir: Path
    endpoint: str
    process: subprocess.Popen
    log: Path
    args: list[str] = field(default_factory=list)
    raft: str = ""

    def log_text(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def strongroom(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "strongroom", *args], capture_output=True, text=True,
                          timeout=60, **kwargs)


def init_node(data_dir: Path, cluster_id: str = "cluster-test0000001", *extra: str) -> str:
    """Initialise a first node assembled by hand; return the initial admin password it made."""
    done = strongroom("init-node", "--data-dir", str(data_dir), "--initial-password-file",
                      str(initial_password_file(data_dir)), "--cluster-id", cluster_id, "--password-hash-memory-kib",
                      TEST_HASH_MEMORY_KIB, *extra)
    assert done.returncode == 0, done.stderr
    return initial_password(data_dir)


def initial_password_file(data_dir: Path) -> Path:
    return data_dir.parent / f"{data_dir.name}.initial-password"


def initial_password(data_dir: Path) -> str:
    """The initial admin password ``init_node`` received for ``data_dir``."""
    return initial_password_file(data_dir).read_text().strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_node(data_dir: Path, server: Issued | None, *, client_ca: CA | None = None,
               extra: tuple[str, ...] = (), listen: str = "127.0.0.1:0") -> NodeProcess:
    """A node process; ``server`` None: a managed node (``--managed``: TLS from its fleet identity and then
    from the cluster key). Clients must present a certificate from ``client_ca`` (a hand-assembled node needs
    one), the node's fleet CA or, managed, the owner's CA once the cluster is initialised."""
    tls = ["--cert", str(server.cert), "--key", str(server.key)] if server is not None else ["--managed"]
    args = ["node", "--data-dir", str(data_dir), "--listen", listen, *tls, "--password-hash-memory-kib",
            TEST_HASH_MEMORY_KIB, *extra]
    if "--raft-listen" not in extra:
        raft = (data_dir.parent / f"{data_dir.name}.raft")
        if not raft.exists():  # a restarted node keeps its replication address
            raft.write_text(f"127.0.0.1:{free_port()}")
        args += ["--raft-listen", raft.read_text()]
    if client_ca is not None:
        args += ["--client-ca", str(client_ca.issued.cert)]
    log = data_dir.parent / f"{data_dir.name}.log"
    with open(log, "a") as err:
        process = subprocess.Popen([sys.executable, "-m", "strongroom", *args], stdout=subprocess.PIPE,
                                   stderr=err, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise RuntimeError(f"node did not start: {log.read_text()}")
    announced = json.loads(line)
    return NodeProcess(data_dir, announced["listening"], process, log, args, announced.get("raft", ""))
