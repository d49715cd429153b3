"""PKCS#11 applications reach a real node through p11-kit's client module and the agent."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import strongroom.client as sdk
from strongroom.pkcs11 import wire
from strongroom.vocab import CKA, CKD, CKF, CKM, CKR

from ..cluster.nodes import init_node, start_node
from ..fixtures.cluster import ADMIN_PW, ALICE_PW, BOB_PW, client_config
from .conftest import P11_KIT_CLIENT, P256, serving_agent
from .raw import RawApplication, initialized, ok, request, u64s


def test_python_pkcs11_signs_with_a_cluster_key_through_p11_kit(agent, alice):
    public, _ = alice.generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256, CKA.VERIFY: True},
                                        {CKA.SIGN: True, CKA.SENSITIVE: True}, label="p11-ec")
    verifier = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public[CKA.EC_POINT][2:])
    env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}", "PIN": f"alice:{ALICE_PW}"}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("p11_script.py")), str(P11_KIT_CLIENT),
                           "p11-ec"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["label"] == "cluster-test0000001"
    assert out["flags"] & int(CKF.LOGIN_REQUIRED | CKF.TOKEN_INITIALIZED | CKF.USER_PIN_INITIALIZED | CKF.RNG)
    assert int(CKM.ECDSA) in out["mechanisms"] and int(CKM.RSA_PKCS_PSS) in out["mechanisms"]
    assert out["random"] == 32  # python-pkcs11 asks in bits
    assert out["sensitive"] == "refused"
    signature = bytes.fromhex(out["signature"])
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    verifier.verify(utils.encode_dss_signature(r, s), bytes.fromhex(out["digest"]),
                    ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_digests_imports_secret_keys_and_attribute_changes_through_p11_kit(agent, alice):
    env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}", "PIN": f"alice:{ALICE_PW}"}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("p11_more.py")), str(P11_KIT_CLIENT)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = hashlib.sha256(b"abc").hexdigest()
    assert out["sha256"] == out["sha256_parts"] == expected
    ecb = Cipher(algorithms.AES(bytes(range(32))), modes.ECB()).encryptor()
    assert bytes.fromhex(out["ecb"]) == ecb.update(b"\x00" * 32) + ecb.finalize()
    assert out["round_trip"] is True
    assert out["label"] == "p11-aes-renamed"
    assert out["value"] == "refused"  # key material never leaves the HSM in clear
    assert out["seed"] == "RandomSeedNotSupported"
    assert len(alice.find(label="p11-aes-renamed")) == 1


def test_bad_input_gets_pkcs11_errors_and_the_agent_keeps_serving(agent):
    newer = RawApplication(agent, version=5)
    assert newer.version == 2  # min(offer, 2)
    app = RawApplication(agent)
    assert app.version == 0
    init = request(1, "ayyay", wire.Writer().byte_array(b"PRIVATE-GNOME-KEYRING-PKCS11-PROTOCOL-V-1")
                    .byte(0).byte_array(b"\x00").bytes())
    assert app.call(init) == wire.reply_body(1, "")
    assert app.call(request(200, "u", b"\x00" * 8)) == wire.error_body(int(CKR.FUNCTION_NOT_SUPPORTED))
    assert app.call(b"\x00\x00") == wire.error_body(int(CKR.ARGUMENTS_BAD))  # not even a call id
    assert app.call(request(3, "", b"extra")) == wire.error_body(int(CKR.ARGUMENTS_BAD))  # trailing bytes
    session = wire.Reader(app.call(request(10, "uu", wire.Writer().u64(1).u64(6).bytes()))[9:]).u64()
    wrong = wire.Writer().u64(session).u64(1).byte_array(b"alice:wrong-password").bytes()
    assert app.call(request(18, "uuay", wrong)) == wire.error_body(int(CKR.PIN_INCORRECT))
    bare = wire.Writer().u64(session).u64(1).byte_array(b"1234").bytes()  # a PIN as other tokens take it
    assert app.call(request(18, "uuay", bare)) == wire.error_body(int(CKR.PIN_INCORRECT))
    sign_first = wire.Writer().u64(session).byte_array(b"data").u32(64).bytes()
    assert app.call(request(43, "uayfy", sign_first)) == wire.error_body(int(CKR.OPERATION_NOT_INITIALIZED))
    assert app.call(request(4, "yfu", b"\x01\x00\x00\x00\x00")) == wire.reply_body(
        4, "au", wire.Writer().ulong_array(None, 1))  # a size query answers the count
    # a frame over the size limit is answered and skipped, the next one served
    app.code += 1
    big = wire.encode_frame(app.code, request(3, "") + b"\x00" * (wire.MAX_FRAME_BYTES + 1), b"client")
    app.sock.sendall(big)
    answers = []
    while not answers:
        answers = app.frames.feed(app.sock.recv(65536))
    assert answers == [(app.code, b"", wire.error_body(int(CKR.ARGUMENTS_BAD)))]
    assert app.call(request(3, "uuuu")) == wire.error_body(int(CKR.ARGUMENTS_BAD))  # not C_GetInfo's signature
    huge_pin = wire.Writer().u64(session).u64(1).byte_array(b"alice:" + b"p" * 100_000).bytes()
    assert app.call(request(18, "uuay", huge_pin)) == wire.error_body(int(CKR.PIN_LEN_RANGE))
    too_many = wire.Writer().u32(100_000).bytes() + b"\x00" * 500_000
    assert app.call(request(26, "uaA", wire.Writer().u64(session).bytes() + too_many)) \
        == wire.error_body(int(CKR.ARGUMENTS_BAD))
    truncated = RawApplication(agent)
    truncated.sock.sendall(wire.encode_frame(0x11, request(3, ""))[:7])
    truncated.sock.close()
    assert app.call(request(3, "")).startswith(wire.Writer().u32(3).data(b"vsusv").bytes())


def test_pipelined_requests_are_answered_under_their_codes_and_leaving_mid_request_harms_no_one(agent):
    """Requests run without a task of their own; those waiting for the HSM when their application leaves are
    ended, and neither that nor an application that never reads its answers stops the agent serving."""
    token_info = request(6, "u", u64s(1))
    app = initialized(agent, 0)
    codes = list(range(0x1000, 0x1000 + 200))
    app.sock.sendall(b"".join(wire.encode_frame(code, token_info, b"client") for code in codes))
    answers: dict[int, bytes] = {}
    while len(answers) < len(codes):
        for code, _, reply in app.frames.feed(app.sock.recv(65536)):
            assert code not in answers
            answers[code] = reply
    assert sorted(answers) == codes
    head = wire.reply_body(6, "ssssuuuuuuuuuuuvvs")
    assert all(reply.startswith(head) for reply in answers.values())
    leaving = initialized(agent, 0)
    leaving.sock.sendall(b"".join(wire.encode_frame(code, token_info, b"client") for code in range(32, 96)))
    leaving.sock.close()  # gone while its requests wait for the HSM
    deaf = initialized(agent, 0)
    deaf.sock.setblocking(False)
    frame = wire.encode_frame(0x30, token_info, b"client")
    sent = 0
    try:
        while sent < 20_000:  # until the agent stops taking its requests (its answers are never read)
            deaf.sock.send(frame)
            sent += 1
    except BlockingIOError:
        pass
    app.code = 0x2000
    assert app.call(token_info).startswith(head)
    session = ok(app.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()
    assert ok(app.call(request(13, "u", u64s(session))), 13, "uuuu").u64() == 1  # the slot id
    deaf.sock.close()
    assert initialized(agent, 2).call(token_info).startswith(head)


def test_an_application_leaving_while_its_hsm_hangs_and_dies_leaves_nothing(pki, tmp_path):
    """Requests waiting for an HSM that hangs (SIGSTOP) when their application leaves, then the HSM killed:
    what they waited for is cancelled with them, so nothing is reported as never retrieved (the agent's
    stderr is checked when it stops), and a new application gets CKR_DEVICE_ERROR with no HSM left."""
    data = tmp_path / "hsm"
    init_node(data)
    proc = start_node(data, pki["server"], client_ca=pki["ca"])
    config = client_config(pki, [proc.endpoint])
    token_info = request(6, "u", u64s(1))
    try:
        (tmp_path / "agent").mkdir()
        with serving_agent(config, tmp_path / "agent") as socket_path:
            busy = initialized(socket_path, 0)
            sessions = [ok(busy.call(request(10, "uu", u64s(1, 6))), 10, "u").u64() for _ in range(3)]
            pipelined = b"".join(wire.encode_frame(0x500 + i, request(11 if i < 3 else 6, "u", u64s(
                sessions[i] if i < 3 else 1)), b"client") for i in range(40))
            busy.sock.sendall(pipelined)  # three sessions closing at once among token-info calls
            answers: dict[int, bytes] = {}
            while len(answers) < 40:
                answers.update((code, reply) for code, _, reply in busy.frames.feed(busy.sock.recv(65536)))
            assert all(answers[0x500 + i] == wire.reply_body(11, "") for i in range(3)), answers
            os.kill(proc.process.pid, signal.SIGSTOP)
            leaving = initialized(socket_path, 0)
            frames = (wire.encode_frame(code, token_info, b"client") for code in range(32, 62))
            leaving.sock.sendall(b"".join(frames))
            time.sleep(0.5)  # the agent has sent them on; the HSM does not answer
            leaving.sock.close()
            time.sleep(0.5)
            proc.process.kill()
            os.kill(proc.process.pid, signal.SIGCONT)
            proc.process.wait(10)
            time.sleep(0.5)  # the agent sees the connection end
            assert initialized(socket_path, 0).call(token_info) == wire.error_body(int(CKR.DEVICE_ERROR))
    finally:
        proc.stop()


def test_applications_that_never_read_hold_a_bounded_share_of_the_agent(agent):
    """Four applications each pipeline 300 C_GenerateRandom of 1 MiB and never read: the agent holds at most
    its per-application allowance of them (16 MiB and 64 requests), not every answer, and keeps serving."""
    probe = initialized(agent, 0)
    pid = struct.unpack("3i", probe.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]

    def rss_mib() -> float:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024

    before = rss_mib()
    deaf = []
    for _ in range(4):
        app = initialized(agent, 0)
        session = ok(app.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()
        one_mib = (1 << 20).to_bytes(4, "big")
        frame = wire.encode_frame(0x77, request(64, "ufy", u64s(session) + one_mib), b"client")
        app.sock.sendall(frame * 300)  # small requests: they all fit in the socket
        deaf.append(app)
    time.sleep(4)
    grown = rss_mib() - before
    assert probe.call(request(6, "u", u64s(1))).startswith(wire.reply_body(6, "ssssuuuuuuuuuuuvvs"))
    for app in deaf:
        app.sock.close()
    assert grown < 200, f"the agent grew by {grown:.0f} MiB"  # without the allowance: ~540 MiB here


def test_pkcs11_tool_lists_generates_signs_and_passes_its_self_test(agent, tmp_path):
    env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}"}

    def tool(*args: str) -> str:
        done = subprocess.run(["pkcs11-tool", "--module", str(P11_KIT_CLIENT), *args], capture_output=True,
                              text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    assert "token label        : cluster-test0000001" in tool("-L")
    assert "Strongroom PKCS#11 agent" in tool("-I")
    mechanisms = tool("-M")
    assert "ECDSA-KEY-PAIR-GEN" in mechanisms and "RSA-PKCS-PSS" in mechanisms
    pin = ("-l", "-p", f"alice:{ALICE_PW}")
    tool(*pin, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "tool-ec", "--id", "7e")
    listing = tool(*pin, "-O")
    assert "tool-ec" in listing and "Private Key Object; EC" in listing
    message = tmp_path / "message"
    message.write_bytes(b"signed through pkcs11-tool")
    digest = tmp_path / "digest"
    digest.write_bytes(hashlib.sha256(message.read_bytes()).digest())
    signature = tmp_path / "signature"
    tool(*pin, "--sign", "-m", "ECDSA", "--id", "7e", "-i", str(digest), "-o", str(signature))
    assert "Signature is valid" in tool(*pin, "--verify", "-m", "ECDSA", "--id", "7e", "-i", str(digest),
                                        "--signature-file", str(signature))
    public = tmp_path / "public.der"
    tool("--read-object", "--type", "pubkey", "--id", "7e", "-o", str(public))
    done = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(public), "-keyform", "DER",
                           "-signature", str(_der_signature(signature.read_bytes(), tmp_path)), str(message)],
                          capture_output=True, text=True, timeout=60)
    assert "Verified OK" in done.stdout, done.stdout + done.stderr
    assert len(subprocess.run(["pkcs11-tool", "--module", str(P11_KIT_CLIENT), "--generate-random", "24"],
                              capture_output=True, timeout=60, env=env).stdout) == 24
    assert "No errors" in tool(*pin, "--test")


def _der_signature(raw: bytes, folder: Path) -> Path:
    half = len(raw) // 2
    path = folder / "signature.der"
    path.write_bytes(utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")))
    return path


def test_pkcs11_tool_rsa_pkcs_and_pss_signatures_verify_with_openssl(agent, tmp_path):
    env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}"}
    pin = ("-l", "-p", f"alice:{ALICE_PW}")

    def tool(*args: str) -> str:
        done = subprocess.run(["pkcs11-tool", "--module", str(P11_KIT_CLIENT), *pin, *args], capture_output=True,
                              text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    tool("--keypairgen", "--key-type", "rsa:2048", "--label", "tool-rsa", "--id", "5a")
    message = tmp_path / "message"
    message.write_bytes(b"RSA through pkcs11-tool")
    public = tmp_path / "public.der"
    tool("--read-object", "--type", "pubkey", "--id", "5a", "-o", str(public))
    for mechanism, openssl_options in (("SHA256-RSA-PKCS", []),
                                       ("RSA-PKCS-PSS", ["-sigopt", "rsa_padding_mode:pss",
                                                         "-sigopt", "rsa_pss_saltlen:32"])):
        signature = tmp_path / f"{mechanism}.sig"
        data = message
        extra = []
        if mechanism == "RSA-PKCS-PSS":  # the raw PSS mechanism signs a digest
            data = tmp_path / "digest"
            data.write_bytes(hashlib.sha256(message.read_bytes()).digest())
            extra = ["--hash-algorithm", "SHA256", "--mgf", "MGF1-SHA256", "--salt-len", "32"]
        tool("--sign", "-m", mechanism, *extra, "--id", "5a", "-i", str(data), "-o", str(signature))
        done = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(public), "-keyform", "DER",
                               *openssl_options, "-signature", str(signature), str(message)],
                              capture_output=True, text=True, timeout=60)
        assert "Verified OK" in done.stdout, (mechanism, done.stdout + done.stderr)


@pytest.mark.parametrize("version", [1, 2])
def test_newer_clients_login_user_cancel_gcm_cbc_and_derive(agent, alice, node, version):
    key_bytes = bytes(range(32))
    aes = alice.create_object({CKA.CLASS: 4, CKA.KEY_TYPE: 0x1F, CKA.VALUE: key_bytes, CKA.ENCRYPT: True,
                               CKA.TOKEN: True, CKA.DECRYPT: True, CKA.LABEL: f"raw-aes-v{version}"})
    peer_private = ec.generate_private_key(ec.SECP256R1())
    peer_point = peer_private.public_key().public_bytes(serialization.Encoding.X962,
                                                       serialization.PublicFormat.UncompressedPoint)
    ec_public, ec_private = alice.generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256},
                                            {CKA.DERIVE: True}, label=f"raw-ecdh-v{version}")
    app = initialized(agent, version)
    session = ok(app.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()
    # C_LoginUser (PKCS#11 3.0): the user name apart from the password
    login = u64s(session, 1) + wire.Writer().byte(1).data(ALICE_PW.encode()).byte(1).data(b"alice").bytes()
    assert app.call(request(66, "uuayay", login)) == wire.reply_body(66, "")

    def mech(kind: int, fields: bytes) -> bytes:
        return wire.Writer().u32(kind).bytes() + (b"\x01" if version >= 2 else b"") + fields

    iv = bytes(range(12))
    gcm = mech(int(CKM.AES_GCM), wire.Writer().data(iv).u64(96).data(b"header").u64(128).bytes())
    assert app.call(request(29, "uMu", u64s(session) + gcm + u64s(aes.handle))) == wire.reply_body(29, "")
    # a NULL mechanism ends the operation (PKCS#11 3.0 §5.8), so a second init is accepted
    assert app.call(request(29, "uMu", u64s(session) + b"\xff\xff\xff\xff" + u64s(0))) == wire.reply_body(29, "")
    assert app.call(request(29, "uMu", u64s(session) + gcm + u64s(aes.handle))) == wire.reply_body(29, "")
    sealed = ok(app.call(request(30, "uayfy", u64s(session) + wire.Writer().byte_array(b"plain text")
                                   .u32(256).bytes())), 30, "ay")
    sealed.byte()
    assert sealed.data() == AESGCM(key_bytes).encrypt(iv, b"plain text", b"header")
    cbc_iv = bytes(16)
    cbc = mech(int(CKM.AES_CBC_PAD), wire.Writer().data(cbc_iv).bytes())
    assert app.call(request(29, "uMu", u64s(session) + cbc + u64s(aes.handle))) == wire.reply_body(29, "")
    # C_SessionCancel ends it too
    assert app.call(request(67, "uu", u64s(session, int(CKF.ENCRYPT)))) == wire.reply_body(67, "")
    assert app.call(request(30, "uayfy", u64s(session) + wire.Writer().byte_array(b"x").u32(64).bytes())) \
        == wire.error_body(int(CKR.OPERATION_NOT_INITIALIZED))
    assert app.call(request(29, "uMu", u64s(session) + cbc + u64s(aes.handle))) == wire.reply_body(29, "")
    padded = ok(app.call(request(30, "uayfy", u64s(session) + wire.Writer().byte_array(b"sixteen bytes!!")
                                   .u32(64).bytes())), 30, "ay")
    padded.byte()
    decryptor = Cipher(algorithms.AES(key_bytes), modes.CBC(cbc_iv)).decryptor()
    assert decryptor.update(padded.data()) + decryptor.finalize() == b"sixteen bytes!!\x01"
    # ECDH: version 2 clients derive with C_DeriveKey2, whose answer carries the updated parameter
    ecdh = mech(int(CKM.ECDH1_DERIVE), wire.Writer().u64(int(CKD.NULL)).data(None).data(peer_point).bytes())
    template = (wire.Writer().u32(6).attribute(0x0, 4).attribute(0x100, 0x1F).attribute(0x161, 32)
                .attribute(0x1, False).attribute(0x104, True).attribute(0x162, False).bytes())
    call_id, signature = (89, "uPu") if version >= 2 else (62, "u")
    derived = ok(app.call(request(call_id, "uMuaA", u64s(session) + ecdh + u64s(ec_private.handle) + template)),
                  call_id, signature)
    if version >= 2:
        assert derived.u64() == 0 and derived.byte() == 0
    secret = derived.u64()
    ecb = wire.Writer().u32(int(CKM.AES_ECB)).bytes() + (b"" if version >= 2 else b"\xff\xff\xff\xff")
    assert app.call(request(29, "uMu", u64s(session) + ecb + u64s(secret))) == wire.reply_body(29, "")
    block = ok(app.call(request(30, "uayfy", u64s(session) + wire.Writer().byte_array(bytes(16)).u32(16)
                                  .bytes())), 30, "ay")
    block.byte()
    shared = peer_private.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), ec_public[CKA.EC_POINT][2:]))
    expected = Cipher(algorithms.AES(shared), modes.ECB()).encryptor()
    assert block.data() == expected.update(bytes(16)) + expected.finalize()  # CKD_NULL: the key is the shared x
    # the login's audit event names the application process (SO_PEERCRED), vouched for by the agent's certificate
    _, config = node
    with sdk.connect(config) as cluster:
        admin = cluster.login("admin", ADMIN_PW, role="admin")
        logins = [e for e in cluster._run("export_audit", 0) if e["event"] == "login" and e["actor"] == "alice"]
        admin.close()
    peer = logins[-1]["detail"]["peer"]
    assert peer["client"] == f"pid={os.getpid()} uid={os.getuid()} gid={os.getgid()}"
    assert "OU=strongroom-agent" in peer["subject"] and len(peer["fingerprint"]) == 64


def test_python_pkcs11_oaep_hmac_find_and_8_threads_of_500_signatures(agent, alice):
    rsa_public, _ = alice.generate_key_pair(CKM.RSA_PKCS_KEY_PAIR_GEN,
                                            {CKA.MODULUS_BITS: 2048, CKA.ENCRYPT: True, CKA.ID: b"\x01\x02"},
                                            {CKA.DECRYPT: True, CKA.ID: b"\x01\x02"}, label="threads-rsa")
    ec_public, _ = alice.generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256, CKA.VERIFY: True},
                                           {CKA.SIGN: True}, label="threads-ec")
    mac_value = bytes(range(32))
    alice.create_object({CKA.CLASS: 4, CKA.KEY_TYPE: 0x10, CKA.VALUE: mac_value, CKA.SIGN: True, CKA.TOKEN: True,
                         CKA.LABEL: "threads-hmac"})
    public = rsa.RSAPublicNumbers(int.from_bytes(rsa_public[CKA.PUBLIC_EXPONENT], "big"),
                                  int.from_bytes(rsa_public[CKA.MODULUS], "big")).public_key()
    sealed = public.encrypt(b"OAEP through p11-kit", asym_padding.OAEP(asym_padding.MGF1(hashes.SHA256()),
                                                                       hashes.SHA256(), None))
    env = {**os.environ, "P11_KIT_SERVER_ADDRESS": f"unix:path={agent}", "PIN": f"alice:{ALICE_PW}"}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("p11_threads.py")), str(P11_KIT_CLIENT),
                           sealed.hex()], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["oaep"] == "OAEP through p11-kit"
    assert out["hmac"] == hmac.new(mac_value, b"authenticated", "sha256").hexdigest()
    assert sorted(out["by_id"]) == ["threads-rsa", "threads-rsa"]  # the public and the private key
    assert out["exponent"] == "refused"
    assert out["failures"] == []
    verifier = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ec_public[CKA.EC_POINT][2:])
    assert sorted(out["signatures"]) == [str(n) for n in range(1, 9)]
    for signatures in out["signatures"].values():
        assert len(signatures) == 500
        for i, signature in enumerate(signatures):
            raw = bytes.fromhex(signature)
            verifier.verify(utils.encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                                       int.from_bytes(raw[32:], "big")),
                            i.to_bytes(32, "big"), ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_repeated_inits_answered_by_the_agent_keep_every_pkcs11_rule(agent, alice):
    """An init the HSM accepted once is answered by the agent afterwards; size queries, short buffers,
    multi-part calls, a second init, bad sessions, another login and a destroyed key behave as without it."""
    public, private = alice.generate_key_pair(CKM.EC_KEY_PAIR_GEN, {CKA.EC_PARAMS: P256, CKA.VERIFY: True},
                                              {CKA.SIGN: True}, label="deferred-ec")
    verifier = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public[CKA.EC_POINT][2:])
    app = initialized(agent, 0)
    session = ok(app.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()
    login = u64s(session, 1) + wire.Writer().byte(1).data(f"alice:{ALICE_PW}".encode()).bytes()
    assert app.call(request(18, "uuay", login)) == wire.reply_body(18, "")
    ecdsa = wire.Writer().u32(int(CKM.ECDSA)).data(None).bytes()
    init = request(42, "uMu", u64s(session) + ecdsa + u64s(private.handle))
    digest = bytes(range(32))

    def sign(capacity: int) -> bytes:
        return app.call(request(43, "uayfy", u64s(session) + wire.Writer().byte_array(digest).u32(capacity).bytes()))

    def check(reply: bytes) -> None:
        out = ok(reply, 43, "ay")
        assert out.byte() == 1
        raw = out.data()
        verifier.verify(utils.encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
                        digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))

    for _ in range(2):  # the first init goes to the HSM, the second is answered by the agent
        assert app.call(init) == wire.reply_body(42, "")
        assert app.call(init) == wire.error_body(int(CKR.OPERATION_ACTIVE))
        assert sign(0) == wire.reply_body(43, "ay", wire.Writer().byte_array(None, 64))  # size query
        assert sign(8) == wire.reply_body(43, "ay", wire.Writer().byte_array(None, 64))  # too small
        check(sign(64))
        assert sign(64) == wire.error_body(int(CKR.OPERATION_NOT_INITIALIZED))
    # multi-part after an init the agent answered
    assert app.call(init) == wire.reply_body(42, "")
    assert app.call(request(44, "uay", u64s(session) + wire.Writer().byte_array(digest[:10]).bytes())) \
        == wire.reply_body(44, "")
    assert app.call(request(44, "uay", u64s(session) + wire.Writer().byte_array(digest[10:]).bytes())) \
        == wire.reply_body(44, "")
    final = ok(app.call(request(45, "ufy", u64s(session) + b"\x00\x00\x00\x40")), 45, "ay")
    assert final.byte() == 1 and len(final.data()) == 64
    # an unknown session is refused at the init, not later
    assert app.call(request(42, "uMu", u64s(session + 1000) + ecdsa + u64s(private.handle))) \
        == wire.error_body(int(CKR.SESSION_HANDLE_INVALID))
    # another user: the init goes to the HSM again, which does not show bob alice's key
    assert app.call(request(19, "u", u64s(session))) == wire.reply_body(19, "")
    bob = u64s(session, 1) + wire.Writer().byte(1).data(f"bob:{BOB_PW}".encode()).bytes()
    assert app.call(request(18, "uuay", bob)) == wire.reply_body(18, "")
    assert app.call(init) == wire.error_body(int(CKR.KEY_HANDLE_INVALID))
    assert app.call(request(19, "u", u64s(session))) == wire.reply_body(19, "")
    assert app.call(request(18, "uuay", login)) == wire.reply_body(18, "")
    assert app.call(init) == wire.reply_body(42, "")
    check(sign(64))
    assert app.call(init) == wire.reply_body(42, "")
    # the NULL mechanism ends an operation the agent holds too
    assert app.call(request(42, "uMu", u64s(session) + b"\xff\xff\xff\xff" + u64s(0))) == wire.reply_body(42, "")
    assert sign(64) == wire.error_body(int(CKR.OPERATION_NOT_INITIALIZED))
    assert app.call(init) == wire.reply_body(42, "")
    check(sign(64))
    # a key the application destroys is forgotten
    assert app.call(request(22, "uu", u64s(session, private.handle))) == wire.reply_body(22, "")
    assert app.call(init) == wire.error_body(int(CKR.KEY_HANDLE_INVALID))


def test_a_module_file_lets_p11_kit_aware_applications_find_the_token_without_environment(agent, tmp_path):
    registry = Path("/etc/pkcs11/modules")
    made_registry = not registry.exists()
    try:
        registry.mkdir(parents=True, exist_ok=True)
        module_file = registry / f"strongroom-test-{os.getpid()}.module"
        module_file.write_text(f"remote: unix:path={agent}\n")
    except PermissionError:
        pytest.skip("the system's p11-kit module registry is not writable here")
    env = {k: v for k, v in os.environ.items() if k != "P11_KIT_SERVER_ADDRESS"}
    try:
        listed = subprocess.run(["p11-kit", "list-modules"], capture_output=True, text=True, timeout=60, env=env)
        assert module_file.stem in listed.stdout and "cluster-test0000001" in listed.stdout, listed.stdout
        tokens = subprocess.run(["p11tool", "--list-tokens"], capture_output=True, text=True, timeout=60, env=env)
        assert "token=cluster-test0000001" in tokens.stdout, tokens.stdout + tokens.stderr
        proxy = next(iter(sorted(Path("/usr/lib").glob("*/p11-kit-proxy.so"))))
        slots = subprocess.run(["pkcs11-tool", "--module", str(proxy), "-L"], capture_output=True, text=True,
                               timeout=60, env=env)
        assert "cluster-test0000001" in slots.stdout, slots.stdout + slots.stderr
    finally:
        module_file.unlink()
        if made_registry:
            registry.rmdir()


def test_an_agent_that_cannot_make_its_socket_says_why_and_exits(pki, tmp_path):
    """A socket in a folder that does not exist: one error line and exit 1, not an agent that serves nothing."""
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps(client_config(pki, ["127.0.0.1:9"])))
    done = subprocess.run([sys.executable, "-m", "strongroom", "client", "--config", str(config), "--socket",
                           str(tmp_path / "missing" / "p11.sock")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot serve on" in done.stderr and "No such file or directory" in done.stderr
    assert done.stdout == ""


def test_a_null_pin_is_arguments_bad_and_an_empty_one_a_wrong_pin(agent):
    """C_Login and C_LoginUser with a NULL PIN: the token has no protected authentication path, so
    CKR_ARGUMENTS_BAD (PKCS#11 3.0 §5.6), as SoftHSM2 answers; an empty PIN is a PIN, and wrong."""
    app = initialized(agent, 2)
    session = ok(app.call(request(10, "uu", u64s(1, 6))), 10, "u").u64()
    null_pin = wire.Writer().byte(0).u32(0).bytes()
    assert app.call(request(18, "uuay", u64s(session, 1) + null_pin)) == wire.error_body(int(CKR.ARGUMENTS_BAD))
    login_user = u64s(session, 1) + null_pin + wire.Writer().byte(1).data(b"alice").bytes()
    assert app.call(request(66, "uuayay", login_user)) == wire.error_body(int(CKR.ARGUMENTS_BAD))
    empty = wire.Writer().byte(1).data(b"").bytes()
    assert app.call(request(18, "uuay", u64s(session, 1) + empty)) == wire.error_body(int(CKR.PIN_INCORRECT))
    right = wire.Writer().byte(1).data(f"alice:{ALICE_PW}".encode()).bytes()
    assert app.call(request(18, "uuay", u64s(session, 1) + right)) == wire.reply_body(18, "")
