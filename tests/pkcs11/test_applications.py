"""Real applications with their keys in a 3-HSM cluster, through p11-kit's client and the agent: GnuTLS's p11tool,
OpenSSL with libp11's engine (Debian's libengine-pkcs11-openssl), and nginx serving TLS 1.3 while an HSM dies."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

import strongroom.client as sdk
from strongroom.pkcs11 import wire
from strongroom.vocab import CKA, CKM, CKR

from ..cluster.replicas import ALICE_PW, kill, running
from .conftest import P11_KIT_CLIENT, P256, serving_agent
from .raw import initialized, ok, private_key, request, u64s

TOKEN = "cluster-test0000001"
PIN = f"alice:{ALICE_PW}"
ENGINE = next(iter(sorted(Path("/usr/lib").glob("*/engines-3/pkcs11.so"))), None)


@pytest.fixture(scope="module")
def cluster3(pki, tmp_path_factory):
    with running(tmp_path_factory.mktemp("apps"), pki, 3) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def keys(cluster3):
    """A non-extractable RSA-2048 and EC P-256 pair for each application, made through the SDK."""
    with sdk.connect(cluster3.config()) as c, c.login("alice", ALICE_PW) as alice:
        made = {}
        for name, mech, public, private in (
                ("app-rsa", CKM.RSA_PKCS_KEY_PAIR_GEN, {CKA.MODULUS_BITS: 2048, CKA.PUBLIC_EXPONENT: b"\x01\x00\x01"},
                 {}),
                ("app-ec", CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256}, {})):
            pub, _ = alice.generate_key_pair(mech, {**public, CKA.VERIFY: True, CKA.ID: name.encode()},
                                             {**private, CKA.SIGN: True, CKA.SENSITIVE: True,
                                              CKA.EXTRACTABLE: False, CKA.ID: name.encode()}, label=name)
            made[name] = pub
        yield made


@pytest.fixture(scope="module")
def agent3(cluster3, tmp_path_factory):
    with serving_agent(cluster3.config(), tmp_path_factory.mktemp("agent3")) as socket_path:
        yield socket_path


def _env(agent: Path) -> dict[str, str]:
    return {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}", "PKCS11_MODULE_PATH": str(P11_KIT_CLIENT),
            "GNUTLS_PIN": PIN}


def _uri(label: str) -> str:
    return f"pkcs11:token={TOKEN};object={label};type=private;pin-value={PIN}"


def _run(argv: list[str], env: dict[str, str], **kwargs) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, **kwargs)
    assert done.returncode == 0, f"{argv[0]}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


@pytest.mark.parametrize("label", ["app-rsa", "app-ec"])
def test_p11tool_test_sign(agent3, keys, label):
    out = _run(["p11tool", "--provider", str(P11_KIT_CLIENT), "--login", "--test-sign",
                f"pkcs11:token={TOKEN};object={label};type=private"], _env(agent3))
    assert "Signing using" in out and "Verifying against public key" in out and "ok" in out
    assert "failed" not in out.lower()


def test_openssl_engine_self_signs_a_certificate_and_signs_a_file(agent3, keys, tmp_path):
    if ENGINE is None:
        pytest.skip("libengine-pkcs11-openssl is not installed")
    env = _env(agent3)
    cert = tmp_path / "cert.pem"
    _run(["openssl", "req", "-new", "-x509", "-engine", "pkcs11", "-keyform", "engine", "-key", _uri("app-rsa"),
          "-subj", "/CN=strongroom.test", "-days", "2", "-sha256", "-out", str(cert)], env)
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    rsa_public = keys["app-rsa"]
    numbers = certificate.public_key().public_numbers()
    assert numbers.n == int.from_bytes(rsa_public[CKA.MODULUS], "big")  # the HSM's key is the one certified
    certificate.public_key().verify(certificate.signature, certificate.tbs_certificate_bytes, padding.PKCS1v15(),
                                    hashes.SHA256())
    data = tmp_path / "data"
    data.write_bytes(b"a file signed by an HSM key through OpenSSL" * 100)
    public = tmp_path / "ec.pem"
    public.write_bytes(_ec_public_pem(keys["app-ec"]))
    for label, key_file in (("app-ec", public), ("app-rsa", tmp_path / "rsa.pem")):
        if label == "app-rsa":
            key_file.write_bytes(certificate.public_key().public_bytes(serialization.Encoding.PEM,
                                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
        signature = tmp_path / f"{label}.sig"
        _run(["openssl", "dgst", "-sha256", "-engine", "pkcs11", "-keyform", "engine", "-sign", _uri(label),
              "-out", str(signature), str(data)], env)
        out = _run(["openssl", "dgst", "-sha256", "-verify", str(key_file), "-signature", str(signature),
                    str(data)], env)
        assert "Verified OK" in out


def _ec_public_pem(public: dict) -> bytes:
    point = public[CKA.EC_POINT][2:]
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NGINX_CONF = """
daemon off;
master_process on;
worker_processes 2;
user root;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
env P11_KIT_SERVER_ADDRESS;
env PKCS11_MODULE_PATH;
ssl_engine pkcs11;
events {{ worker_connections 64; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_protocols TLSv1.3;
        ssl_certificate {folder}/cert.pem;
        ssl_certificate_key "engine:pkcs11:{uri}";
        location / {{ return 200 "key inside Strongroom\\n"; }}
    }}
}}
"""


def test_nginx_serves_tls13_with_its_key_in_the_cluster_while_an_hsm_dies(cluster3, agent3, keys, tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists() or ENGINE is None:
        pytest.skip("nginx or libengine-pkcs11-openssl is not installed")
    env = _env(agent3)
    _run(["openssl", "req", "-new", "-x509", "-engine", "pkcs11", "-keyform", "engine", "-key", _uri("app-rsa"),
          "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2", "-sha256",
          "-out", str(tmp_path / "cert.pem")], env)
    port = _free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(folder=tmp_path, port=port, uri=_uri("app-rsa")))
    server = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        for round_ in range(3):
            if round_ == 1:
                kill(cluster3.nodes[1])  # an HSM dies; the agent's other connections carry on
            for _ in range(10):
                out = _fetch(port, tmp_path / "cert.pem", env)
                assert out == "key inside Strongroom\n"
    finally:
        server.terminate()
        server.wait(15)
        cluster3.restart(cluster3.nodes[1])
    log = (tmp_path / "error.log").read_text()
    assert "[emerg]" not in log and "[crit]" not in log, log


def _fetch(port: int, ca: Path, env: dict[str, str]) -> str:
    for _ in range(100):  # nginx may still be starting
        done = subprocess.run(["curl", "--silent", "--show-error", "--tlsv1.3", "--cacert", str(ca),
                               f"https://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=60, env=env)
        if done.returncode != 7:  # 7: could not connect yet
            assert done.returncode == 0, done.stderr
            return done.stdout
        time.sleep(0.1)
    raise AssertionError("nginx did not start")


def test_java_sunpkcs11_generates_a_key_and_signs_a_jar(agent3, tmp_path):
    if not all(shutil.which(tool) for tool in ("keytool", "jarsigner", "jar")):
        pytest.skip("a JDK (keytool, jarsigner, jar) is not installed")
    config = tmp_path / "strongroom.cfg"
    config.write_text(JAVA_CONFIG.format(module=P11_KIT_CLIENT))
    env = _env(agent3)
    store = ["-keystore", "NONE", "-storetype", "PKCS11", "-providerName", "SunPKCS11-Strongroom",
             "-addprovider", "SunPKCS11", "-providerArg", str(config), "-storepass", PIN]
    _run(["keytool", "-genkeypair", "-keyalg", "EC", "-groupname", "secp256r1", "-alias", "java-signer",
          "-dname", "CN=java-signer", *store], env)
    assert "java-signer, PrivateKeyEntry" in _run(["keytool", "-list", *store], env)
    (tmp_path / "hello.txt").write_text("signed by a key inside Strongroom\n")
    jar = tmp_path / "hello.jar"
    _run(["jar", "cf", str(jar), "-C", str(tmp_path), "hello.txt"], env)
    _run(["jarsigner", *store, str(jar), "java-signer"], env)
    verified = _run(["jarsigner", "-verify", "-verbose", str(jar)], env)
    assert "jar verified." in verified


JAVA_CONFIG = """name = Strongroom
library = {module}
slot = 1
attributes(generate, CKO_PRIVATE_KEY, *) = {{
  CKA_SIGN = true
}}
attributes(generate, CKO_PUBLIC_KEY, *) = {{
  CKA_VERIFY = true
}}
"""


def _session(app, flags: int = 6) -> int:
    return ok(app.call(request(10, "uu", u64s(1, flags))), 10, "u").u64()


def _login(app, session: int, user_type: int, pin: str) -> bytes:
    return app.call(request(18, "uuay", u64s(session, user_type) + wire.Writer().byte(1).data(pin.encode()).bytes()))


def _private_keys(app, session: int) -> list[int]:
    template = wire.Writer().u32(1).attribute(0x0, 3).bytes()
    assert app.call(request(26, "uaA", u64s(session) + template)) == wire.reply_body(26, "")
    found = ok(app.call(request(27, "ufu", u64s(session) + b"\x00\x00\x01\x00")), 27, "au")
    found.byte()
    handles = [found.u64() for _ in range(found.u32())]
    assert app.call(request(28, "u", u64s(session))) == wire.reply_body(28, "")
    return handles


def test_closing_short_sessions_keeps_the_applications_login_on_every_hsm(agent3, keys):
    """PKCS#11 3.0 §5.6: the login belongs to the application until its last session closes, whichever HSMs its
    sessions were opened on."""
    app = initialized(agent3, 0)
    main = _session(app)
    assert _login(app, main, 1, PIN) == wire.reply_body(18, "")
    expected = sorted(_private_keys(app, main))
    assert len(expected) >= 2
    for _ in range(12):  # short sessions land on every HSM in turn and close again
        short = _session(app)
        assert sorted(_private_keys(app, short)) == expected
        state = ok(app.call(request(13, "u", u64s(short))), 13, "uuuu")
        state.u64()
        assert state.u64() == 3  # CKS_RW_USER_FUNCTIONS
        assert app.call(request(11, "u", u64s(short))) == wire.reply_body(11, "")
    assert sorted(_private_keys(app, main)) == expected
    assert app.call(request(19, "u", u64s(main))) == wire.reply_body(19, "")


def test_one_application_is_logged_in_once_and_never_as_two_users(agent3):
    app = initialized(agent3, 0)
    first, second = _session(app), _session(app)
    # both logins sent before either answer: one wins, the other is refused
    for session in (first, second):
        app.code += 1
        app.sock.sendall(wire.encode_frame(app.code, request(18, "uuay", u64s(session, 1) + wire.Writer().byte(1).data(
            PIN.encode()).bytes()), b"client"))
    answers = []
    while len(answers) < 2:
        answers += [body for _, _, body in app.frames.feed(app.sock.recv(65536))]
    assert sorted(answers) == sorted([wire.reply_body(18, ""), wire.error_body(int(CKR.USER_ALREADY_LOGGED_IN))])
    assert _login(app, first, 0, "admin:whatever") == wire.error_body(int(CKR.USER_ANOTHER_ALREADY_LOGGED_IN))
    assert app.call(request(19, "u", u64s(first))) == wire.reply_body(19, "")
    read_only = _session(app, flags=4)
    assert _login(app, first, 0, "admin:whatever") == wire.error_body(int(CKR.SESSION_READ_ONLY_EXISTS))
    assert app.call(request(11, "u", u64s(read_only))) == wire.reply_body(11, "")


def test_after_a_logout_answered_ok_no_hsm_signs_for_the_application(agent3, keys):
    """C_Logout and a C_SignInit sent together, the init opening the session on another HSM and logging it in
    there while the logout runs: once C_Logout answered CKR_OK, no C_SignInit + C_Sign on any HSM signs, and
    private objects are out of sight (PKCS#11 3.0 §5.6). Each round is a new application."""
    ecdsa = wire.Writer().u32(int(CKM.ECDSA)).data(None).bytes()
    with_login = initialized(agent3, 0)
    session = _session(with_login)
    assert _login(with_login, session, 1, PIN) == wire.reply_body(18, "")
    key = private_key(with_login, session, b"app-ec")
    with_login.sock.close()
    for _ in range(60):
        app = initialized(agent3, 0)
        session = _session(app)
        assert _login(app, session, 1, PIN) == wire.reply_body(18, "")
        logout, init = (app.code + 1, app.code + 2)
        app.code += 2
        sign_init = request(42, "uMu", u64s(session) + ecdsa + u64s(key))
        app.sock.sendall(wire.encode_frame(logout, request(19, "u", u64s(session)), b"client")
                         + wire.encode_frame(init, sign_init, b"client"))
        answers: dict[int, bytes] = {}
        while len(answers) < 2:
            answers.update((code, body) for code, _, body in app.frames.feed(app.sock.recv(65536)))
        assert answers[logout] == wire.reply_body(19, "")
        for attempt in range(4):
            if attempt or answers[init] != wire.reply_body(42, ""):
                app.call(request(42, "uMu", u64s(session) + b"\xff\xff\xff\xff" + u64s(0)))  # end any
                app.call(sign_init)
            data = wire.Writer().byte_array(bytes(32)).u32(64).bytes()
            signed = app.call(request(43, "uayfy", u64s(session) + data))
            assert signed[:4] == b"\x00\x00\x00\x00", signed  # an error answer (call id 0), never a signature
        assert _private_keys(app, session) == []
        app.sock.close()


def test_applications_leaving_while_the_agent_connects_them_to_more_hsms_leave_no_connection_open(agent3):
    """An application's first answer comes once one HSM is connected; the agent goes on connecting to the
    others. Applications hanging up right then (the TLS handshake or the hello to the others under way) leave
    no connection behind."""
    probe = initialized(agent3, 0)
    pid = struct.unpack("3i", probe.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]

    def descriptors() -> int:
        return len(os.listdir(f"/proc/{pid}/fd"))

    token_info = request(6, "u", u64s(1))
    before = descriptors()
    for i in range(100):
        app = initialized(agent3, 0)
        app.code += 1
        app.sock.sendall(wire.encode_frame(app.code, token_info, b"client"))
        if i % 2:
            time.sleep((i % 7) / 1000)  # gone during the connecting, 1-6 ms in
        else:
            app.frames.feed(app.sock.recv(65536))  # gone right after the first answer: more HSMs connecting
        app.sock.close()
    time.sleep(3)
    assert descriptors() - before < 4, f"{descriptors() - before} descriptors more"  # 10 when they leaked
    assert probe.call(token_info).startswith(wire.reply_body(6, "ssssuuuuuuuuuuuvvs"))


def test_an_init_the_hsm_holds_survives_that_hsm_dying_before_the_operation(cluster3, agent3, keys):
    """C_SignInit accepted by an HSM (each session's first, so not answered by the agent), then that HSM dies:
    C_Sign still answers a valid signature, the agent making the init again on another HSM with the
    operation (no data had reached the dead one). Three sessions spread over the three HSMs; one killed."""
    with sdk.connect(cluster3.config()) as c, c.login("alice", ALICE_PW) as alice:
        point = alice.key(keys["app-ec"].handle)[CKA.EC_POINT]
    verifier = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point[2:])
    ecdsa = wire.Writer().u32(int(CKM.ECDSA)).data(None).bytes()
    app = initialized(agent3, 0)
    main = _session(app)
    assert _login(app, main, 1, PIN) == wire.reply_body(18, "")
    key = private_key(app, main, b"app-ec")
    sessions = [_session(app) for _ in range(3)]
    for session in sessions:
        passing = _session(app)  # closing a session makes the next init go to the HSM (nothing proven)
        assert app.call(request(11, "u", u64s(passing))) == wire.reply_body(11, "")
        assert app.call(request(42, "uMu", u64s(session) + ecdsa + u64s(key))) == wire.reply_body(42, "")
    victim = cluster3.nodes[0]
    kill(victim)
    try:
        for i, session in enumerate(sessions):
            digest = hashlib.sha256(b"after the failover %d" % i).digest()
            signed = ok(app.call(request(43, "uayfy", u64s(session) + wire.Writer().byte_array(digest).u32(64)
                                         .bytes())), 43, "ay")
            signed.byte()
            signature = signed.data()
            verifier.verify(utils.encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                                       int.from_bytes(signature[32:], "big")),
                            digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    finally:
        cluster3.restart(victim)


