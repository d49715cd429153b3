"""The acceptance of the lockout that cannot brick a cluster, on real processes: every user locked by wrong
passwords from a peer, the owner recovers the last admin with a signed unlock carried by the CLI, the admin
unlocks the others through the CLI, and every step is in the audit chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization

import strongroom.client as sdk
from strongroom.errors import PinIncorrect, PinLocked
from strongroom.node.users import backoff_s

from .nodes import strongroom
from .pki import OwnerCA, client_certificate
from .test_managed import (  # noqa: F401 (fixture)
    SESSION,
    TEST_HASH_MEMORY_KIB,
    _appliance_context,
    _as_appliance,
    _provision,
    fleet,
    start_node,
)

ADMIN_PW = "admin-pass-1"
USERS = {"admin": ("admin", ADMIN_PW), "admin2": ("admin", "admin2-pass"), "alice": ("crypto-user", "alice-pass-1"),
         "bob": ("crypto-user", "bob-pass-11")}


def _cli(config: Path, *args: str, pin: str | None = None, role: str = "admin") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    env["STRONGROOM_CLUSTER"] = str(config)
    if pin is not None:
        env.update(STRONGROOM_PIN=pin, STRONGROOM_ROLE=role)
    done = subprocess.run([sys.executable, "-m", "strongroom.cli.hsm", *args], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)["data"]


def test_every_user_locked_then_the_owner_recovers_an_admin_who_unlocks_the_others(fleet, tmp_path):  # noqa: F811
    root = fleet
    cluster_id = "cluster-unlocking01"
    founder = _provision(root, "unlock0")
    done = strongroom("init-node", "--data-dir", str(founder), "--cluster-id", cluster_id, "--cluster-key",
                      "--password-hash-memory-kib", TEST_HASH_MEMORY_KIB)
    assert done.returncode == 0, done.stderr
    node = start_node(founder, None)
    try:
        appliance = _appliance_context(root)
        [csr, preco] = _as_appliance(node.endpoint, appliance, ("cluster_csr",), ("initial_password", SESSION))
        owner = OwnerCA(tmp_path)
        owner_key = tmp_path / "owner-ca.key"
        owner_key.write_bytes(owner.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
        _as_appliance(node.endpoint, appliance,
                      ("initialize_cluster", SESSION, owner.sign(csr.encode()).decode(), owner.pem.decode()))
        owner_client = client_certificate(tmp_path, "owner-client", issuer=owner.issued)
        config = {"endpoints": [node.endpoint], "trust_anchor": str(owner.path), "timeout_s": 30,
                  "client_cert": str(owner_client.cert), "client_key": str(owner_client.key)}
        config_file = tmp_path / "cluster.json"
        config_file.write_text(json.dumps(config))
        deadline = time.monotonic() + 20
        while True:  # TLS under the cluster key within a second or two
            try:
                with sdk.connect(config) as cluster:
                    admin = cluster.login("admin", preco, role="admin")
                    break
            except Exception:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        with sdk.connect(config) as cluster:
            admin = cluster.login("admin", preco, role="admin")
            admin.activate(ADMIN_PW)
            for name, (role, password) in USERS.items():
                if name != "admin":
                    admin.create_user(name, password, role)
            admin.close()
            # the attack: wrong passwords for every user, waiting out each back-off, until all are locked
            for failure in range(5):
                time.sleep(backoff_s(failure, 1.0, 60.0) + 0.2)
                for name, (role, _) in USERS.items():
                    try:
                        cluster.login(name, "wrong-password", role=role)
                    except PinIncorrect:
                        pass
            for name, (role, password) in USERS.items():
                try:
                    cluster.login(name, password, role=role)
                except PinLocked:
                    continue
                raise AssertionError(f"{name} is not locked")
        # the owner signs offline; the CLI carries it with no login
        request = tmp_path / "unlock.json"
        signed = strongroom("owner", "sign-unlock", "--key", str(owner_key), "--cluster-id", cluster_id,
                            "--username", "admin", "--valid-for", "600", "--out", str(request))
        assert signed.returncode == 0, signed.stderr
        assert request.stat().st_mode & 0o777 == 0o600
        assert _cli(config_file, "user", "unlock", "--owner-signed", str(request))["username"] == "admin"
        replay = subprocess.run([sys.executable, "-m", "strongroom.cli.hsm", "user", "unlock", "--owner-signed",
                                 str(request)], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "STRONGROOM_CLUSTER": str(config_file)})
        assert replay.returncode != 0 and "CKR_SIGNATURE_INVALID" in replay.stdout
        for name, (role, _) in USERS.items():
            if name != "admin":
                _cli(config_file, "user", "unlock", "--username", name, "--role", role, pin=f"admin:{ADMIN_PW}")
        with sdk.connect(config) as cluster:
            for name, (role, password) in USERS.items():
                cluster.login(name, password, role=role).close()
        [entries] = _as_appliance(node.endpoint, _appliance_context(root, owner.path), ("export_audit", 0))
        events = [(e["event"] if isinstance(e, dict) else e.event, e["actor"] if isinstance(e, dict) else e.actor,
                   e["detail"] if isinstance(e, dict) else e.detail) for e in entries]
        assert {a for ev, a, _ in events if ev == "lockout"} == set(USERS)
        assert [(a, d["user"]) for ev, a, d in events if ev == "owner-unlock"] == [("owner", "admin")]
        assert sorted(d["user"] for ev, a, d in events if ev == "user-unlock" and a == "admin") == [
            "admin2", "alice", "bob"]
        assert all(d.get("peer") for ev, _, d in events if ev in ("owner-unlock", "user-unlock", "lockout",
                                                                  "login-failed"))
    finally:
        node.stop()
