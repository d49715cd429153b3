"""``strongroom up``, the command behind ``make run``: a control plane, a cluster of HSMs and the client agent
from nothing; every HSM port requires a client certificate from the owner CA (the agent's, the CLI's, a new
host's from ``strongroom owner issue-client``); a PKCS#11 application signs through it; Ctrl-C stops every
process; a restart keeps the keys."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

import strongroom.client as sdk
from strongroom.control.api_client import ControlClient
from strongroom.vendor import AGENT_UNIT
from strongroom.vocab import CKA, CKM

from .nodes import TEST_HASH_MEMORY_KIB, strongroom
from .pki import CA, Issued, client_certificate, tls_refusal
from .test_control_plane import _placements


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
        _every_hsm_port_requires_an_owner_client_certificate(data, summary, tmp_path)
        assert oct((data / "credentials.json").stat().st_mode & 0o777) == "0o600"
        credentials = json.loads((data / "credentials.json").read_text())
        assert set(credentials) == {"admin", "crypto_user", "control_plane"}
        assert set(credentials["control_plane"]) == {"access_key_id", "secret_access_key", "region"}
        user = credentials["crypto_user"]
        env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={data / summary['pkcs11_socket']}"}
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
        # the command line with its own certificate, and a new application host with one the owner issues
        cli = subprocess.run([sys.executable, "-m", "strongroom.cli.hsm", "--cluster", str(data / "cluster.json"),
                              "key", "list"], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "STRONGROOM_PIN": f"{user['username']}:{user['password']}"})
        assert cli.returncode == 0 and "kept-key" in cli.stdout, cli.stdout + cli.stderr
        issued = strongroom("owner", "issue-client", "--data-dir", str(data), "--out", str(tmp_path / "host"),
                            "--name", "web-1")
        assert issued.returncode == 0, issued.stderr
        assert oct((tmp_path / "host" / "web-1.key").stat().st_mode & 0o777) == "0o600"
        assert tls_refusal(summary["hsms"][0]["endpoint"], Issued(tmp_path / "host" / "web-1.crt",
                                                                 tmp_path / "host" / "web-1.key")) is None
        with sdk.connect(tmp_path / "host" / "cluster.json") as cluster, \
                cluster.login(user["username"], user["password"]) as s:
            assert [k[CKA.LABEL] for k in s.find(label="kept-key", cls=3)] == ["kept-key"]
        _an_admin_registers_and_unregisters_a_client_ca(data, summary, credentials["admin"], tmp_path)
        # two of three HSMs die: no majority to replace them with, so the control plane restarts them on their data
        keys = credentials["control_plane"]
        control = ControlClient(summary["control_plane_url"], keys["access_key_id"], keys["secret_access_key"],
                                keys["region"], str(data / summary["control_plane_ca"]))
        hsm = boto3.client("cloudhsmv2", endpoint_url=summary["control_plane_url"], region_name=keys["region"],
                           verify=str(data / summary["control_plane_ca"]), aws_access_key_id=keys["access_key_id"],
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
        env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={data / summary['pkcs11_socket']}"}
        listing = subprocess.run(["pkcs11-tool", "--module", summary["pkcs11_module"], *pin, "-O"],
                                 capture_output=True, text=True, timeout=120, env=env)
        assert "kept-key" in listing.stdout, listing.stdout + listing.stderr
        with sdk.connect(data / "cluster.json") as cluster, cluster.login(user["username"], user["password"]) as s:
            key = s.generate_key(CKM.AES_KEY_GEN, value_len=32, encrypt=True, decrypt=True)
            assert key.decrypt(key.encrypt(b"after a restart")) == b"after a restart"
    finally:
        _stopped_cleanly(process, data)


def _every_hsm_port_requires_an_owner_client_certificate(data: Path, summary: dict, tmp_path: Path) -> None:
    """A plain TLS client without a certificate, with a self-made one or with one from another CA is refused on
    every HSM; the issued ones work."""
    for field in ("client", "cli"):
        assert oct((data / summary[f"{field}_key"]).stat().st_mode & 0o777) == "0o600"
    agent = Issued(data / summary["client_cert"], data / summary["client_key"])
    cli = Issued(data / summary["cli_cert"], data / summary["cli_key"])
    # only the agent's certificate marks its holder as an agent (nodes then trust the application it names)
    units = {name: [a.value for a in x509.load_pem_x509_certificate(issued.cert.read_bytes()).subject
                    .get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)] for name, issued in
             (("agent", agent), ("cli", cli))}
    assert units == {"agent": [AGENT_UNIT], "cli": []}
    attacks = {"none": None, "self-signed": client_certificate(tmp_path, "self-signed"),
               "another CA's": CA(tmp_path, "stranger-ca").issue("stranger", server=False),
               "claiming the owner CA's name": client_certificate(tmp_path, "same-name", issuer_name="owner-ca"),
               "issued by the agent's certificate": client_certificate(tmp_path, "leaf-issued", issuer=agent)}
    for hsm in summary["hsms"]:
        deadline = time.monotonic() + 30  # an HSM that just joined trusts the owner once it has caught up
        while tls_refusal(hsm["endpoint"], agent) is not None:
            assert time.monotonic() < deadline, hsm
            time.sleep(0.3)
        assert tls_refusal(hsm["endpoint"], cli) is None
        refusals = {what: tls_refusal(hsm["endpoint"], cert) for what, cert in attacks.items()}
        assert all(reason is not None for reason in refusals.values()), (hsm, refusals)


def _an_admin_registers_and_unregisters_a_client_ca(data: Path, summary: dict, admin: dict,
                                                   tmp_path: Path) -> None:
    """strongroom-cli: a partner's CA registered by an admin is trusted by every HSM, until unregistered."""
    partner = CA(tmp_path, "partner-ca")
    partner_client = partner.issue("partner-client", server=False)

    def cli(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "strongroom.cli.hsm", "--cluster", str(data / "cluster.json"),
                               *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "STRONGROOM_ROLE": "admin",
                                   "STRONGROOM_PIN": f"{admin['username']}:{admin['password']}"})
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)["data"]

    def served_everywhere() -> bool:
        return all(tls_refusal(h["endpoint"], partner_client) is None for h in summary["hsms"])

    def eventually(check) -> None:
        deadline = time.monotonic() + 20
        while not check():
            assert time.monotonic() < deadline
            time.sleep(0.3)

    assert not any(tls_refusal(h["endpoint"], partner_client) is None for h in summary["hsms"])
    fingerprint = cli("cluster", "register-client-ca", "--certificate", str(partner.issued.cert))["fingerprint"]
    assert [c["fingerprint"] for c in cli("cluster", "list-client-cas")["client-cas"]][1:] == [fingerprint]
    eventually(served_everywhere)
    cli("cluster", "unregister-client-ca", "--fingerprint", fingerprint)
    eventually(lambda: not any(tls_refusal(h["endpoint"], partner_client) is None for h in summary["hsms"]))


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


