"""A throw-away SoftHSM2 token: its own config and token directory, opened through python-pkcs11."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from constants import P256_PARAMS

LIBRARY_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
PIN, SO_PIN, LABEL = "1234", "5678", "bench"


def library() -> str:
    for path in (os.environ.get("SOFTHSM2_LIB", ""), *LIBRARY_PATHS):
        if path and os.path.exists(path):
            return path
    raise FileNotFoundError("libsofthsm2.so not found: install Debian's softhsm2 (make bench does)")


def version() -> str:
    try:
        return subprocess.run(
            ["softhsm2-util", "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except OSError:
        return "?"


class SoftHsmToken:
    """A fresh token in a temporary directory (``SOFTHSM2_CONF`` points at a config naming it), a logged-in
    read-write session, one token key of each kind (``keys``) and one session key of each kind
    (``session_keys``)."""

    def __init__(self) -> None:
        import pkcs11
        from pkcs11 import Attribute, KeyType, MechanismFlag

        self.dir = Path(tempfile.mkdtemp(prefix="softhsm-bench-"))
        (self.dir / "tokens").mkdir()
        conf = self.dir / "softhsm2.conf"
        conf.write_text(
            f"directories.tokendir = {self.dir / 'tokens'}\nobjectstore.backend = file\n"
            "log.level = ERROR\nslots.removable = false\n"
        )
        os.environ["SOFTHSM2_CONF"] = str(conf)
        done = subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", LABEL, "--pin", PIN, "--so-pin", SO_PIN],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"softhsm2-util --init-token failed: {done.stderr or done.stdout}")
        self.lib = pkcs11.lib(library())
        self.token = self.lib.get_token(token_label=LABEL)
        self.session = self.token.open(user_pin=PIN, rw=True)
        s = self.session
        _, rsa_priv = s.generate_keypair(KeyType.RSA, 2048, store=True, label="bench-rsa")
        _, ec_priv = s.generate_keypair(
            KeyType.EC, store=True, label="bench-ec", public_template={Attribute.EC_PARAMS: P256_PARAMS}
        )
        aes = s.generate_key(KeyType.AES, 256, store=True, label="bench-aes")
        mac = s.generate_key(
            KeyType.GENERIC_SECRET,
            256,
            store=True,
            label="bench-hmac",
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        )
        self.keys: dict[str, Any] = {"rsa": rsa_priv, "ec": ec_priv, "aes": aes, "hmac": mac}
        # The same kinds as session objects: SoftHSM2 checks a token object's file on every use, so these are
        # faster; they vanish with the session (no persistent key), unlike the node's keys.
        _, rsa_priv = s.generate_keypair(KeyType.RSA, 2048, store=False, label="bench-rsa-session")
        _, ec_priv = s.generate_keypair(
            KeyType.EC,
            store=False,
            label="bench-ec-session",
            public_template={Attribute.EC_PARAMS: P256_PARAMS},
        )
        aes = s.generate_key(KeyType.AES, 256, store=False, label="bench-aes-session")
        mac = s.generate_key(
            KeyType.GENERIC_SECRET,
            256,
            store=False,
            label="bench-hmac-session",
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        )
        self.session_keys: dict[str, Any] = {"rsa": rsa_priv, "ec": ec_priv, "aes": aes, "hmac": mac}

    def close(self) -> None:
        try:
            self.session.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
