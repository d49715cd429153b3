"""A control plane's API served by real uvicorn over real TLS (a certificate from a throwaway CA), on its own
directory: records, sealing key and one access key made as the control plane makes them."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from strongroom.control import access_keys, server
from strongroom.control.api import make_app
from strongroom.control.cloudhsmv2 import ControlPlane
from strongroom.control.process import open_store
from strongroom.trust.ca import CertificateAuthority


@dataclass(frozen=True)
class Api:
    url: str
    ca: str
    key_id: str
    secret: str
    folder: Path


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    folder = tmp_path_factory.mktemp("control")
    store, sealing = open_store(folder)
    key = access_keys.create(store, sealing)
    ca = CertificateAuthority(folder, "test-ca")
    issued = ca.issue("api", server=True)
    config = server.config(make_app(ControlPlane(store, sealing=sealing), body_timeout_s=1.0),
                           tls=server.Tls(issued.cert, issued.key), host="127.0.0.1", header_timeout_s=1.0)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    api_server = uvicorn.Server(config)
    thread = threading.Thread(target=api_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not api_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.02)
    yield Api(f"https://127.0.0.1:{port}", str(ca.issued.cert), key["access_key_id"], key["secret_access_key"],
              folder)
    api_server.should_exit = True
    thread.join(10)
    store.close()
    sock.close()
