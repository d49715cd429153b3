"""Where HSMs run. The control plane asks a provider to start, check and stop HSM nodes; the default provider runs
them as local ``strongroom node`` processes (one data directory and port each). Another placement (hosts,
containers) is another :class:`Provider`.

A *placement* is the JSON-able record a provider keeps for one HSM (data directory, addresses, process id), stored
with the HSM's row so that a restarted control plane finds its HSMs again. The local provider stores an HSM's data
directory by its name inside the provider's root and resolves it where it runs, so a control plane started on a
copy of its directory (or from another working directory) runs on its own HSMs' data.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from ..errors import TransportError
from ..vocab import CKR

START_TIMEOUT_S = 60.0
# in an HSM's data directory once it applied its own removal from the membership (the node's
# strongroom.replication.log.REMOVED_MARKER, inside its raft directory)
REMOVED_MARKER = Path("raft") / "removed"


class ProviderError(TransportError):
    """``CKR_FUNCTION_FAILED``: an HSM could not be prepared, started or stopped. Retryable: the lifecycle worker
    tries again on its next step."""

    ckr = CKR.FUNCTION_FAILED
    retryable = True


class Provider(Protocol):
    def prepare(self, cluster_id: str, hsm_id: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new HSM with its fleet identity, not started: its placement (``endpoint`` ``HOST:PORT``, ``raft``).
        ``previous`` is the placement of the HSM this one replaces (its address is kept)."""

    def certificate(self, placement: dict[str, Any]) -> bytes:
        """The prepared HSM's fleet certificate (PEM), for the cluster to admit it."""

    def launch(self, cluster_id: str, placement: dict[str, Any], *, founder: bool,
               join_config: dict[str, Any] | None, mode: str = "FIPS") -> dict[str, Any]:
        """Start a prepared HSM: the founder of a new cluster of ``mode`` (``FIPS`` or ``NON_FIPS``; it makes the
        cluster key), or one that joins through ``join_config`` (a client configuration of the members; it
        learns the mode from the cluster). Returns its placement."""

    def resume(self, placement: dict[str, Any]) -> dict[str, Any]:
        """Start an existing HSM again on its data (after the control plane restarted)."""

    def alive(self, placement: dict[str, Any]) -> bool:
        """Whether the HSM's process runs."""

    def removed(self, placement: dict[str, Any]) -> bool:
        """Whether the HSM applied its own removal from the cluster's membership (an admin's ``remove_member``):
        it stopped for good."""

    def stop(self, placement: dict[str, Any]) -> None:
        """Stop the HSM (its data stays)."""

    def destroy(self, placement: dict[str, Any]) -> None:
        """Stop the HSM and erase its data."""


