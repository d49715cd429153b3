"""A restart of the agent keeps its applications: a new agent on the same socket takes the running one's
listening socket and application connections over (p11-kit's client never reconnects), with their sessions and
login; sessions that cannot survive answer CKR_SESSION_HANDLE_INVALID; a stopping agent holds its applications
for a bounded grace, answering CKR_DEVICE_ERROR at once; nobody else gets anything at the handover point."""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from strongroom.pkcs11 import wire
from strongroom.vocab import CKA, CKF, CKM, CKR

from ..fixtures.cluster import ALICE_PW
from .conftest import P11_KIT_CLIENT, P256
from .raw import RawApplication, initialized, ok, private_key, request, u64s

PIN = f"alice:{ALICE_PW}"
ECDSA = wire.Writer().u32(int(CKM.ECDSA)).data(None).bytes()
SHA256 = wire.Writer().u32(int(CKM.SHA256)).data(None).bytes()
DEADLINE_S = 10.0  # every answer an application waits for comes within this


@pytest.fixture(scope="module")
def signer(alice):
    """An EC P-256 key pair of alice's: (label, verifying public key)."""
    public, _ = alice.generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256, CKA.VERIFY: True},
                                        {CKA.SIGN: True, CKA.SENSITIVE: True}, label="handover-ec")
    return b"handover-ec", ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public[CKA.EC_POINT][2:])


class Agent:
    """A ``strongroom client`` process on ``socket_path``."""

    def __init__(self, config: dict | Path, folder: Path, socket_path: Path, *extra: str) -> None:
        """``config``: the cluster's configuration, written to ``folder``, or its file."""
        if isinstance(config, dict):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "cluster.json").write_text(json.dumps(config))
            config = folder / "cluster.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "strongroom", "client", "--config", str(config), "--socket",
             str(socket_path), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.started = self.line()

    def line(self, timeout_s: float = 30) -> dict:
        readable, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        assert readable, "the agent said nothing"
        line = self.process.stdout.readline()
        assert line, self.process.stderr.read()
        return json.loads(line)

    def ended(self, timeout_s: float = 15) -> str:
        """Its stderr once it ended by itself with 0 and no traceback."""
        code = self.process.wait(timeout_s)
        errors = self.process.stderr.read()
        assert code == 0, errors
        assert "Traceback" not in errors and "never retrieved" not in errors, errors
        return errors

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _deadline(app: RawApplication) -> RawApplication:
    app.sock.settimeout(DEADLINE_S)
    return app


