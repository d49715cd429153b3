"""The control plane end to end with boto3: a cluster from nothing to 3 active HSMs, initialised with the owner's
certificate and activated through the SDK; an HSM killed under load is replaced; HSMs and the cluster deleted."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

import strongroom.client as sdk
from strongroom.control.records import Hsm, Store
from strongroom.vocab import CKA, CKM

from .nodes import TEST_HASH_MEMORY_KIB, strongroom
from .pki import Issued, OwnerCA, client_certificate

ADMIN_PW = "admin-pass-1"
ALICE_PW = "alice-pass-1"
SUBNETS = ["subnet-0a1b2c3d", "subnet-0e1f2a3b", "subnet-0c4d5e6f"]
P256 = bytes.fromhex("06082a8648ce3d030107")


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    root = tmp_path_factory.mktemp("control-plane")
    assert strongroom("fleet", "init", "--dir", str(root / "fleet")).returncode == 0
    log = open(root / "control.log", "w")  # noqa: SIM115 - the node's stderr until the fixture's teardown
    process = subprocess.Popen([sys.executable, "-m", "strongroom", "control", "--dir", str(root / "control"),
                                "--fleet", str(root / "fleet"), "--listen", "127.0.0.1:0",
                                "--password-hash-memory-kib", TEST_HASH_MEMORY_KIB],
                               stdout=subprocess.PIPE, stderr=log, text=True)
    info = json.loads(process.stdout.readline())
    credentials = json.loads(Path(info["credentials"]).read_text())
    assert Path(info["credentials"]).stat().st_mode & 0o777 == 0o600
    assert info["url"].startswith("https://")
    client = boto3.client("cloudhsmv2", endpoint_url=info["url"], region_name=credentials["region"], verify=info["ca"],
                          aws_access_key_id=credentials["access_key_id"],
                          aws_secret_access_key=credentials["secret_access_key"],
                          config=Config(retries={"max_attempts": 1}))
    yield client, root
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    log.close()
    text = (root / "control.log").read_text()
    assert "Traceback" not in text, text
    leftover = subprocess.run(["pgrep", "-f", str(root / "control" / "hsms")], capture_output=True, text=True)
    assert leftover.stdout == "", "HSM processes left behind"


def _wait(what, predicate, timeout_s: float = 90.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = what()
        if predicate(value):
            return value
        assert time.monotonic() < deadline, f"timed out; last: {value}"
        time.sleep(0.3)


def _cluster(client, cluster_id):
    return client.describe_clusters(Filters={"clusterIds": [cluster_id]})["Clusters"][0]


def _placements(root: Path) -> dict[str, dict]:
    store = Store(f"sqlite:///{root / 'control' / 'state.db'}")  # the records, as stored
    try:
        with store.session() as session:
            return {h.hsm_id: dict(h.placement) for h in session.query(Hsm).all()}
    finally:
        store.close()


def test_a_cluster_from_create_to_three_active_hsms_survives_a_killed_hsm(control):
    client, root = control
    cluster_id = client.create_cluster(HsmType="hsm2m.medium", SubnetIds=SUBNETS,
                                       TagList=[{"Key": "env", "Value": "test"}])["Cluster"]["ClusterId"]
    zones = sorted(_cluster(client, cluster_id)["SubnetMapping"])
    first = client.create_hsm(ClusterId=cluster_id, AvailabilityZone=zones[0])["Hsm"]
    assert first["State"] == "CREATE_IN_PROGRESS"
    with pytest.raises(ClientError) as info:  # no second HSM before activation
        client.create_hsm(ClusterId=cluster_id, AvailabilityZone=zones[1])
    assert info.value.response["Error"]["Code"] == "CloudHsmInvalidRequestException"
    cluster = _wait(lambda: _cluster(client, cluster_id), lambda c: c["Certificates"].get("ClusterCsr"))
    assert cluster["Hsms"][0]["State"] == "ACTIVE" and cluster["State"] == "UNINITIALIZED"
    owner = OwnerCA(root)
    with pytest.raises(ClientError) as info:  # a certificate from another CA than the anchor
        client.initialize_cluster(ClusterId=cluster_id, SignedCert=OwnerCA(root, "other").sign(
            cluster["Certificates"]["ClusterCsr"].encode()).decode(), TrustAnchor=owner.pem.decode())
    assert info.value.response["Error"]["Code"] == "CloudHsmInvalidRequestException"
    signed = owner.sign(cluster["Certificates"]["ClusterCsr"].encode()).decode()
    answer = client.initialize_cluster(ClusterId=cluster_id, SignedCert=signed, TrustAnchor=owner.pem.decode())
    assert answer["State"] == "INITIALIZE_IN_PROGRESS"
    initialized = _wait(lambda: _cluster(client, cluster_id), lambda c: c["State"] == "INITIALIZED")
    endpoint = _placements(root)[first["HsmId"]]["endpoint"]
    owner_client = client_certificate(root, "owner-client", issuer=owner.issued)
    config = {"endpoints": [endpoint], "trust_anchor": str(owner.path), "timeout_s": 60,
              "client_cert": str(owner_client.cert), "client_key": str(owner_client.key)}
    with sdk.connect(config) as c:  # activation through the SDK, trusting only the owner's CA
        admin = c.login("admin", initialized["PreCoPassword"], role="admin")  # handed out by the control plane
        admin.activate(ADMIN_PW)
        admin.create_user("alice", ALICE_PW)
        admin.close()
    active = _wait(lambda: _cluster(client, cluster_id), lambda c: c["State"] == "ACTIVE")
    assert "PreCoPassword" not in active  # forgotten once the owner changed it
    for zone in zones[1:]:
        client.create_hsm(ClusterId=cluster_id, AvailabilityZone=zone)
    # the cluster's state follows its HSMs' within one step of the control plane: wait for both
    cluster = _wait(lambda: _cluster(client, cluster_id),
                    lambda c: len(c["Hsms"]) == 3 and all(h["State"] == "ACTIVE" for h in c["Hsms"])
                    and c["State"] == "ACTIVE")
    assert (cluster["State"], cluster["StateMessage"]) == ("ACTIVE", "")
    placements = _placements(root)
    config["endpoints"] = [placements[h["HsmId"]]["endpoint"] for h in cluster["Hsms"]]
    # keys, then an HSM killed while a client signs in a loop
    with sdk.connect(config) as c, c.login("alice", ALICE_PW) as alice:
        public, private = alice.generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256, CKA.VERIFY: True},
                                                  {CKA.SIGN: True}, label="signer")
        labels = [f"k{i}" for i in range(20)]
        for label in labels:
            alice.generate_key(CKM.AES_KEY_GEN, value_len=32, label=label, encrypt=True, decrypt=True)
        verifier = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public[CKA.EC_POINT][2:])
        errors: list[BaseException] = []
        signed_count = [0]
        stop = threading.Event()

        def sign_loop() -> None:
            while not stop.is_set():
                try:
                    signature = private.sign(b"through a replacement", CKM.ECDSA_SHA256)
                    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

                    verifier.verify(encode_dss_signature(r, s), b"through a replacement", ec.ECDSA(hashes.SHA256()))
                    signed_count[0] += 1
                except BaseException as exc:  # recorded for the assertion
                    errors.append(exc)
                    return

        thread = threading.Thread(target=sign_loop)
        thread.start()
        victim = cluster["Hsms"][1]["HsmId"]
        os.kill(placements[victim]["pid"], signal.SIGKILL)
        _wait(lambda: _cluster(client, cluster_id)["State"], lambda s: s == "DEGRADED", 30)
        replaced = _wait(lambda: _cluster(client, cluster_id),
                         lambda c: c["State"] == "ACTIVE" and all(h["State"] == "ACTIVE" for h in c["Hsms"]), 120)
        time.sleep(1)
        stop.set()
        thread.join(30)
        assert errors == [] and signed_count[0] > 0
        assert victim in {h["HsmId"] for h in replaced["Hsms"]}  # the replacement keeps the HSM's id
        new = _placements(root)[victim]
        assert new["endpoint"] == placements[victim]["endpoint"] and new["pid"] != placements[victim]["pid"]
    with sdk.connect({**config, "endpoints": [new["endpoint"]]}) as c, c.login("alice", ALICE_PW) as alice:
        assert sorted(k[CKA.LABEL] for k in alice.find(cls=4)) == sorted(labels)  # every key on the new HSM
    # HSMs deleted one by one, then the cluster
    with pytest.raises(ClientError) as info:
        client.delete_cluster(ClusterId=cluster_id)
    assert info.value.response["Error"]["Code"] == "CloudHsmInvalidRequestException"
    for hsm in replaced["Hsms"]:
        assert client.delete_hsm(ClusterId=cluster_id, HsmId=hsm["HsmId"])["HsmId"] == hsm["HsmId"]
        _wait(lambda: _cluster(client, cluster_id)["Hsms"], lambda hs: hsm["HsmId"] not in {h["HsmId"] for h in hs})
    assert client.delete_cluster(ClusterId=cluster_id)["Cluster"]["State"] == "DELETE_IN_PROGRESS"



def test_concurrent_first_hsms_make_one_founder(control):
    client, _ = control
    cluster_id = client.create_cluster(HsmType="hsm2m.medium", SubnetIds=SUBNETS[:2])["Cluster"]["ClusterId"]
    results: list[str] = []

    def create(zone: str, address: dict) -> None:
        try:
            client.create_hsm(ClusterId=cluster_id, AvailabilityZone=zone, **address)
            results.append("created")
        except ClientError as exc:
            results.append(exc.response["Error"]["Code"])

    # four different requests: the same one signed within the same second would be refused as a replay
    threads = [threading.Thread(target=create, args=(zone, address)) for zone in ("us-east-1a", "us-east-1b")
               for address in ({}, {"IpAddress": "127.0.0.1"})]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["CloudHsmInvalidRequestException"] * 3 + ["created"]
    hsm = _wait(lambda: _cluster(client, cluster_id), lambda c: c["Hsms"] and c["Hsms"][0]["State"] == "ACTIVE")[
        "Hsms"][0]
    client.delete_hsm(ClusterId=cluster_id, HsmId=hsm["HsmId"])
    _wait(lambda: _cluster(client, cluster_id)["Hsms"], lambda hs: hs == [])
    client.delete_cluster(ClusterId=cluster_id)


@pytest.mark.slow
def test_a_relative_directory_grows_a_cluster_signed_as_the_service_documents(tmp_path):
    """``strongroom control --dir control --fleet fleet`` run from its parent folder, as documented: a cluster
    initialised with the service's ``openssl x509 -req`` command (a certificate that is not a CA, which every HSM
    then serves itself) grows to three active HSMs, and the records hold no absolute path."""
    assert strongroom("fleet", "init", "--dir", "fleet", cwd=tmp_path).returncode == 0
    log = open(tmp_path / "control.log", "w")  # noqa: SIM115 - the process's stderr until the end of the test
    process = subprocess.Popen([sys.executable, "-m", "strongroom", "control", "--dir", "control", "--fleet",
                                "fleet", "--listen", "127.0.0.1:0", "--password-hash-memory-kib",
                                TEST_HASH_MEMORY_KIB], cwd=tmp_path, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        info = json.loads(process.stdout.readline())
        keys = json.loads((tmp_path / info["credentials"]).read_text())
        client = boto3.client("cloudhsmv2", endpoint_url=info["url"], region_name=keys["region"],
                              verify=str(tmp_path / info["ca"]), aws_access_key_id=keys["access_key_id"],
                              aws_secret_access_key=keys["secret_access_key"],
                              config=Config(retries={"max_attempts": 1}))
        cluster_id = client.create_cluster(HsmType="hsm2m.medium", SubnetIds=SUBNETS)["Cluster"]["ClusterId"]
        zones = sorted(_cluster(client, cluster_id)["SubnetMapping"])
        client.create_hsm(ClusterId=cluster_id, AvailabilityZone=zones[0])
        csr = _wait(lambda: _cluster(client, cluster_id)["Certificates"].get("ClusterCsr"), bool)
        (tmp_path / "cluster.csr").write_text(csr)

        def openssl(*args: str) -> None:
            done = subprocess.run(["openssl", *args], cwd=tmp_path, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr

        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                "customerCA.key", "-out", "customerCA.crt", "-subj", "/CN=customerCA", "-days", "30")
        # the service's documented command, word for word
        openssl("x509", "-req", "-days", "3652", "-in", "cluster.csr", "-CA", "customerCA.crt", "-CAkey",
                "customerCA.key", "-CAcreateserial", "-out", "cluster.crt")
        answer = client.initialize_cluster(ClusterId=cluster_id, SignedCert=(tmp_path / "cluster.crt").read_text(),
                                           TrustAnchor=(tmp_path / "customerCA.crt").read_text())
        assert answer["State"] == "INITIALIZE_IN_PROGRESS"
        initialized = _wait(lambda: _cluster(client, cluster_id), lambda c: c["State"] == "INITIALIZED")
        owner_client = client_certificate(tmp_path, "owner-client",
                                          issuer=Issued(tmp_path / "customerCA.crt", tmp_path / "customerCA.key"))
        published = tmp_path / "control" / "clusters" / cluster_id / "cluster.json"
        config = {**json.loads(published.read_text()), "trust_anchor": str(tmp_path / "customerCA.crt"),
                  "client_cert": str(owner_client.cert), "client_key": str(owner_client.key), "timeout_s": 60}
        assert config["server_name"] == cluster_id  # the name the cluster certificate carries
        with sdk.connect(config) as c:
            admin = c.login("admin", initialized["PreCoPassword"], role="admin")
            admin.activate(ADMIN_PW)
            admin.close()
        _wait(lambda: _cluster(client, cluster_id), lambda c: c["State"] == "ACTIVE")
        for zone in zones[1:]:
            client.create_hsm(ClusterId=cluster_id, AvailabilityZone=zone)
        seen: list[tuple[str, str]] = []

        def grown() -> dict:
            cluster = _cluster(client, cluster_id)
            seen.append((cluster["State"], cluster["StateMessage"]))
            return cluster

        cluster = _wait(grown, lambda c: len(c["Hsms"]) == 3 and all(h["State"] == "ACTIVE" for h in c["Hsms"]), 120)
        assert set(seen) == {("ACTIVE", "")}  # adding HSMs degrades nothing and replaces nothing
        placements = _placements(tmp_path)
        assert sorted(p["data_dir"] for p in placements.values()) == sorted(h["HsmId"] for h in cluster["Hsms"])
        served = x509.load_pem_x509_certificate((tmp_path / "cluster.crt").read_bytes())
        for placement in placements.values():  # every HSM serves the cluster certificate itself
            host, _, port = placement["endpoint"].rpartition(":")
            context = ssl.create_default_context(cafile=str(tmp_path / "customerCA.crt"))
            context.load_cert_chain(owner_client.cert, owner_client.key)
            with socket.create_connection((host, int(port)), timeout=10) as raw, \
                    context.wrap_socket(raw, server_hostname=cluster_id) as tls:
                assert x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)) == served
        config = {**json.loads(published.read_text()), "trust_anchor": str(tmp_path / "customerCA.crt"),
                  "client_cert": str(owner_client.cert), "client_key": str(owner_client.key), "timeout_s": 60}
        assert sorted(config["endpoints"]) == sorted(p["endpoint"] for p in placements.values())
        with sdk.connect(config) as c, c.login("admin", ADMIN_PW, role="admin") as admin:
            admin.create_user("alice", ALICE_PW)
        for endpoint in config["endpoints"]:  # the user replicated to each HSM
            with sdk.connect({**config, "endpoints": [endpoint]}) as c, c.login("alice", ALICE_PW) as alice:
                assert alice.generate_key(CKM.AES_KEY_GEN, value_len=32, encrypt=True).handle
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        log.close()
    text = (tmp_path / "control.log").read_text()
    assert "Traceback" not in text and "No such file" not in text, text