def test_session_objects_made_at_once_by_a_new_application_all_stay_usable(agent3):
    """Twelve session key pairs made at once in twelve sessions of an application that has none yet: they all
    land on one HSM (the application's home for session objects), so each signs afterwards from any of its
    sessions (PKCS#11 3.0 §4.4: every session of an application sees its session objects)."""
    app = initialized(agent3, 0)
    main = _session(app)
    assert _login(app, main, 1, PIN) == wire.reply_body(18, "")
    sessions = [_session(app) for _ in range(12)]
    mechanism = wire.Writer().u32(int(CKM.EC_KEY_PAIR_GEN)).data(None).bytes()
    public = wire.Writer().u32(3).attribute(0x180, P256).attribute(0x10A, True).attribute(0x1, False).bytes()
    private = wire.Writer().u32(2).attribute(0x108, True).attribute(0x1, False).bytes()
    codes = list(range(app.code + 1, app.code + 13))
    app.code = codes[-1]
    app.sock.sendall(b"".join(wire.encode_frame(code, request(59, "uMaAaA", u64s(session) + mechanism + public
                                                                + private), b"client")
                              for code, session in zip(codes, sessions, strict=True)))
    answers: dict[int, bytes] = {}
    while len(answers) < len(codes):
        answers.update((code, body) for code, _, body in app.frames.feed(app.sock.recv(65536)))
    ecdsa = wire.Writer().u32(int(CKM.ECDSA)).data(None).bytes()
    for i, code in enumerate(codes):
        pair = ok(answers[code], 59, "uu")
        pair.u64()
        key = pair.u64()
        session = sessions[(i + 5) % len(sessions)]  # another session than the one that made it
        assert app.call(request(42, "uMu", u64s(session) + ecdsa + u64s(key))) == wire.reply_body(42, ""), i
        data = wire.Writer().byte_array(bytes(32)).u32(64).bytes()
        ok(app.call(request(43, "uayfy", u64s(session) + data)), 43, "ay")