def _session(app: RawApplication) -> int:
    return ok(app.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()


def _logged_in(app: RawApplication) -> int:
    session = _session(app)
    login = request(18, "uuay", u64s(session, 1) + wire.Writer().byte(1).data(PIN.encode()).bytes())
    assert app.call(login) == wire.reply_body(18, "")
    return session


def _signs(app: RawApplication, session: int, key: int, verifier: ec.EllipticCurvePublicKey, text: bytes) -> None:
    """C_SignInit and C_Sign answer a signature the public key verifies."""
    digest = hashlib.sha256(text).digest()
    assert app.call(request(42, "uMu", u64s(session) + ECDSA + u64s(key))) == wire.reply_body(42, "")
    signed = ok(app.call(request(43, "uayfy", u64s(session) + wire.Writer().byte_array(digest).u32(64).bytes())),
                43, "ay")
    signed.byte()
    signature = signed.data()
    verifier.verify(utils.encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                               int.from_bytes(signature[32:], "big")),
                    digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_a_new_agent_takes_the_applications_over_with_their_sessions_and_login(node, signer, tmp_path):
    """Agent A serves a raw application (logged in, one session signing, one in the middle of a multi-part
    digest, one with a C_SignInit answered but no C_Sign yet) and a python-pkcs11 application; agent B starts on
    the same socket: it takes both over, A ends by itself, and both applications sign again on their sessions
    without logging in again. The session whose digest had data answers CKR_SESSION_HANDLE_INVALID."""
    _, config = node
    label, verifier = signer
    socket_path = tmp_path / "p11.sock"
    first = Agent(config, tmp_path / "a", socket_path)
    second = None
    python_app = None
    try:
        assert first.started == {"socket": str(socket_path), "taken_over": 0}
        assert oct(Path(f"{socket_path}.handover").stat().st_mode & 0o777) == "0o600"
        app = _deadline(initialized(socket_path, 1))
        main = _logged_in(app)
        key = private_key(app, main, label)
        _signs(app, main, key, verifier, b"before")
        digesting = _session(app)
        assert app.call(request(37, "uM", u64s(digesting) + SHA256)) == wire.reply_body(37, "")
        assert app.call(request(39, "uay", u64s(digesting) + wire.Writer().byte_array(b"half").bytes())) \
            == wire.reply_body(39, "")
        pending = _session(app)
        assert app.call(request(42, "uMu", u64s(pending) + ECDSA + u64s(key))) == wire.reply_body(42, "")
        env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={socket_path}", "PIN": PIN}
        python_app = subprocess.Popen([sys.executable, str(Path(__file__).with_name("p11_resume.py")),
                                       str(P11_KIT_CLIENT), label.decode()], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

        def python_signs(text: bytes) -> None:
            digest = hashlib.sha256(text).digest()
            python_app.stdin.write(digest.hex() + "\n")
            python_app.stdin.flush()
            readable, _, _ = select.select([python_app.stdout], [], [], DEADLINE_S)
            assert readable, "the python-pkcs11 application got no answer in time"
            out = json.loads(python_app.stdout.readline())
            assert "signature" in out, out
            signature = bytes.fromhex(out["signature"])
            verifier.verify(utils.encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                                       int.from_bytes(signature[32:], "big")),
                            digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))

        assert json.loads(python_app.stdout.readline()) == {"ready": True}
        python_signs(b"python before")
        tried = _deadline(initialized(socket_path, 1))  # a wrong PIN: the PIN flags follow it to the new agent
        wrong = u64s(_session(tried), 1) + wire.Writer().byte_array(b"bob:wrong-pass-1").bytes()
        assert tried.call(request(18, "uuay", wrong)) == wire.error_body(int(CKR.PIN_INCORRECT))

        began = time.monotonic()
        second = Agent(config, tmp_path / "b", socket_path)
        assert second.started == {"socket": str(socket_path), "taken_over": 3}
        first.ended()
        took_s = time.monotonic() - began
        flags = ok(tried.call(request(6, "u", u64s(1))), 6, "ssssuuuuuuuuuuuvvs")
        for _ in range(4):
            flags.data()
        assert flags.u64() & (CKF.USER_PIN_COUNT_LOW | CKF.USER_PIN_FINAL_TRY | CKF.USER_PIN_LOCKED) \
            == CKF.USER_PIN_COUNT_LOW

        python_signs(b"python after")
        _signs(app, main, key, verifier, b"after")  # the same session, logged in by the new agent
        digest = hashlib.sha256(b"pending after").digest()  # C_SignInit went to A, C_Sign to B
        signed = ok(app.call(request(43, "uayfy", u64s(pending) + wire.Writer().byte_array(digest).u32(64)
                                     .bytes())), 43, "ay")
        signed.byte()
        signature = signed.data()
        verifier.verify(utils.encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                                   int.from_bytes(signature[32:], "big")),
                        digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        assert app.call(request(41, "ufy", u64s(digesting) + b"\x00\x00\x00\x20")) \
            == wire.error_body(int(CKR.SESSION_HANDLE_INVALID))
        assert app.call(request(13, "u", u64s(digesting))) == wire.error_body(int(CKR.SESSION_HANDLE_INVALID))
        new = _session(app)  # a new session shares the application's login, and its handle is a new one
        assert new not in (main, digesting, pending)
        _signs(app, new, key, verifier, b"new session")
        print(f"handover took {took_s:.2f} s")
    finally:
        if python_app is not None:
            python_app.kill()
            python_app.wait(10)
        for agent in (first, second):
            if agent is not None:
                agent.stop()


