"""Run the ``openssl`` command-line tool as an independent implementation to check Strongroom against."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization


def run(*args: str | Path, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """``openssl args…`` with ``data`` on standard input; the completed process (check ``returncode``)."""
    return subprocess.run(["openssl", *map(str, args)], input=data, capture_output=True, timeout=60)


def write_public_pem(key, path: Path) -> Path:
    """Write ``key``'s public half as a SubjectPublicKeyInfo PEM file and return its path."""
    public = key.public_key() if hasattr(key, "private_bytes") else key
    path.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def write_private_pem(key, path: Path) -> Path:
    """Write ``key`` as an unencrypted PKCS#8 PEM file and return its path."""
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    return path
