"""A cluster of real ``strongroom node`` processes on loopback: a founder and members that join it with their
fleet identities."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

import strongroom.client as sdk
from strongroom.node import HSM
from strongroom.trust.ca import CertificateAuthority
from strongroom.trust.fleet import provision

from ..fixtures.cluster import ADMIN_PW, ALICE_PW, client_config
from .nodes import NodeProcess, init_node, start_node


@dataclass
class Cluster:
    root: Path
    pki: dict
    fleet: CertificateAuthority
    nodes: list[NodeProcess] = field(default_factory=list)
    count: int = 0
    flags: tuple[str, ...] = ()

    def config(self, nodes: list[NodeProcess] | None = None, **extra) -> dict:
        nodes = self.nodes if nodes is None else nodes
        return client_config(self.pki, [n.endpoint for n in nodes], **extra)

    def add_node(self, name: str | None = None, *, fleet: CertificateAuthority | None = None) -> NodeProcess:
        """Provision a data directory and start a node that joins through the running members."""
        self.count += 1
        data = self.root / (name or f"hsm{self.count}")
        fleet = fleet or self.fleet
        provision(data, fleet.issued.cert, fleet.issued.key, data.name)
        join = self.root / f"{data.name}.join.json"
        join.write_text(json.dumps(self.config()))
        pin = self.root / f"{data.name}.pin"
        pin.write_text(f"admin:{ADMIN_PW}")
        proc = start_node(data, self.pki["server"], client_ca=self.pki["ca"],
                          extra=(*self.flags, "--join-config", str(join), "--join-pin-file", str(pin)))
        self.nodes.append(proc)
        return proc

    def restart(self, proc: NodeProcess) -> NodeProcess:
        """Start a node again (stopping it first if it runs) on the same addresses with the same data directory."""
        proc.stop()
        listen = proc.endpoint
        fresh = start_node(proc.data_dir, self.pki["server"], client_ca=self.pki["ca"], listen=listen,
                           extra=self.flags)
        self.nodes[self.nodes.index(proc)] = fresh
        return fresh

    def status(self, proc: NodeProcess) -> dict:
        with sdk.connect(self.config([proc])) as c:
            return c.cluster_status()

    def leader(self) -> NodeProcess:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for proc in self.nodes:
                if proc.process.poll() is not None:
                    continue
                try:
                    status = self.status(proc)
                except Exception:  # noqa: S112 - a member that cannot answer now is not the leader
                    continue
                if status["role"] == "leader":
                    return proc
            time.sleep(0.1)
        raise AssertionError("no leader")

    def wait_applied(self, index: int, nodes: list[NodeProcess] | None = None, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        for proc in nodes or self.nodes:
            while self.status(proc)["applied_index"] < index:
                assert time.monotonic() < deadline, f"{proc.endpoint} did not apply index {index}"
                time.sleep(0.05)

    def stop_all(self) -> None:
        for proc in self.nodes:
            proc.stop()

    def check_logs(self) -> None:
        for proc in self.nodes:
            text = proc.log_text()
            assert "Traceback" not in text, text


def form(root: Path, pki: dict, size: int = 3, flags: tuple[str, ...] = ()) -> Cluster:
    """A founder, activated, with the crypto user alice, and ``size - 1`` members joined through it; ``flags``
    go to every ``strongroom node`` command."""
    fleet = CertificateAuthority(root, "fleet-ca")
    cluster = Cluster(root, pki, fleet, flags=flags)
    founder = root / "hsm0"
    provision(founder, fleet.issued.cert, fleet.issued.key, "hsm0")
    preco = init_node(founder)
    cluster.nodes.append(start_node(founder, pki["server"], client_ca=pki["ca"], extra=flags))
    with sdk.connect(cluster.config()) as c:
        admin = c.login("admin", preco, role="admin")
        admin.activate(ADMIN_PW)
        admin.create_user("alice", ALICE_PW)
        admin.close()
    for _ in range(size - 1):
        cluster.add_node()
    return cluster


@contextmanager
def running(root: Path, pki: dict, size: int, flags: tuple[str, ...] = ()) -> Iterator[Cluster]:
    """A cluster formed by :func:`form`, stopped afterwards; its nodes' logs must hold no traceback."""
    cluster = form(root, pki, size, flags)
    try:
        yield cluster
    finally:
        cluster.stop_all()
    cluster.check_logs()


def boundary_view(data_dir: Path) -> dict[int, bytes]:
    """Test-only look inside a stopped node's boundary: every token object's attributes and value, and every
    user, decoded from its store."""
    hsm = HSM(data_dir)
    try:
        view = {}
        for row in hsm.store.iter_objects():
            obj = hsm.repository.get_object(row.handle)
            view[obj.handle] = msgspec.msgpack.encode([sorted((int(k), repr(v)) for k, v in obj.attrs.items()),
                                                       obj.material, obj.owner, sorted(obj.shared)])
        for user in hsm.repository.all_users():
            view[f"user:{user.name}"] = msgspec.msgpack.encode([user.role, user.password_hash, user.failures,
                                                                 user.locked])
        return view
    finally:
        hsm.close()


def kill(proc: NodeProcess) -> None:
    proc.process.send_signal(signal.SIGKILL)
    proc.process.wait(10)