def test_a_stopping_agent_holds_its_applications_for_the_next_one_and_answers_at_once(node, signer, tmp_path):
    """SIGTERM to an agent with --handover-grace: it says it holds one application, whose cluster calls answer
    CKR_DEVICE_ERROR at once while local ones still answer; the next agent takes it over and it signs on its
    session. An agent that nobody takes over ends when the grace is over, and the application sees the end."""
    _, config = node
    label, verifier = signer
    socket_path = tmp_path / "p11.sock"
    first = Agent(config, tmp_path / "a", socket_path, "--handover-grace", "60")
    second = third = None
    try:
        app = _deadline(initialized(socket_path, 0))
        main = _logged_in(app)
        key = private_key(app, main, label)
        first.process.send_signal(signal.SIGTERM)
        assert first.line() == {"holding": 1, "grace_s": 60.0}
        began = time.monotonic()
        assert app.call(request(42, "uMu", u64s(main) + ECDSA + u64s(key))) \
            == wire.error_body(int(CKR.DEVICE_ERROR))
        assert app.call(request(6, "u", u64s(1))) == wire.error_body(int(CKR.DEVICE_ERROR))
        assert app.call(request(4, "yfu", b"\x01\x00\x00\x00\x00")) == wire.reply_body(
            4, "au", wire.Writer().ulong_array(None, 1))  # C_GetSlotList is the agent's own
        # C_OpenSession is answered while holding, for an application with connections to the cluster and for
        # one that connected since: libp11 0.4.12 (OpenSSL's engine) waits for ever after a failed one
        held = _session(app)
        newcomer = _deadline(initialized(socket_path, 0))
        newcomer_session = _session(newcomer)
        parallel = request(10, "uu", u64s(1, 2))  # CKF_RW_SESSION without CKF_SERIAL_SESSION
        assert newcomer.call(parallel) == wire.error_body(int(CKR.SESSION_PARALLEL_NOT_SUPPORTED))
        assert time.monotonic() - began < 2
        second = Agent(config, tmp_path / "b", socket_path, "--handover-grace", "1")
        assert second.started["taken_over"] == 2
        first.ended()
        _signs(app, main, key, verifier, b"after holding")
        _signs(app, held, key, verifier, b"on a session opened while held")
        login = request(18, "uuay", u64s(newcomer_session, 1) + wire.Writer().byte(1).data(PIN.encode()).bytes())
        assert newcomer.call(login) == wire.reply_body(18, "")
        _signs(newcomer, newcomer_session, private_key(newcomer, newcomer_session, label), verifier, b"newcomer")
        newcomer.sock.close()

        second.process.send_signal(signal.SIGTERM)
        assert second.line() == {"holding": 1, "grace_s": 1.0}
        began = time.monotonic()
        second.ended()
        assert time.monotonic() - began < 5
        assert app.sock.recv(100) == b""  # the agent closed the application's connection
        assert not socket_path.exists() and not Path(f"{socket_path}.handover").exists()

        third = Agent(config, tmp_path / "c", socket_path, "--handover-grace", "60")
        third.process.send_signal(signal.SIGTERM)  # no application: it ends at once
        third.ended(5)
    finally:
        for agent in (first, second, third):
            if agent is not None:
                agent.stop()


def _as_nobody(code: str) -> subprocess.CompletedProcess:
    def drop() -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable  # one nobody may run
    return subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, timeout=30, preexec_fn=drop,
                          cwd="/")


PROBE = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(5)
try:
    s.connect(sys.argv[1] if len(sys.argv) > 1 else {path!r})
except OSError as exc:
    print("refused", type(exc).__name__)
    raise SystemExit
