"""``strongroom-cli`` takes the service CLI's syntax: space-separated lists, ``--share-crypto-users``, credentials
from ``CLOUDHSM_ROLE``/``CLOUDHSM_PIN``, ``--version``; text output for people fits 100 columns and shows paging."""

from __future__ import annotations

import base64
import sys
from importlib.metadata import version

import click
import pytest

from strongroom.cli.hsm import main as cli_main
from strongroom.cli.service import main as service_main

from .runner import ADMIN_PW, ALICE, BOB, clean_env, cli, run


def test_space_separated_lists_as_the_service_writes_them_and_repeated_flags_too(activated):
    spaced = cli(activated, "key", "generate-symmetric", "aes", "--label", "lists-spaced", "--key-length-bytes",
                 "16", "--attributes", "encrypt=true", "decrypt=true", "--session", pin=ALICE)["key"]
    repeated = cli(activated, "key", "generate-symmetric", "aes", "--label", "lists-repeated",
                   "--attributes=encrypt=true", "--attributes", "decrypt=true", "--key-length-bytes", "16",
                   pin=ALICE)["key"]
    for made in (spaced, repeated):
        assert (made["attributes"]["encrypt"], made["attributes"]["decrypt"]) == (True, True)
    assert spaced["attributes"]["token"] is False  # the flag after the list ended it
    cli(activated, "key", "generate-asymmetric-pair", "ec", "--curve", "prime256v1", "--public-label", "lists-pub",
        "--private-label", "lists-priv", "--public-attributes", "verify=true", "id=0x0c", "--private-attributes",
        "sign=true", "id=0x0c", pin=ALICE)
    listed = cli(activated, "key", "list", "--filter", "attr.id=0x0c", "attr.class=private-key", "-v", pin=ALICE)
    assert listed["total_key_count"] == 1
    assert listed["matched_keys"][0]["attributes"]["label"] == "lists-priv"  # -v after the list: verbose
    both = cli(activated, "key", "list", "--filter", "attr.id=0x0c", "--filter", "attr.label=lists-pub", pin=ALICE)
    assert both["total_key_count"] == 1
    data = base64.b64encode(b"signed with a two-word filter").decode()
    signed = cli(activated, "crypto", "sign", "ecdsa", "--key-filter", "attr.id=0x0c", "attr.class=private-key",
                 "--hash-function", "sha256", "--data", data, pin=ALICE)
    assert cli(activated, "crypto", "verify", "ecdsa", "--key-filter", "attr.label=lists-pub", "attr.id=0x0c",
               "--hash-function", "sha256", "--data", data, "--signature", signed["signature"], pin=ALICE) == {
        "message": "Signature verified successfully"}


def test_share_crypto_users_shares_the_new_key_at_once_or_keeps_nothing(activated):
    made = cli(activated, "key", "generate-symmetric", "aes", "--label", "for-bob", "--key-length-bytes", "32",
               "--attributes", "encrypt=true", "decrypt=true", "--share-crypto-users", "bob", pin=ALICE)["key"]
    seen = cli(activated, "key", "list", "--filter", "attr.label=for-bob", pin=BOB)["matched_keys"]
    assert [k["key-reference"] for k in seen] == [made["key-reference"]]
    sealed = cli(activated, "crypto", "encrypt", "aes-gcm", "--key-filter", "attr.label=for-bob", "--data",
                 base64.b64encode(b"for bob").decode(), pin=BOB)["encrypted_data"]
    assert base64.b64decode(cli(activated, "crypto", "decrypt", "aes-gcm", "--key-filter", "attr.label=for-bob",
                                "--data", sealed, pin=ALICE)["decrypted_data"]) == b"for bob"
    pair = cli(activated, "key", "generate-asymmetric-pair", "rsa", "--modulus-size-bits", "2048", "--public-label",
               "bob-rsa-pub", "--private-label", "bob-rsa-priv", "--private-attributes", "sign=true",
               "--share-crypto-users", "bob", pin=ALICE)
    assert cli(activated, "key", "list", "--filter", "attr.label=bob-rsa-priv", pin=BOB)["matched_keys"][0][
        "key-reference"] == pair["private_key"]["key-reference"]
    for extra, says in ((["--share-crypto-users", "bob", "nobody"], "'nobody' is not a crypto user"),
                        (["--share-crypto-users", "admin"], "'admin' is not a crypto user"),
                        (["--share-crypto-users", "alice"], "alice owns the new key already"),
                        (["--share-crypto-users", "bob", "--session"], "session keys are not shared")):
        message = cli(activated, "key", "generate-symmetric", "aes", "--label", "not-kept", "--key-length-bytes",
                      "16", *extra, pin=ALICE, ok=False)
        assert says in message, message
    assert cli(activated, "key", "list", "--filter", "attr.label=not-kept", pin=ALICE)["total_key_count"] == 0


