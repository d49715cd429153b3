"""``strongroom-cli`` as a script uses it, against a real node: activation, users, keys, signatures checked with
``cryptography``, and the error envelope for the mistakes people make."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .runner import ADMIN_PW, ALICE_PW, clean_env, cli
from .runner import initial as _initial


def test_a_scripted_session_from_activation_to_verified_signatures(cluster_file, tmp_path):
    [hsm] = cli(cluster_file, "cluster", "hsm-info")["hsms"]
    assert hsm["state"] == "operational"
    admin = f"admin:{ADMIN_PW}"
    assert cli(cluster_file, "cluster", "activate", "--password", ADMIN_PW, pin=f"admin:{_initial(cluster_file)}",
               role="admin") == "Cluster activation successful"
    for name in ("alice", "bob"):
        assert cli(cluster_file, "user", "create", "--username", name, "--role", "crypto-user", "--password",
                   f"{name}-pass-1", pin=admin, role="admin") == {"username": name, "role": "crypto-user"}
    users = {u["username"]: u for u in cli(cluster_file, "user", "list", pin=admin, role="admin")["users"]}
    assert users["alice"]["role"] == "crypto-user" and users["alice"]["locked"] == "false"
    alice = f"alice:{ALICE_PW}"
    rsa_pair = cli(cluster_file, "key", "generate-asymmetric-pair", "rsa", "--modulus-size-bits", "2048",
                   "--public-label", "rsa-pub", "--private-label", "rsa-priv", "--public-attributes", "verify=true",
                   "--private-attributes", "sign=true", pin=alice)
    assert rsa_pair["private_key"]["attributes"]["class"] == "private-key"
    assert rsa_pair["public_key"]["attributes"]["modulus-size-bits"] == 2048
    ec_pair = cli(cluster_file, "key", "generate-asymmetric-pair", "ec", "--curve", "prime256v1", "--public-label",
                  "ec-pub", "--private-label", "ec-priv", "--public-attributes", "verify=true",
                  "--private-attributes", "sign=true", pin=alice)
    aes = cli(cluster_file, "key", "generate-symmetric", "aes", "--label", "aes-1", "--key-length-bytes", "32",
              "--attributes", "encrypt=true", "--attributes", "decrypt=true", pin=alice)["key"]
    assert aes["attributes"]["key-type"] == "aes" and aes["attributes"]["key-length-bytes"] == 32
    assert aes["attributes"]["encrypt"] is True
    listed = cli(cluster_file, "key", "list", "--filter", "attr.class=private-key", pin=alice)
    assert listed["total_key_count"] == 2 and {k["attributes"]["label"] for k in listed["matched_keys"]} == {
        "rsa-priv", "ec-priv"}
    verbose = cli(cluster_file, "key", "list", "--filter", "attr.label=rsa-pub", "-v", pin=alice)["matched_keys"][0]
    modulus = int(verbose["attributes"]["modulus"], 16)
    rsa_public = rsa.RSAPublicNumbers(65537, modulus).public_key()
    point = bytes.fromhex(ec_pair["public_key"]["attributes"]["ec-point"][2:])[2:]
    ec_public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    cli(cluster_file, "key", "generate-asymmetric-pair", "ec", "--curve", "ed25519", "--public-label", "ed-pub",
        "--private-label", "ed-priv", "--public-attributes", "verify=true", "--private-attributes", "sign=true",
        pin=alice)
    message = tmp_path / "message"
    message.write_bytes(b"a file signed by strongroom-cli")
    for kind, label, check, openssl in (
            ("rsa-pkcs", "rsa", lambda s: rsa_public.verify(s, message.read_bytes(), padding.PKCS1v15(),
                                                            hashes.SHA256()), ["dgst", "-sha256"]),
            ("rsa-pkcs-pss", "rsa", lambda s: rsa_public.verify(
                s, message.read_bytes(), padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256()),
             ["dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"]),
            ("ecdsa", "ec", lambda s: ec_public.verify(utils.encode_dss_signature(
                int.from_bytes(s[:32], "big"), int.from_bytes(s[32:], "big")), message.read_bytes(),
                ec.ECDSA(hashes.SHA256())), ["dgst", "-sha256"]),
            ("ed25519", "ed", None, ["pkeyutl", "-rawin"])):
        signed = cli(cluster_file, "crypto", "sign", kind, "--key-filter", f"attr.label={label}-priv",
                     "--hash-function", "sha256", "--data-path", str(message), pin=alice)
        signature = base64.b64decode(signed["signature"])
        if check is not None:
            check(signature)  # an independent implementation accepts it
        assert cli(cluster_file, "crypto", "verify", kind, "--key-filter", f"attr.label={label}-pub",
                   "--hash-function", "sha256", "--data-path", str(message), "--signature", signed["signature"],
                   pin=alice) == {"message": "Signature verified successfully"}
        pem, sig_file = tmp_path / f"{label}.pem", tmp_path / f"{kind}.sig"
        cli(cluster_file, "key", "generate-file", "--filter", f"attr.label={label}-pub", "--path", str(pem),
            pin=alice)
        if kind == "ecdsa":  # openssl reads ECDSA signatures as DER
            signature = utils.encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                                   int.from_bytes(signature[32:], "big"))
        sig_file.write_bytes(signature)
        verify = (["openssl", *openssl, "-verify", str(pem), "-signature", str(sig_file), str(message)]
                  if openssl[0] == "dgst" else
                  ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin", "-in", str(message),
                   "-sigfile", str(sig_file)])
        done = subprocess.run(verify, capture_output=True, text=True, timeout=60)
        assert "Verified" in done.stdout + done.stderr and done.returncode == 0, (kind, done.stdout, done.stderr)
    assert cli(cluster_file, "key", "delete", "--filter", f"key-reference={aes['key-reference']}",
               pin=alice) == {"message": "Key deleted successfully"}
    assert cli(cluster_file, "key", "list", "--filter", "attr.label=aes-1", pin=alice)["total_key_count"] == 0


@pytest.mark.parametrize(("args", "pin", "role", "says"), [
    (("key", "list"), "alice:wrong-password", "crypto-user", "CKR_PIN_INCORRECT"),
    (("key", "delete", "--filter", "attr.label=no-such-key"), "alice:" + ALICE_PW, "crypto-user", "matches 0 keys"),
    (("user", "create", "--username", "eve", "--role", "crypto-user", "--password", "eve-pass-11"),
     "alice:" + ALICE_PW, "crypto-user", "needs an admin login"),
    (("key", "list", "--filter", "label=x"), "alice:" + ALICE_PW, "crypto-user", "attr.<name>=<value>"),
    (("key", "list", "--filter", "attr.class=ghost"), "alice:" + ALICE_PW, "crypto-user", "attr.class is one of"),
    (("key", "list"), "no-colon", "crypto-user", "CLOUDHSM_PIN"),
    (("crypto", "sign", "ecdsa", "--key-filter", "attr.label=x", "--hash-function", "sha256", "--data-path",
      "/nonexistent/file"), "alice:" + ALICE_PW, "crypto-user", "/nonexistent/file: No such file or directory"),
])
def test_mistakes_get_error_code_1_and_a_message_that_says_what_to_fix(activated, args, pin, role, says):
    message = cli(activated, *args, pin=pin, role=role, ok=False)
    assert says in message and "Errno" not in message and "Error(" not in message, message


def test_sharing_attributes_files_wrapping_and_macs(activated, tmp_path):
    cluster_file = activated
    alice = f"alice:{ALICE_PW}"
    cli(cluster_file, "key", "generate-asymmetric-pair", "rsa", "--modulus-size-bits", "2048", "--public-label",
        "wrap-pub", "--private-label", "wrap-priv", "--public-attributes", "wrap=true", "--private-attributes",
        "unwrap=true", pin=alice)
    payload = cli(cluster_file, "key", "generate-symmetric", "aes", "--label", "to-wrap", "--key-length-bytes",
                  "32", "--attributes", "encrypt=true", pin=alice)["key"]
    wrapped = cli(cluster_file, "key", "wrap", "rsa-oaep", "--payload-filter", "attr.label=to-wrap",
                  "--wrapping-filter", "attr.label=wrap-pub", pin=alice)
    assert wrapped["payload_key_reference"] == payload["key-reference"]
    back = cli(cluster_file, "key", "unwrap", "rsa-oaep", "--filter", "attr.label=wrap-priv", "--key-type-class",
               "aes", "--label", "unwrapped", "--data", wrapped["wrapped_key_data"], "--attributes", "encrypt=true",
               pin=alice)["key"]
    # the same key material: the same AES check value (PKCS#11 3.0: the first 3 bytes of E(K, 0^128))
    assert back["attributes"]["check-value"] == payload["attributes"]["check-value"]
    assert cli(cluster_file, "key", "set-attribute", "--filter", "attr.label=unwrapped", "--name", "label",
               "--value", "renamed", pin=alice) == {"message": "Attribute set successfully"}
    assert cli(cluster_file, "key", "share", "--filter", "attr.label=renamed", "--username", "bob",
               pin=alice) == {"message": "Key shared successfully"}
    assert cli(cluster_file, "key", "list", "--filter", "attr.label=renamed", pin="bob:bob-pass-1")[
        "total_key_count"] == 1
    pem = tmp_path / "public.pem"
    cli(cluster_file, "key", "generate-file", "--filter", "attr.label=wrap-pub", "--path", str(pem), pin=alice)
    text = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pem), "-noout", "-text"], capture_output=True,
                          text=True, timeout=60)
    assert "Public-Key: (2048 bit)" in text.stdout, text.stdout + text.stderr
    imported = cli(cluster_file, "key", "import", "pem", "--path", str(pem), "--label", "imported",
                   "--key-type-class", "rsa-public", "--attributes", "verify=true", pin=alice)["key"]
    assert imported["attributes"]["class"] == "public-key" and imported["attributes"]["verify"] is True
    secret = cli(cluster_file, "key", "generate-symmetric", "generic-secret", "--label", "mac-key",
                 "--key-length-bytes", "32", pin=alice)["key"]
    data = base64.b64encode(b"authenticated").decode()
    tag = cli(cluster_file, "crypto", "mac", "generate", "hmac", "--key-filter", f"key-reference="
              f"{secret['key-reference']}", "--hash-function", "sha256", "--data", data, pin=alice)["mac"]
    assert len(base64.b64decode(tag)) == 32
    assert cli(cluster_file, "crypto", "mac", "verify", "hmac", "--key-filter", "attr.label=mac-key",
               "--hash-function", "sha256", "--data", data, "--mac", tag, pin=alice) == {
        "message": "MAC verified successfully"}
    assert "CKR_SIGNATURE_INVALID" in cli(cluster_file, "crypto", "mac", "verify", "hmac", "--key-filter",
                                          "attr.label=mac-key", "--hash-function", "sha256", "--data", data,
                                          "--mac", base64.b64encode(bytes(32)).decode(), pin=alice, ok=False)


def test_the_interactive_shell_logs_in_completes_with_tab_and_logs_out(activated, tmp_path):
    import pexpect

    env = clean_env(STRONGROOM_CLI_HISTORY=str(tmp_path / "history"), TERM="dumb")
    shell = pexpect.spawn(sys.executable, ["-m", "strongroom.cli.hsm", "--cluster", str(activated), "interactive"],
                          env=env, encoding="utf-8", timeout=60)
    try:
        shell.expect_exact("strongroom > ")
        shell.sendline(f"login --username alice --role crypto-user --password {ALICE_PW}")
        shell.expect_exact('"username": "alice"')
        shell.expect_exact("alice@strongroom > ")  # the login lasts
        shell.send("key li\t")  # Tab completes the sub-command
        shell.expect_exact("key list ")
        shell.sendline("--filter attr.class=private-key")
        shell.expect_exact('"matched_keys"')
        shell.expect_exact("alice@strongroom > ")
        shell.sendline("help crypto sign")
        shell.expect_exact("--key-filter")
        shell.sendline("logout")
        shell.expect_exact('"Logout successful"')
        shell.expect_exact("\nstrongroom > ")
        shell.sendline("key list")  # no login any more: error_code 1 and a hint
        shell.expect_exact('"error_code": 1')
        shell.expect_exact('"not logged in: login --username U --role admin|crypto-user"')
        shell.sendline("quit")
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    history = tmp_path / "history"
    assert "login --username alice --role crypto-user\n" in history.read_text()
    assert ALICE_PW not in history.read_text() and history.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("kind", ["aes-gcm", "aes-no-pad", "aes-pkcs5-pad", "rsa-aes"])
def test_every_wrapping_kind_brings_the_same_key_back(activated, kind):
    alice = f"alice:{ALICE_PW}"
    tag = kind.replace("-", "")
    if kind.startswith("aes"):
        cli(activated, "key", "generate-symmetric", "aes", "--label", f"kek-{tag}", "--key-length-bytes", "32",
            "--attributes", "wrap=true", "--attributes", "unwrap=true", pin=alice)
        wrapping, unwrapping = f"attr.label=kek-{tag}", f"attr.label=kek-{tag}"
    else:
        cli(activated, "key", "generate-asymmetric-pair", "rsa", "--modulus-size-bits", "2048", "--public-label",
            f"kek-{tag}-pub", "--private-label", f"kek-{tag}-priv", "--public-attributes", "wrap=true",
            "--private-attributes", "unwrap=true", pin=alice)
        wrapping, unwrapping = f"attr.label=kek-{tag}-pub", f"attr.label=kek-{tag}-priv"
    payload = cli(activated, "key", "generate-symmetric", "aes", "--label", f"payload-{tag}", "--key-length-bytes",
                  "16", "--attributes", "encrypt=true", pin=alice)["key"]
    wrapped = cli(activated, "key", "wrap", kind, "--payload-filter", f"attr.label=payload-{tag}",
                  "--wrapping-filter", wrapping, pin=alice)["wrapped_key_data"]
    back = cli(activated, "key", "unwrap", kind, "--filter", unwrapping, "--key-type-class", "aes", "--label",
               f"back-{tag}", "--data", wrapped, "--attributes", "encrypt=true", pin=alice)["key"]
    assert back["attributes"]["check-value"] == payload["attributes"]["check-value"]


def test_text_output_is_a_table_for_people(activated):
    done = subprocess.run([sys.executable, "-m", "strongroom.cli.hsm", "--cluster", str(activated), "--output",
                           "text", "user", "list"], capture_output=True, text=True, timeout=60,
                          env=clean_env(COLUMNS="200", CLOUDHSM_PIN=f"alice:{ALICE_PW}"))
    assert done.returncode == 0 and "username" in done.stdout and "alice" in done.stdout
    assert not done.stdout.lstrip().startswith("{")


@pytest.mark.parametrize(("args", "says"), [
    (("bogus",), "No such command"),
    (("key", "delete"), "Missing option '--filter'"),
    (("key", "generate-symmetric", "aes", "--label", "x", "--key-length-bytes", "17"), "'17' is not one of"),
    (("key", "list", "--filter", "attr.id=zz"), "hex bytes"),
    (("key", "list", "--filter", "attr.modulus-size-bits=abc"), "is a number"),
    (("key", "generate-asymmetric-pair", "rsa", "--modulus-size-bits", "2048", "--public-exponent", "-3",
      "--public-label", "p", "--private-label", "q"), "--public-exponent"),
    (("key", "set-attribute", "--filter", "attr.label=x", "--name", "label=y", "--value", "z"), "unknown attribute"),
    (("user", "delete", "--username", "bob", "--role", "admin"), "has the role crypto-user"),
    (("user", "create", "--username", "eve", "--role", "crypto-user"), "no terminal"),
])
def test_usage_mistakes_and_bad_values_are_envelopes_too(activated, args, says):
    pin, role = (f"admin:{ADMIN_PW}", "admin") if args[0] == "user" else (f"alice:{ALICE_PW}", "crypto-user")
    env = clean_env(STRONGROOM_CLUSTER=str(activated), CLOUDHSM_PIN=pin, CLOUDHSM_ROLE=role)
    done = subprocess.run([sys.executable, "-m", "strongroom.cli.hsm", *args], capture_output=True, text=True,
                          timeout=120, env=env, stdin=subprocess.DEVNULL)
    out = json.loads(done.stdout)
    assert done.returncode == 1 and out["error_code"] == 1 and says in out["data"], done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_ids_p521_keys_own_passwords_and_a_dead_hsm(activated, tmp_path):
    alice = f"alice:{ALICE_PW}"
    pair = cli(activated, "key", "generate-asymmetric-pair", "ec", "--curve", "secp521r1", "--public-label",
               "p521-pub", "--private-label", "p521-priv", "--public-attributes", "id=0x0a0b", pin=alice)
    assert pair["public_key"]["attributes"]["id"] == "0x0a0b"
    assert cli(activated, "key", "list", "--filter", "attr.id=0x0a0b", pin=alice)["total_key_count"] == 1
    pem = tmp_path / "p521.pem"
    cli(activated, "key", "generate-file", "--filter", "attr.label=p521-pub", "--path", str(pem), pin=alice)
    again = cli(activated, "key", "import", "pem", "--path", str(pem), "--label", "p521-again", "--key-type-class",
                "ec-public", pin=alice)["key"]
    assert again["attributes"]["ec-point"] == pair["public_key"]["attributes"]["ec-point"]
    cli(activated, "user", "change-password", "--username", "bob", "--role", "crypto-user", "--password",
        "bob-pass-2", pin="bob:bob-pass-1")  # a user changes its own password
    cli(activated, "user", "change-password", "--username", "bob", "--role", "crypto-user", "--password",
        "bob-pass-1", pin="bob:bob-pass-2")
    config = json.loads(activated.read_text())
    dead = tmp_path / "with-a-dead-hsm.json"
    dead.write_text(json.dumps({**config, "endpoints": [*config["endpoints"], "127.0.0.1:1"]}))
    hsms = cli(dead, "cluster", "hsm-info")["hsms"]
    assert [h["state"] for h in hsms] == ["operational", "unreachable"]
    gone = tmp_path / "with-no-hsm.json"
    gone.write_text(json.dumps({**config, "endpoints": ["127.0.0.1:1"]}))
    assert cli(gone, "cluster", "hsm-info", ok=False).startswith("no HSM answered: 127.0.0.1:1: ")
