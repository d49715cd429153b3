"""``strongroom up``, the command behind ``make run``: first start sets everything up, the SDK connects with the
client configuration it writes, and a restart keeps the keys."""

from __future__ import annotations

import json
import subprocess
import sys

import strongroom.client as sdk
from strongroom.vocab import CKM


def _up(data_dir) -> tuple[subprocess.Popen, dict]:
    process = subprocess.Popen([sys.executable, "-m", "strongroom", "up", "--data-dir", str(data_dir),
                                "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    announce = json.loads(process.stdout.readline())
    return process, announce


def test_up_serves_a_usable_hsm(tmp_path):
    data = tmp_path / "var"
    process, announce = _up(data)
    try:
        assert announce["state"] == "operational"
        assert oct((data / "preco-password").stat().st_mode & 0o777) == "0o600"
        preco = (data / "preco-password").read_text().strip()
        with sdk.connect(data / "client.json") as cluster:
            with cluster.login("admin", preco, role="admin") as admin:
                admin.activate("admin-pass-1")
                admin.create_user("app", "app-password")
            with cluster.login("app", "app-password") as session:
                key = session.generate_key(CKM.AES_KEY_GEN, value_len=32, label="kept", encrypt=True,
                                           decrypt=True)
                sealed = key.encrypt(b"survives a restart")
    finally:
        process.terminate()
        assert process.wait(15) == 0, process.stderr.read()
    process, announce = _up(data)
    try:
        with sdk.connect(data / "client.json") as cluster, cluster.login("app", "app-password") as session:
            (key,) = session.find(label="kept")
            assert key.decrypt(sealed) == b"survives a restart"
    finally:
        process.terminate()
        process.wait(15)
