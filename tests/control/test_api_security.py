"""The control plane's doors as an attacker tries them: TLS only (a client that does not verify the issued CA, or
offers TLS 1.1, gets no answer), headers and bodies that never end, a captured changing request sent again (also
after a restart), deactivated and deleted access keys, and secrets looked for in the database files."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, SSLError

from strongroom.control.sealed import SealingKey, SealingKeyError

SUBNETS = ["subnet-0a1b2c3d"]
REPLAYED = ("This signed request was already accepted: a request that changes state is accepted once. Sign it "
            "again to repeat it.")


def _boto(url: str, ca: str | bool, key_id: str, secret: str):
    return boto3.client("cloudhsmv2", endpoint_url=url, region_name="us-east-1", verify=ca,
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


def _error(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def _capture_create_cluster(client) -> tuple[str, dict, bytes]:
    """A CreateCluster as boto3 signed and sent it (what an eavesdropper or a log would keep)."""
    captured: dict = {}

    def keep(request, **_):
        captured.update(url=request.url, headers={k: v.decode() if isinstance(v, bytes) else v
                                                  for k, v in request.headers.items()}, body=request.body)

    client.meta.events.register_last("before-send.cloudhsmv2.CreateCluster", keep)
    client.create_cluster(HsmType="hsm1.medium", SubnetIds=SUBNETS)
    return captured["url"], captured["headers"], captured["body"]


def _send(url: str, headers: dict, body: bytes, ca: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30, context=ssl.create_default_context(cafile=ca)) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "strongroom", *args], capture_output=True, text=True, timeout=120)


def _count(client) -> int:
    return len(client.describe_clusters()["Clusters"])


# ------------------------------------------------------------------ TLS
def test_a_client_not_verifying_the_issued_ca_or_offering_tls_1_1_gets_no_answer(api):
    with pytest.raises(SSLError):  # the system's CAs do not vouch for the control plane's certificate
        _boto(api.url, True, api.key_id, api.secret).describe_clusters()
    port = int(api.url.rpartition(":")[2])
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(api.ca)
    old.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, pytest.raises(ssl.SSLError) as info:
        old.wrap_socket(raw, server_hostname="127.0.0.1")
    assert info.value.reason == "UNEXPECTED_EOF_WHILE_READING"  # the server hung up on the TLS 1.1 hello
    tls12 = ssl.create_default_context(cafile=api.ca)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            tls12.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert (tls.version(), tls.cipher()[0]) == ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # plain HTTP on the TLS port
        raw.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        reply = raw.recv(4096)
        assert reply == b"" or reply.startswith(b"\x15"), reply[:40]  # closed, or a TLS alert: no HTTP answer


def test_plain_http_only_when_asked_for_and_only_on_loopback(tmp_path):
    (tmp_path / "fleet").mkdir()
    done = _cli("control", "--dir", str(tmp_path / "c"), "--fleet", str(tmp_path / "fleet"), "--listen",
                "0.0.0.0:0", "--insecure-plain-http")
    assert done.returncode == 2
    assert "Invalid value for --insecure-plain-http: plain HTTP is served on a loopback address only, not on " \
           "'0.0.0.0'" in done.stderr
    assert not (tmp_path / "c").exists()  # refused before anything was made


# ------------------------------------------------------------------ timeouts
def test_unfinished_headers_are_closed_and_a_late_body_is_answered(api):
    port = int(api.url.rpartition(":")[2])
    context = ssl.create_default_context(cafile=api.ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        started = time.monotonic()
        tls.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert tls.recv(4096) == b""  # closed by the server (the header timeout is 1 s here)
        assert time.monotonic() - started < 5
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"a\":")
        answer, deadline = b"", time.monotonic() + 10
        while not answer.endswith(b"}"):
            chunk = tls.recv(4096)
            assert chunk and time.monotonic() < deadline, answer  # closed or stalled before the whole answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400")
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {
        "__type": "RequestTimeoutException", "Message": "the request body did not arrive within 1 s"}


# ------------------------------------------------------------------ replay
def test_a_captured_create_cluster_sent_again_is_refused(api):
    client = _boto(api.url, api.ca, api.key_id, api.secret)
    url, headers, body = _capture_create_cluster(client)
    before = _count(client)
    assert _send(url, headers, body, api.ca) == (400, {"__type": "InvalidSignatureException", "Message": REPLAYED})
    headers["amz-sdk-invocation-id"] = "00000000-0000-0000-0000-000000000000"  # unsigned headers change nothing
    assert _send(url, headers, body, api.ca)[1]["__type"] == "InvalidSignatureException"
    assert _count(client) == before
    as_read = {**headers, "X-Amz-Target": "BaldrApiService.DescribeClusters"}
    assert _send(url, as_read, body, api.ca)[1]["__type"] == "InvalidSignatureException"  # the target is signed


# ------------------------------------------------------------------ access keys and secrets at rest
def test_access_keys_are_created_listed_deactivated_and_deleted_and_refused_after(api):
    done = _cli("control", "access-key", "create", "--dir", str(api.folder))
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert set(made) == {"access_key_id", "secret_access_key", "status", "created"} and made["status"] == "Active"
    key_id, secret = made["access_key_id"], made["secret_access_key"]
    client = _boto(api.url, api.ca, key_id, secret)
    client.describe_clusters()
    listed = json.loads(_cli("control", "access-key", "list", "--dir", str(api.folder)).stdout)
    assert {k["access_key_id"]: k["status"] for k in listed}[key_id] == "Active"
    assert all("secret_access_key" not in k for k in listed)

    assert _cli("control", "access-key", "deactivate", "--dir", str(api.folder), key_id).returncode == 0
    assert _error(client.describe_clusters) == (
        "UnrecognizedClientException", f"The access key {key_id} is inactive: an administrator deactivated it.")
    # who does not hold the secret learns nothing about its status
    assert _error(_boto(api.url, api.ca, key_id, "wrong").describe_clusters)[0] == "InvalidSignatureException"
    assert _cli("control", "access-key", "activate", "--dir", str(api.folder), key_id).returncode == 0
    client.describe_clusters()

    assert _cli("control", "access-key", "delete", "--dir", str(api.folder), key_id).returncode == 0
    assert _error(client.describe_clusters) == (
        "UnrecognizedClientException", "The security token included in the request is invalid.")
    listed = json.loads(_cli("control", "access-key", "list", "--dir", str(api.folder)).stdout)
    assert key_id not in {k["access_key_id"] for k in listed}
    again = _cli("control", "access-key", "delete", "--dir", str(api.folder), key_id)
    assert (again.returncode, again.stderr.strip()) == (
        1, f"Error: no access key '{key_id}' (CKR_ARGUMENTS_BAD)")
    stranger = _cli("control", "access-key", "list", "--dir", str(api.folder / "hsms-not-here"))
    assert stranger.returncode == 2 and "does not exist" in stranger.stderr


def test_no_secret_is_in_clear_in_the_database_files_and_all_are_private(api):
    created = [json.loads(_cli("control", "access-key", "create", "--dir", str(api.folder)).stdout)
               for _ in range(3)]
    for key in created:  # used through the API, so that the WAL holds whatever a signed request wrote
        assert _boto(api.url, api.ca, key["access_key_id"], key["secret_access_key"]).describe_clusters()[
            "Clusters"] is not None
    secrets = [key["secret_access_key"] for key in created] + [api.secret]
    files = [p for p in api.folder.iterdir() if p.name.startswith("state.db")]
    assert {p.name for p in files} >= {"state.db", "state.db-wal", "state.db-shm"}
    for path in files:
        data = path.read_bytes()
        assert not any(s.encode() in data for s in secrets), path
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (api.folder / "sealing.key").stat().st_mode & 0o777 == 0o600


def test_a_sealed_secret_opens_only_for_its_own_record():
    sealing = SealingKey(bytes(range(32)))
    sealed = sealing.seal("access-key", "AKIAONE", "the secret")
    assert sealing.open("access-key", "AKIAONE", sealed) == "the secret"
    with pytest.raises(SealingKeyError) as info:
        sealing.open("access-key", "AKIATWO", sealed)
    assert info.value.message == "the sealed access-key of 'AKIATWO' does not open under this sealing key"
    with pytest.raises(SealingKeyError):
        SealingKey(bytes(32)).open("access-key", "AKIAONE", sealed)


# ------------------------------------------------------------------ a real control plane, restarted
def _start(folder: Path, fleet: Path, listen: str = "127.0.0.1:0") -> tuple[subprocess.Popen[str], dict]:
    process = subprocess.Popen([sys.executable, "-m", "strongroom", "control", "--dir", str(folder), "--fleet",
                                str(fleet), "--listen", listen, "--header-timeout", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    assert line, process.stderr.read() if process.stderr else ""
    return process, json.loads(line)


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0


def test_a_replay_is_refused_after_a_restart_of_the_real_control_plane(tmp_path):
    assert _cli("fleet", "init", "--dir", str(tmp_path / "fleet")).returncode == 0
    process, info = _start(tmp_path / "control", tmp_path / "fleet")
    try:
        assert info["url"].startswith("https://127.0.0.1:") and info["ca"] == str(tmp_path / "control" / "tls-ca.crt")
        keys = json.loads(Path(info["credentials"]).read_text())
        client = _boto(info["url"], info["ca"], keys["access_key_id"], keys["secret_access_key"])
        url, headers, body = _capture_create_cluster(client)
        assert _send(url, headers, body, info["ca"])[1] == {"__type": "InvalidSignatureException",
                                                           "Message": REPLAYED}
    finally:
        _stop(process)
    process, info = _start(tmp_path / "control", tmp_path / "fleet", url.partition("//")[2].rstrip("/"))
    try:
        assert _send(url, headers, body, info["ca"]) == (400, {"__type": "InvalidSignatureException",
                                                               "Message": REPLAYED})
        assert _count(client) == 1
        modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "control").iterdir() if p.is_file()}
        assert set(modes.values()) == {0o600}, modes
    finally:
        _stop(process)


def test_a_database_of_an_earlier_version_has_its_clear_secrets_sealed_and_erased(tmp_path):
    import sqlite3

    from strongroom.control import access_keys
    from strongroom.control.cloudhsmv2 import ControlPlane
    from strongroom.control.process import open_store

    clear = "an-old-clear-secret-0123456789abcdefghij"
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE access_keys (access_key_id VARCHAR(32) PRIMARY KEY, secret_access_key VARCHAR(64), "
               "created FLOAT)")
    db.execute("CREATE TABLE clusters (cluster_id VARCHAR(32) PRIMARY KEY, state VARCHAR(32), state_message "
               "VARCHAR(300), hsm_type VARCHAR(32), mode VARCHAR(16), network_type VARCHAR(16), subnet_mapping JSON, "
               "vpc_id VARCHAR(32), security_group VARCHAR(32), backup_retention_days VARCHAR(3), source_backup_id "
               "VARCHAR(64), create_timestamp FLOAT, cluster_csr TEXT, cluster_certificate TEXT, trust_anchor TEXT)")
    db.execute("INSERT INTO access_keys VALUES ('AKIAOLDKEY', ?, 0)", (clear,))
    db.commit()
    db.close()
    store, sealing = open_store(tmp_path)
    try:
        assert access_keys.secret(store, sealing, "AKIAOLDKEY") == access_keys.Secret(clear, True)
        assert access_keys.listing(store)[0]["status"] == "Active"
        assert ControlPlane(store, sealing=sealing).call("DescribeClusters", {}) == {"Clusters": []}
    finally:
        store.close()
    for path in tmp_path.glob("state.db*"):
        assert clear.encode() not in path.read_bytes(), path