def test_single_command_login_keeps_nothing_so_it_refuses_and_says_what_to_do(activated):
    for args in (("login", "--username", "alice", "--role", "crypto-user", "--password", "alice-pass-1"),
                 ("login", "--username", "alice", "--role", "crypto-user"), ("logout",)):
        message = cli(activated, *args, ok=False)
        assert "CLOUDHSM_PIN=<username>:<password>" in message and "strongroom-cli interactive" in message
        assert "success" not in message.lower()
    # what it says to do works: the service's variables
    assert cli(activated, "key", "list", pin=ALICE)["total_key_count"] >= 0
    done = run(activated, "key", "list", env={"CLOUDHSM_PIN": ALICE, "CLOUDHSM_ROLE": "auditor"})
    assert '"CLOUDHSM_ROLE is admin or crypto-user, not \'auditor\'"' in done.stdout and done.returncode == 1


def _groups(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every group and command below ``group``, groups first at each level."""
    found: list[tuple[tuple[str, ...], click.Command]] = [(path, group)]
    for name, sub in group.commands.items():
        found += _groups(sub, (*path, name)) if isinstance(sub, click.Group) else [((*path, name), sub)]
    return found


@pytest.mark.parametrize(("module", "prog"), [("strongroom.cli.hsm", "strongroom-cli"),
                                              ("strongroom", "strongroom")])
def test_every_entry_point_group_and_command_answers_version(module, prog):
    root = cli_main if prog == "strongroom-cli" else service_main
    groups = _groups(root)
    assert len(groups) >= (40 if prog == "strongroom-cli" else 15)
    for path, group in groups:  # every group and command, however deep, has the flag
        assert any("--version" in getattr(p, "opts", ()) for p in group.params), path
    for path in (groups[0][0], groups[-1][0]):
        done = run(None, *path, "--version", module=module)
        assert (done.returncode, done.stdout, done.stderr) == (0, f"{prog} {version('strongroom')}\n", "")


def test_text_output_shows_paging_fits_100_columns_and_prints_no_repr(activated, tmp_path):
    import strongroom.client as sdk
    from strongroom.vocab import CKA, CKM

    with sdk.connect(sdk.ClientConfig.from_file(str(activated), certificate="cli")) as cluster:
        session = cluster.login("alice", ALICE.partition(":")[2])
        for _ in range(12):  # made through the SDK: a dozen CLI processes would only add time
            session.generate_key(CKM.GENERIC_SECRET_KEY_GEN, {CKA.LABEL: "paged", CKA.VALUE_LEN: 32}, token=True)
        session.close()
    cli(activated, "key", "generate-asymmetric-pair", "rsa", "--modulus-size-bits", "2048", "--public-label",
        "wide-pub", "--private-label", "wide-priv", "--private-attributes", "sign=true", pin=ALICE)

    def text(*args: str, pin: str = ALICE, role: str = "crypto-user") -> list[str]:
        done = run(activated, "--output", "text", *args, pin=pin, role=role, env={"COLUMNS": "250"})
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert lines and max(len(line) for line in lines) <= 100, done.stdout
        for repr_mark in ("{'", "['", "True", "False", "None", "<strongroom"):
            assert repr_mark not in done.stdout, (args, done.stdout)
        return lines

    first = text("key", "list", "--filter", "attr.label=paged")
    assert first[-2:] == ["12 keys match; showing 1-10.",
                          "Next page: the same command with --starting-token 10 (and --max-items 10)."]
    assert len([line for line in first if line.startswith("0x")]) == 10
    last = text("key", "list", "--filter", "attr.label=paged", "--starting-token", "10")
    assert last[-1] == "12 keys match; showing 11-12." and len([x for x in last if x.startswith("0x")]) == 2
    verbose = text("key", "list", "--filter", "attr.label=wide-pub", "-v")
    assert verbose[:2] == ["key 1 of 1", "  key-reference: " + verbose[1].split()[-1]]
    modulus = next(n for n, line in enumerate(verbose) if line.startswith("  modulus: 0x"))
    assert verbose[modulus + 1].startswith(" " * len("  modulus: "))  # 514 hex digits wrap
    hsms = text("cluster", "hsm-info")
    assert "  state: operational" in hsms or any(line.split()[-1:] == ["operational"] for line in hsms)
    text("user", "list")
    text("key", "generate-symmetric", "aes", "--label", "text-aes", "--key-length-bytes", "32", "--attributes",
         "encrypt=true")
    text("key", "list", "--filter", "attr.label=no-such-label")
    text("crypto", "encrypt", "aes-gcm", "--key-filter", "attr.label=text-aes", "--data", "aGk=")
    text("key", "generate-symmetric", "aes", "--label", "text-kek", "--key-length-bytes", "32", "--attributes",
         "wrap=true", "unwrap=true")
    text("key", "wrap", "aes-gcm", "--payload-filter", "attr.label=text-aes", "--wrapping-filter",
         "attr.label=text-kek")
    text("key", "set-attribute", "--filter", "attr.label=text-aes", "--name", "decrypt", "--value", "true")
    text("key", "share", "--filter", "attr.label=text-aes", "--username", "bob")
    text("key", "generate-file", "--filter", "attr.label=wide-pub", "--path", str(tmp_path / "wide.pem"))
    text("key", "generate-symmetric", "generic-secret", "--label", "text-mac", "--key-length-bytes", "32")
    text("crypto", "mac", "generate", "hmac", "--key-filter", "attr.label=text-mac", "--hash-function", "sha256",
         "--data", "aGk=")
    text("crypto", "sign", "rsa-pkcs", "--key-filter", "attr.label=wide-priv", "--hash-function", "sha256",
         "--data", "aGk=")
    admin = f"admin:{ADMIN_PW}"
    assert "admin     admin        false" in "\n".join(text("user", "list", pin=admin, role="admin"))
    assert text("key", "delete", "--filter", "attr.label=text-aes") == ["message: Key deleted successfully"]


def test_the_shell_history_never_holds_a_password_or_a_plaintext(activated, tmp_path):
    import pexpect

    history = tmp_path / "history"
    history.write_text("key list\nlogin --username alice --role crypto-user --password old-secret-1\n")
    env = clean_env(STRONGROOM_CLI_HISTORY=str(history), TERM="dumb")
    shell = pexpect.spawn(sys.executable, ["-m", "strongroom.cli.hsm", "--cluster", str(activated), "interactive"],
                          env=env, encoding="utf-8", timeout=60)
    secret = base64.b64encode(b"plaintext-secret").decode()
    try:
        shell.expect_exact("strongroom > ")
        shell.sendline(f"login --username alice --role crypto-user --password={ALICE.partition(':')[2]}")
        shell.expect_exact("alice@strongroom > ")
        shell.sendline("key generate-symmetric aes --label shell-aes --key-length-bytes 16 --attributes "
                       "encrypt=true decrypt=true")
        shell.expect_exact("alice@strongroom > ")
        shell.sendline(f"crypto encrypt aes-gcm --key-filter attr.label=shell-aes --data {secret}")
        shell.expect_exact('"encrypted_data"')
        shell.expect_exact("alice@strongroom > ")
        shell.sendline("logout")
        shell.expect_exact("\nstrongroom > ")
        shell.sendline("login --username bob --role crypto-user")  # no --password: asked, unseen
        shell.expect_exact("Password: ")
        shell.sendline(BOB.partition(":")[2])
        shell.expect_exact("bob@strongroom > ")
        shell.sendline("quit")
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    kept = history.read_text()
    for secret_text in ("old-secret-1", ALICE.partition(":")[2], BOB.partition(":")[2], secret):
        assert secret_text not in kept, kept
    assert kept.splitlines() == [
        "key list", "login --username alice --role crypto-user", "login --username alice --role crypto-user",
        "key generate-symmetric aes --label shell-aes --key-length-bytes 16 --attributes encrypt=true decrypt=true",
        "crypto encrypt aes-gcm --key-filter attr.label=shell-aes", "logout",
        "login --username bob --role crypto-user", "quit"]


def test_text_errors_fit_100_columns_too(activated):
    done = run(activated, "--output", "text", "login", "--username", "alice", "--role", "crypto-user")
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and done.stdout == "" and lines[0].startswith("Error: in single-command mode")
    assert len(lines) > 1 and max(len(line) for line in lines) <= 100
    assert "CLOUDHSM_PIN=<username>:<password>" in " ".join(lines)
