"""``strongroom up``, the command behind ``make run``: a control plane, a cluster of HSMs and the client agent
from nothing; a PKCS#11 application signs through it; Ctrl-C stops every process; a restart keeps the keys."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3

import strongroom.client as sdk
from strongroom.control.api_client import ControlClient
from strongroom.vocab import CKA, CKM

from .nodes import TEST_HASH_MEMORY_KIB


def _up(data: Path, hsms: int = 3) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "strongroom", "up", "--data-dir", str(data), "--hsms",
                                str(hsms), "--json", "--password-hash-memory-kib", TEST_HASH_MEMORY_KIB],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if json.loads(line).get("ready"):  # --json: one JSON object per line, the last one the summary
            return process
    raise AssertionError("no 'ready': " + "".join(lines) + process.stderr.read())


def _node_pids(data: Path) -> list[int]:
    found = subprocess.run(["pgrep", "-f", f"strongroom node --managed --data-dir {data}"], capture_output=True,
                           text=True).stdout.split()
    return [int(pid) for pid in found]


def _stopped_cleanly(process: subprocess.Popen, data: Path) -> None:
    process.send_signal(signal.SIGINT)  # Ctrl-C
    assert process.wait(120) == 0, process.stderr.read()
    left = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True).stdout
    assert left == "", f"processes left behind: {left}"


def test_up_runs_a_cluster_a_pkcs11_application_uses_and_a_restart_keeps(tmp_path):
    data = tmp_path / "var"
    process = _up(data)
    try:
        summary = json.loads((data / "cluster.json").read_text())
        assert set(summary) >= {"control_plane_url", "control_plane_ca", "cluster_id", "hsms", "trust_anchor",
                                "pkcs11_socket", "pkcs11_module"}
        assert summary["control_plane_url"].startswith("https://127.0.0.1:")
        assert len(summary["hsms"]) == 3 and all(set(h) == {"hsm_id", "endpoint"} for h in summary["hsms"])
        assert oct((data / "credentials.json").stat().st_mode & 0o777) == "0o600"
        credentials = json.loads((data / "credentials.json").read_text())
        assert set(credentials) == {"admin", "crypto_user", "control_plane"}
        assert set(credentials["control_plane"]) == {"access_key_id", "secret_access_key", "region"}
        user = credentials["crypto_user"]
        env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={summary['pkcs11_socket']}"}
        pin = ("-l", "-p", f"{user['username']}:{user['password']}")

        def tool(*args: str) -> str:
            done = subprocess.run(["pkcs11-tool", "--module", summary["pkcs11_module"], *args], capture_output=True,
                                  text=True, timeout=120, env=env)
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        tool(*pin, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "kept-key", "--id", "0a")
        (tmp_path / "digest").write_bytes(bytes(range(32)))
        tool(*pin, "--sign", "-m", "ECDSA", "--id", "0a", "-i", str(tmp_path / "digest"), "-o",
             str(tmp_path / "sig"))
        assert len((tmp_path / "sig").read_bytes()) == 64
        with sdk.connect(data / "cluster.json") as cluster, cluster.login(user["username"], user["password"]) as s:
            assert [k[CKA.LABEL] for k in s.find(label="kept-key", cls=3)] == ["kept-key"]
        # two of three HSMs die: no majority to replace them with, so the control plane restarts them on their data
        keys = credentials["control_plane"]
        control = ControlClient(summary["control_plane_url"], keys["access_key_id"], keys["secret_access_key"],
                                keys["region"], summary["control_plane_ca"])
        hsm = boto3.client("cloudhsmv2", endpoint_url=summary["control_plane_url"], region_name=keys["region"],
                           verify=summary["control_plane_ca"], aws_access_key_id=keys["access_key_id"],
                           aws_secret_access_key=keys["secret_access_key"])
        assert [c["ClusterId"] for c in hsm.describe_clusters()["Clusters"]] == [summary["cluster_id"]]
        for pid in _node_pids(data)[:2]:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while True:
            time.sleep(1)
            [state] = control.call("DescribeClusters", Filters={"clusterIds": [summary["cluster_id"]]})["Clusters"]
            if state["State"] == "ACTIVE" and all(h["State"] == "ACTIVE" for h in state["Hsms"]) \
                    and len(_node_pids(data)) == 3:
                break
            assert time.monotonic() < deadline, state
        with sdk.connect(data / "cluster.json") as cluster, cluster.login(user["username"], user["password"]) as s:
            assert [k[CKA.LABEL] for k in s.find(label="kept-key", cls=3)] == ["kept-key"]
    finally:
        _stopped_cleanly(process, data)
    process = _up(data)
    try:
        env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={summary['pkcs11_socket']}"}
        listing = subprocess.run(["pkcs11-tool", "--module", summary["pkcs11_module"], *pin, "-O"],
                                 capture_output=True, text=True, timeout=120, env=env)
        assert "kept-key" in listing.stdout, listing.stdout + listing.stderr
        with sdk.connect(data / "cluster.json") as cluster, cluster.login(user["username"], user["password"]) as s:
            key = s.generate_key(CKM.AES_KEY_GEN, value_len=32, encrypt=True, decrypt=True)
            assert key.decrypt(key.encrypt(b"after a restart")) == b"after a restart"
    finally:
        _stopped_cleanly(process, data)


def _leader_pid(data: Path, leader: str) -> int | None:
    for pid in _node_pids(data):
        try:
            if f"--raft-listen {leader}" in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "):
                return pid
        except OSError:
            pass
    return None


def test_the_leader_killed_twice_is_replaced_each_time_and_the_membership_stays_three(tmp_path):
    """Killing the Raft leader's HSM makes the leadership move while the control plane takes the dead member
    out: it must not admit the replacement before the removal went through, or a dead member stays counted in
    the majority (4 members, one dead) and the next single failure loses the majority for good."""
    data = tmp_path / "var"
    process = _up(data)
    try:
        for _ in range(2):
            deadline = time.monotonic() + 180
            while True:
                try:
                    with sdk.connect(data / "cluster.json") as cluster:
                        status = cluster.cluster_status()
                except Exception:  # an HSM is still being replaced; ask again
                    status = {}
                if status.get("has_quorum") and len(status.get("members", [])) == 3 \
                        and len(_node_pids(data)) == 3 and _leader_pid(data, status["leader"]):
                    break
                assert time.monotonic() < deadline, status
                time.sleep(1)
            os.kill(_leader_pid(data, status["leader"]), signal.SIGKILL)
            time.sleep(8)  # replaced within seconds (test_control_plane); then the membership is checked again
        deadline = time.monotonic() + 180
        while True:
            try:
                with sdk.connect(data / "cluster.json") as cluster:
                    status = cluster.cluster_status()
            except Exception:
                status = {}
            if status.get("has_quorum") and len(_node_pids(data)) == 3:
                break
            assert time.monotonic() < deadline, status
            time.sleep(1)
        time.sleep(5)
        with sdk.connect(data / "cluster.json") as cluster:
            assert len(cluster.cluster_status()["members"]) == 3
    finally:
        _stopped_cleanly(process, data)