def _peers(pid: int) -> set[str]:
    """The addresses process ``pid`` holds established TCP connections to."""
    listing = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True, text=True,
                             check=True).stdout
    return {line.split()[3] for line in listing.splitlines() if f"pid={pid}," in line}


def _within(seconds: float, check) -> None:
    """``check()`` (assertions) holds within ``seconds``; the last failure otherwise."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.lstat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink()}


@pytest.mark.slow
def test_every_view_follows_created_and_deleted_hsms_and_a_copy_runs_on_its_own_data(tmp_path):
    data = tmp_path / "var"
    process = _up(data, hsms=2)
    holder = None
    try:
        summary = json.loads((data / "cluster.json").read_text())
        credentials = json.loads((data / "credentials.json").read_text())
        keys, user = credentials["control_plane"], credentials["crypto_user"]
        control = ControlClient(summary["control_plane_url"], keys["access_key_id"], keys["secret_access_key"],
                                keys["region"], str(data / summary["control_plane_ca"]))
        cluster_id = summary["cluster_id"]
        # an application of the agent holds a logged-in session; the SDK follows the file it was given
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sys, pkcs11\n"
            f"token = pkcs11.lib({str(summary['pkcs11_module'])!r}).get_token()\n"
            f"session = token.open(user_pin={user['username'] + ':' + user['password']!r})\n"
            "print('open', flush=True)\nsys.stdin.read()\n")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={data / summary['pkcs11_socket']}"})
        assert holder.stdout.readline() == "open\n"
        [agent] = [int(p) for p in subprocess.run(["pgrep", "-f", f"strongroom client --config {data}"],
                                                  capture_output=True, text=True).stdout.split()]
        cluster = sdk.connect(data / "cluster.json")
        session = cluster.login(user["username"], user["password"])

        def views(endpoints: set[str], gone: set[str] = frozenset()) -> None:
            on_file = json.loads((data / "cluster.json").read_text())
            assert set(on_file["endpoints"]) == endpoints == {h["endpoint"] for h in on_file["hsms"]}
            cli = subprocess.run([sys.executable, "-m", "strongroom.cli.hsm", "--cluster", str(data / "cluster.json"),
                                  "--output", "json", "cluster", "hsm-info"], capture_output=True, text=True,
                                 timeout=60)
            listed = json.loads(cli.stdout)["data"]["hsms"]
            assert {(h["endpoint"], h["state"]) for h in listed} == {(e, "operational") for e in endpoints}
            assert len({h["serial-number"] for h in listed}) == len(endpoints)  # each HSM answers for itself
            for pid in (os.getpid(), agent):  # the SDK here, the agent's connections for its application
                assert endpoints <= _peers(pid) and not gone & _peers(pid)

        first = {h["endpoint"] for h in summary["hsms"]}
        _within(10, lambda: views(first))
        zones = sorted(control.call("DescribeClusters")["Clusters"][0]["SubnetMapping"])
        created = control.call("CreateHsm", ClusterId=cluster_id, AvailabilityZone=zones[0])["Hsm"]["HsmId"]

        def hsms() -> dict[str, dict]:
            [described] = control.call("DescribeClusters", Filters={"clusterIds": [cluster_id]})["Clusters"]
            return {h["HsmId"]: h for h in described["Hsms"]}

        deadline = time.monotonic() + 120
        while hsms().get(created, {}).get("State") != "ACTIVE":
            assert time.monotonic() < deadline
            time.sleep(0.3)
        grown = first | {hsms()[created]["Endpoint"]}
        _within(10, lambda: views(grown))
        assert session.generate_key(CKM.AES_KEY_GEN, value_len=32, label="grown", encrypt=True).handle
        # an admin removes the new HSM from the membership through the SDK: it stops, and is listed nowhere
        removed = hsms()[created]["Endpoint"]
        with sdk.connect(data / "cluster.json") as other, \
                other.login("admin", credentials["admin"]["password"], role="admin") as admin:  # one login each
            admin.remove_member(_placements(data)[created]["raft"])
        _within(10, lambda: views(first, {removed}))
        assert created not in hsms()
        # the control plane deletes one of the first two
        [victim] = summary["hsms"][:1]
        control.call("DeleteHsm", ClusterId=cluster_id, HsmId=victim["hsm_id"])
        deadline = time.monotonic() + 120
        while victim["hsm_id"] in hsms():
            assert time.monotonic() < deadline
            time.sleep(0.3)
        _within(10, lambda: views(first - {victim["endpoint"]}, {victim["endpoint"], removed}))
        for gone in (victim["endpoint"], removed):  # neither answers anything
            host, _, port = gone.rpartition(":")
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((host, int(port)), timeout=3).close()
        key = session.generate_key(CKM.AES_KEY_GEN, value_len=32, label="shrunk", encrypt=True, decrypt=True)
        assert key.decrypt(key.encrypt(b"after a deletion")) == b"after a deletion"
        session.close()
        cluster.close()
    finally:
        if holder is not None:
            holder.communicate("", timeout=30)
        _stopped_cleanly(process, data)
    # a copy of the data directory, started elsewhere, runs on its own HSM data
    copy = tmp_path / "elsewhere" / "var"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(data), str(copy)], check=True)
    before = _mtimes(data)
    time.sleep(1)
    process = _up(copy, hsms=1)
    try:
        nodes = _node_pids(copy)
        assert len(nodes) == 1 and _node_pids(data) == []
        for pid in nodes:
            assert f"--data-dir\0{copy}/control/hsms/" in Path(f"/proc/{pid}/cmdline").read_text()
        with sdk.connect(copy / "cluster.json") as c, c.login(user["username"], user["password"]) as s:
            assert [k[CKA.LABEL] for k in s.find(label="shrunk")] == ["shrunk"]
            s.generate_key(CKM.AES_KEY_GEN, value_len=32, label="in-the-copy")
    finally:
        _stopped_cleanly(process, copy)
    assert _mtimes(data) == before