got, fds = b"", []
while True:
    msg, more, _, _ = socket.recv_fds(s, 65536, 8)
    got += msg
    fds += more
    if not msg:
        break
    s.send(bytes(96))  # a made-up answer to whatever it asks
print("got", len(got), "fds", len(fds), got[:27].decode("latin-1"))
"""


def test_nobody_else_gets_anything_at_the_handover_point(node, signer):
    """Another user, even with the handover point's mode opened to everyone, is closed on before any byte; a
    process of the agent's own user without its client key gets a challenge and nothing else (no descriptor, no
    state); the agent's application keeps working, and a real successor still takes it over."""
    _, config = node
    label, verifier = signer
    folder = Path(tempfile.mkdtemp(prefix="handover-"))
    os.chmod(folder, 0o711)  # noqa: S103 - others may reach the socket's name, not list the folder
    socket_path = folder / "p11.sock"
    point = Path(f"{socket_path}.handover")
    first = Agent(config, folder / "a", socket_path)
    second = None
    try:
        app = _deadline(initialized(socket_path, 0))
        main = _logged_in(app)
        key = private_key(app, main, label)
        assert _as_nobody(PROBE.format(path=str(point))).stdout.strip() == "refused PermissionError"
        os.chmod(point, 0o666)  # noqa: S103 - an operator's mistake: still nobody else's
        probe = _as_nobody(PROBE.format(path=str(point)))
        assert probe.stdout.strip() == "got 0 fds 0", probe.stdout + probe.stderr
        os.chmod(point, 0o600)
        same_user = subprocess.run([sys.executable, "-c", PROBE.format(path=str(point))], capture_output=True,
                                   text=True, timeout=30)
        assert same_user.stdout.strip() == "got 59 fds 0 strongroom-agent-handover-1", same_user.stderr
        _signs(app, main, key, verifier, b"after the probes")
        second = Agent(config, folder / "b", socket_path)
        assert second.started["taken_over"] == 1
        errors = first.ended()
        assert errors.count("refused a handover") == 2, errors
        assert PIN not in errors and ALICE_PW not in errors
        _signs(app, main, key, verifier, b"after the handover")
    finally:
        for agent in (first, second):
            if agent is not None:
                agent.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_an_agent_that_cannot_prove_the_key_takes_nothing_and_says_why(node, pki, tmp_path):
    """A second agent with another client key on the socket of a running one: the running one refuses it, the
    second ends with an error naming the socket, and the first serves on."""
    from ..cluster.pki import issue_agent

    _, config = node
    socket_path = tmp_path / "p11.sock"
    first = Agent(config, tmp_path / "a", socket_path)
    try:
        app = _deadline(initialized(socket_path, 0))
        other = issue_agent(pki["ca"], tmp_path, name="other-agent")
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "cluster.json").write_text(json.dumps({**config, "client_cert": str(other.cert),
                                                                 "client_key": str(other.key)}))
        done = subprocess.run([sys.executable, "-m", "strongroom", "client", "--config",
                               str(tmp_path / "b" / "cluster.json"), "--socket", str(socket_path)],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 1
        assert f"an agent serves {socket_path} and did not hand it over" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert _session(app) > 0
    finally:
        first.stop()


@pytest.mark.slow
def test_nginx_keeps_serving_across_a_restart_of_strongroom_up(tmp_path):
    """nginx serves TLS 1.3 with its RSA key inside the cluster (libp11's engine, p11-kit-client.so) while
    ``strongroom up`` is stopped (Ctrl-C) and started again: pages fetched before the stop and after the new
    ``ready`` all arrive; in between a fetch may be refused, none hangs past its deadline; nginx is never
    restarted or reloaded."""
    import strongroom.client as sdk

    from ..cluster.test_up import _up
    from .test_applications import ENGINE, NGINX_CONF, _free_port

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists() or ENGINE is None:
        pytest.skip("nginx or libengine-pkcs11-openssl is not installed")
    data = tmp_path / "var"
    up = _up(data, hsms=1)
    server = manual = None
    fetches: list[tuple[float, float, int, str]] = []  # started, ended, curl's exit code, page
    try:
        summary = json.loads((data / "cluster.json").read_text())
        user = json.loads((data / "credentials.json").read_text())["crypto_user"]
        with sdk.connect(data / "cluster.json") as cluster, \
                cluster.login(user["username"], user["password"]) as session:
            session.generate_key_pair(CKM.RSA_PKCS_KEY_PAIR_GEN,
                                      {CKA.MODULUS_BITS: 2048, CKA.PUBLIC_EXPONENT: b"\x01\x00\x01", CKA.VERIFY: True},
                                      {CKA.SIGN: True, CKA.SENSITIVE: True, CKA.EXTRACTABLE: False}, label="web-rsa")
        uri = (f"pkcs11:token={summary['cluster_id']};object=web-rsa;type=private;"
               f"pin-value={user['username']}:{user['password']}")
        env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={summary['pkcs11_socket']}",
               "PKCS11_MODULE_PATH": str(P11_KIT_CLIENT)}
        cert = tmp_path / "cert.pem"
        subprocess.run(["openssl", "req", "-new", "-x509", "-engine", "pkcs11", "-keyform", "engine", "-key", uri,
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2", "-sha256",
                        "-out", str(cert)], env=env, check=True, capture_output=True, timeout=120)
        port = _free_port()
        (tmp_path / "nginx.conf").write_text(NGINX_CONF.format(folder=tmp_path, port=port, uri=uri))
        server = subprocess.Popen([nginx, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def fetch() -> None:
            started = time.monotonic()
            done = subprocess.run(["curl", "--silent", "--tlsv1.3", "--max-time", str(DEADLINE_S), "--cacert",
                                   str(cert), f"https://127.0.0.1:{port}/"], capture_output=True, text=True,
                                  timeout=DEADLINE_S + 5)
            fetches.append((started, time.monotonic(), done.returncode, done.stdout))

        for _ in range(100):  # nginx starting
            fetch()
            if fetches[-1][2] == 0:
                break
            time.sleep(0.1)
        masters = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
        for _ in range(5):
            fetch()
        stopped = time.monotonic()
        up.send_signal(signal.SIGINT)  # Ctrl-C
        while up.poll() is None:
            fetch()
            time.sleep(0.1)
        assert up.returncode == 0, up.stderr.read()
        said = json.loads(up.stdout.read().splitlines()[-1])["step"]  # nginx's master and its two workers
        assert said == "the agent holds 3 PKCS#11 applications for 120 s: the next start takes them over", said
        for _ in range(3):
            fetch()
        up = _up(data, hsms=1)
        ready = time.monotonic()
        for _ in range(10):
            fetch()
        # an agent started by hand on the socket (an upgrade in place) takes over from up's; up serves on
        replaced = time.monotonic()
        manual = Agent(data / "cluster.json", data, Path(summary["pkcs11_socket"]))
        assert manual.started["taken_over"] == 3
        for _ in range(5):
            fetch()
        time.sleep(1.5)
        assert up.poll() is None
        assert server.poll() is None
        assert subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split() \
            == masters  # the same workers: no restart, no reload
    finally:
        if server is not None:
            server.terminate()
            server.wait(15)
        up.send_signal(signal.SIGINT)
        up.wait(120)
        if manual is not None:
            manual.process.terminate()
            manual.ended()
    print(f"fetches: {len(fetches)}, refused in the window: {sum(1 for f in fetches if f[2])}, "
          f"window {ready - stopped:.1f} s, slowest {max(f[1] - f[0] for f in fetches):.2f} s")
    assert all(f[1] - f[0] < DEADLINE_S for f in fetches), "a fetch hung"
    first_ok = next(i for i, f in enumerate(fetches) if f[2] == 0)
    before = [f for f in fetches[first_ok:] if f[1] < stopped]
    after = [f for f in fetches if f[0] > ready]
    assert len(before) >= 5 and len(after) == 15 and sum(f[0] > replaced for f in after) == 5
    assert all(f[2] == 0 and f[3] == "key inside Strongroom\n" for f in before + after), fetches
    assert not subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True).stdout
    assert {"step": f"another agent took {summary['pkcs11_socket']} over (its applications with it)"} in [
        json.loads(line) for line in up.stdout.read().splitlines()]
    log = (data / "logs" / "agent.log").read_text()
    assert "Traceback" not in log and user["password"] not in log, log


RELAY = """
import os, socket, sys, time
point = sys.argv[1]
to_agent = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
to_agent.settimeout(20)
to_agent.connect(point)
hello = to_agent.recv(65536)  # the running agent's challenge
os.unlink(point)  # the agent's handover point, replaced by this process's own
mine = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
mine.bind(point)
mine.listen(1)
print("listening", flush=True)
successor, _ = mine.accept()
successor.settimeout(20)
successor.send(hello)
to_agent.send(successor.recv(65536))  # the successor's proof, passed on
got, fds, _, _ = socket.recv_fds(to_agent, 65536, 8)
print("got", len(got), "fds", len(fds), flush=True)
"""


def test_a_process_relaying_between_two_agents_gets_nothing(node, signer, tmp_path):
    """A process of the agent's user without its key connects to the running agent's handover point, puts its
    own socket in its place and relays a real successor's proof to the running agent: the proof names the
    processes at both ends, so the running agent refuses it and sends nothing; its application keeps working."""
    _, config = node
    label, verifier = signer
    socket_path = tmp_path / "p11.sock"
    point = Path(f"{socket_path}.handover")
    first = Agent(config, tmp_path / "a", socket_path)
    try:
        app = _deadline(initialized(socket_path, 0))
        main = _logged_in(app)
        key = private_key(app, main, label)
        relay = subprocess.Popen([sys.executable, "-c", RELAY, str(point)], stdout=subprocess.PIPE, text=True)
        assert relay.stdout.readline() == "listening\n"
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "cluster.json").write_text(json.dumps(config))
        done = subprocess.run([sys.executable, "-m", "strongroom", "client", "--config",
                               str(tmp_path / "b" / "cluster.json"), "--socket", str(socket_path)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "did not hand it over" in done.stderr, done.stderr
        assert relay.communicate(timeout=30)[0] == "got 0 fds 0\n"
        _signs(app, main, key, verifier, b"after the relay")
        first.process.terminate()
        assert "did not prove it holds the agent's key" in first.ended()
    finally:
        first.stop()


def test_requests_pipelined_through_two_handovers_are_each_answered_once(node, tmp_path):
    """An application pipelines C_GetSessionInfo while agent B takes over from A: each of the 400 requests is
    answered exactly once, correctly; then a frame whose first half reached B and whose second half comes after C
    took over from B is answered by C."""
    import threading

    _, config = node
    socket_path = tmp_path / "p11.sock"
    agents = [Agent(config, tmp_path / "a", socket_path)]
    try:
        app = _deadline(initialized(socket_path, 0))
        session = _logged_in(app)
        info = request(13, "u", u64s(session))
        expected = app.call(info)
        assert expected == wire.reply_body(13, "uuuu") + u64s(1, 3, 6, 0)  # CKS_RW_USER_FUNCTIONS, RW | SERIAL

        sent_until = []

        def send() -> None:
            for burst in range(40):
                app.sock.sendall(b"".join(wire.encode_frame(0x1000 + burst * 10 + i, info, b"client")
                                          for i in range(10)))
                time.sleep(0.1)
            sent_until.append(time.monotonic())

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.2)
        agents.append(Agent(config, tmp_path / "b", socket_path))
        took_over = time.monotonic()
        answers: dict[int, list[bytes]] = {}
        while sum(len(a) for a in answers.values()) < 400:
            for code, _, body in app.frames.feed(app.sock.recv(65536)):
                answers.setdefault(code, []).append(body)
        sender.join()
        assert sent_until[0] > took_over  # requests came before, during and after the handover
        assert agents[1].started["taken_over"] == 1
        agents[0].ended()
        assert sorted(answers) == list(range(0x1000, 0x1000 + 400))
        assert all(bodies == [expected] for bodies in answers.values())

        frame = wire.encode_frame(0x2000, info, b"client")
        app.sock.sendall(frame[:10])
        time.sleep(0.2)
        agents.append(Agent(config, tmp_path / "c", socket_path))
        assert agents[2].started["taken_over"] == 1
        agents[1].ended()
        app.sock.sendall(frame[10:])
        got = app.frames.feed(app.sock.recv(65536))
        assert got == [(0x2000, b"", expected)]
    finally:
        for agent in agents:
            agent.stop()


def test_an_application_with_session_objects_loses_its_sessions_at_once_and_can_start_again(node, tmp_path):
    """A session object lives on the HSM connection of the agent that made it: after a handover, every session
    of that application answers CKR_SESSION_HANDLE_INVALID within the deadline (not a handle that might now
    name nothing), and the application opens a new session and logs in again."""
    _, config = node
    socket_path = tmp_path / "p11.sock"
    agents = [Agent(config, tmp_path / "a", socket_path)]
    try:
        app = _deadline(initialized(socket_path, 0))
        main = _logged_in(app)
        other = _session(app)
        template = (wire.Writer().u32(3).attribute(0x0, 0).attribute(0x1, False).attribute(0x11, b"note")
                    .bytes())  # CKO_DATA, CKA_TOKEN false, CKA_VALUE
        assert ok(app.call(request(20, "uaA", u64s(main) + template)), 20, "u").u64() & 1 << 63  # a session object
        agents.append(Agent(config, tmp_path / "b", socket_path))
        agents[0].ended()
        began = time.monotonic()
        for session in (main, other):
            assert app.call(request(13, "u", u64s(session))) == wire.error_body(int(CKR.SESSION_HANDLE_INVALID))
        assert time.monotonic() - began < DEADLINE_S
        again = _logged_in(app)  # the login ended with the sessions
        assert app.call(request(13, "u", u64s(again))) == wire.reply_body(13, "uuuu") + u64s(1, 3, 6, 0)
    finally:
        for agent in agents:
            agent.stop()


def test_a_successor_that_leaves_half_way_leaves_the_applications_with_the_running_agent(node, signer, tmp_path):
    """A successor proves the key, takes the listening socket and goes away before confirming: the running agent
    takes its applications back and serves on (the application signs on its session, new applications
    connect), and a later successor takes them over."""
    from strongroom.pkcs11 import handover

    _, config = node
    label, verifier = signer
    socket_path = tmp_path / "p11.sock"
    agents = [Agent(config, tmp_path / "a", socket_path)]
    try:
        app = _deadline(initialized(socket_path, 0))
        main = _logged_in(app)
        key = private_key(app, main, label)
        sock = handover.connect(Path(f"{socket_path}.handover"))
        sock.settimeout(DEADLINE_S)
        handover.prove_successor(sock, handover.secret_of(Path(config["client_key"])))
        _, fds = handover.receive_blob(sock)  # the listening socket, then nothing more
        for fd in fds:
            os.close(fd)
        sock.close()
        _signs(app, main, key, verifier, b"taken back")
        newcomer = _deadline(initialized(socket_path, 0))
        assert _session(newcomer) > 0
        agents.append(Agent(config, tmp_path / "b", socket_path))
        assert agents[1].started["taken_over"] == 2
        assert "the handover failed, serving on" in agents[0].ended()
        _signs(app, main, key, verifier, b"taken over")
        assert _session(newcomer) > 0
    finally:
        for agent in agents:
            agent.stop()