def die_with_parent() -> None:
    """In a child before exec: have Linux send it SIGTERM when the process that started it dies (prctl
    PR_SET_PDEATHSIG), so that a killed control plane or ``strongroom up`` leaves no orphan behind."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_strays(data_dir: Path, timeout_s: float = 15.0) -> None:
    """Stop processes still serving ``data_dir`` (left by a control plane that was killed before this one)."""
    marker = f"--data-dir\0{data_dir}\0".encode()
    strays = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes() + b"\0":
                strays.append(int(entry.name))
        except OSError:
            continue
    for pid in strays:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + timeout_s
    for pid in strays:
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def terminate(process: subprocess.Popen[str] | None, timeout_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s`` seconds; nothing for a process that already ended."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalProvider:
    """HSMs as child processes on loopback.

    Args:
        root: where HSM data directories go (``root/<hsm id>[-<n>]``).
        fleet: the fleet directory (``fleet-ca.crt``, ``fleet-ca.key``): the local provider is also the factory
            that gives each new HSM its fleet identity.
        node_args: extra ``strongroom node`` options (e.g. ``--password-hash-memory-kib``).
    """

    def __init__(self, root: Path, fleet: Path, node_args: tuple[str, ...] = ()) -> None:
        self.root = Path(root).resolve()
        self.fleet = Path(fleet).resolve()
        self.node_args = node_args
        self.processes: dict[int, subprocess.Popen[str]] = {}
        self.lock = threading.Lock()

    def data_dir(self, placement: dict[str, Any]) -> Path:
        """Where the HSM of ``placement`` keeps its data: its folder name inside ``root``. A placement an earlier
        version stored with an absolute path resolves by the folder's name too, so a copied directory never
        runs on the original's data."""
        return self.root / Path(str(placement["data_dir"])).name

    def _run(self, *args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "strongroom", *args], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise ProviderError(f"strongroom {args[0]} failed: {done.stderr.strip()[-500:]}")

    def prepare(self, cluster_id: str, hsm_id: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        generation = (previous or {}).get("generation", 0) + 1
        name = hsm_id if generation == 1 else f"{hsm_id}-{generation}"
        data_dir = self.root / name
        self._run("fleet", "provision", "--fleet", str(self.fleet), "--data-dir", str(data_dir), "--name", hsm_id)
        port = int((previous or {}).get("endpoint", ":0").rpartition(":")[2]) or _free_port()
        return {"data_dir": name, "endpoint": f"127.0.0.1:{port}", "raft": f"127.0.0.1:{_free_port()}",
                "generation": generation}

    def certificate(self, placement: dict[str, Any]) -> bytes:
        return (self.data_dir(placement) / "identity.crt").read_bytes()

    def launch(self, cluster_id: str, placement: dict[str, Any], *, founder: bool,
               join_config: dict[str, Any] | None, mode: str = "FIPS") -> dict[str, Any]:
        data_dir = self.data_dir(placement)
        if founder:
            self._run("init-node", "--data-dir", str(data_dir), "--cluster-id", cluster_id, "--cluster-key",
                      "--mode", mode, *self._hash_args())
        join: list[str] = []
        if join_config is not None:
            join_file = data_dir.parent / f"{data_dir.name}.join.json"
            anchor = Path(join_config["trust_anchor"]).resolve()  # named relative to the file, as the node reads it
            join_file.write_text(json.dumps({**join_config,
                                             "trust_anchor": os.path.relpath(anchor, join_file.parent)}))
            join = ["--join-config", str(join_file)]
        return self._start(placement, join)

    def _hash_args(self) -> list[str]:
        args = list(self.node_args)
        return args[args.index("--password-hash-memory-kib"):][:2] if "--password-hash-memory-kib" in args else []

    def _start(self, placement: dict[str, Any], extra: list[str]) -> dict[str, Any]:
        data_dir = self.data_dir(placement)
        stop_strays(data_dir)
        with open(data_dir.parent / f"{data_dir.name}.log", "a") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "strongroom", "node", "--managed", "--data-dir", str(data_dir), "--listen",
                 placement["endpoint"], "--raft-listen", placement["raft"], *self.node_args, *extra],
                stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT_S
        line = ""
        while time.monotonic() < deadline:
            line = process.stdout.readline() if process.stdout else ""
            if not line or line.startswith("{"):
                break
        if not line.startswith("{"):
            process.kill()
            process.wait(10)
            tail = (data_dir.parent / f"{data_dir.name}.log").read_text()[-800:]
            raise ProviderError(f"the HSM did not start: {tail}")
        with self.lock:
            self.processes[process.pid] = process
        threading.Thread(target=self._drain, args=(process,), daemon=True).start()
        return {**placement, "data_dir": data_dir.name, "pid": process.pid}

    @staticmethod
    def _drain(process: subprocess.Popen[str]) -> None:
        if process.stdout is not None:
            for _ in process.stdout:
                pass

    def resume(self, placement: dict[str, Any]) -> dict[str, Any]:
        return self._start(placement, [])

    def alive(self, placement: dict[str, Any]) -> bool:
        with self.lock:
            process = self.processes.get(placement.get("pid", -1))
        return process is not None and process.poll() is None

    def removed(self, placement: dict[str, Any]) -> bool:
        return bool(placement.get("data_dir")) and (self.data_dir(placement) / REMOVED_MARKER).exists()

    def stop(self, placement: dict[str, Any]) -> None:
        with self.lock:
            process = self.processes.pop(placement.get("pid", -1), None)
        terminate(process)

    def destroy(self, placement: dict[str, Any]) -> None:
        import shutil

        self.stop(placement)
        if placement.get("data_dir"):
            data_dir = self.data_dir(placement)
            shutil.rmtree(data_dir, ignore_errors=True)
            (data_dir.parent / f"{data_dir.name}.join.json").unlink(missing_ok=True)

    def stop_all(self) -> None:
        with self.lock:
            pids = list(self.processes)
        for pid in pids:
            self.stop({"pid": pid})