def test_close_all_sessions_leaves_the_init_of_a_session_opened_meanwhile(agent3, keys):
    """C_CloseAllSessions, C_OpenSession and a C_SignInit on that new session sent together: the init (answered
    by the agent) belongs to a session the close did not end, so the C_Sign that follows signs."""
    ecdsa = wire.Writer().u32(int(CKM.ECDSA)).data(None).bytes()
    data = wire.Writer().byte_array(bytes(32)).u32(64).bytes()
    app = initialized(agent3, 0)
    first = _session(app)
    assert _login(app, first, 1, PIN) == wire.reply_body(18, "")
    key = private_key(app, first, b"app-ec")
    assert app.call(request(42, "uMu", u64s(first) + ecdsa + u64s(key))) == wire.reply_body(42, "")
    ok(app.call(request(43, "uayfy", u64s(first) + data)), 43, "ay")  # the init is proven now
    opened = [_session(app) for _ in range(4)]
    fresh = max(first, *opened) + 1  # the agent numbers an application's sessions in order
    close_all, open_one, init = app.code + 1, app.code + 2, app.code + 3
    app.code = init
    app.sock.sendall(wire.encode_frame(close_all, request(12, "u", u64s(1)), b"client")
                     + wire.encode_frame(open_one, request(10, "uu", u64s(1, 6)), b"client")
                     + wire.encode_frame(init, request(42, "uMu", u64s(fresh) + ecdsa + u64s(key)), b"client"))
    answers: dict[int, bytes] = {}
    while len(answers) < 3:
        answers.update((code, body) for code, _, body in app.frames.feed(app.sock.recv(65536)))
    assert answers[close_all] == wire.reply_body(12, "")
    assert ok(answers[open_one], 10, "u").u64() == fresh
    assert answers[init] == wire.reply_body(42, "")
    ok(app.call(request(43, "uayfy", u64s(fresh) + data)), 43, "ay")


def test_a_new_application_finds_the_cluster_when_the_configured_hsm_is_down(cluster3, keys, tmp_path):
    """The agent starts new applications from every member its running applications discovered, not only the
    configured HSM."""
    first = cluster3.nodes[0]
    with serving_agent(cluster3.config([first]), tmp_path) as socket_path:
        running = initialized(socket_path, 0)
        assert ok(running.call(request(6, "u", u64s(1))), 6, "ssssuuuuuuuuuuuvvs")  # connected and discovered
        kill(first)
        try:
            late = initialized(socket_path, 0)
            info = ok(late.call(request(6, "u", u64s(1))), 6, "ssssuuuuuuuuuuuvvs")
            assert info.data().rstrip() == TOKEN.encode()
            session = _session(late)
            assert _login(late, session, 1, PIN) == wire.reply_body(18, "")
            assert len(_private_keys(late, session)) >= 2
        finally:
            cluster3.restart(first)
