"""Readers for the published test vectors shipped in the ``cryptography_vectors`` package.

NIST CAVP response files (``.rsp``, and the ``.txt`` files in the same ``KEY = value`` layout) become a list
of records: one dict per blank-line-separated block, keys lower-cased, carrying the ``[name = value]``
section headers seen before it (and ``section`` for a bare ``[NAME]``), plus ``fail: True`` for a ``FAIL``
line.
"""

from __future__ import annotations

from collections.abc import Iterator

from cryptography_vectors import open_vector_file


def lines(path: str) -> Iterator[str]:
    """The lines of a vector file, stripped."""
    with open_vector_file(path, "r") as handle:
        for line in handle:
            yield line.strip()


def nist_records(path: str) -> list[dict]:
    """Parse a NIST CAVP-style ``KEY = value`` file into records (see the module docstring)."""
    records: list[dict] = []
    headers: dict = {}
    current: dict | None = None
    for line in lines(path):
        if line.startswith("#"):
            continue
        if not line or (line.startswith("[") and line.endswith("]")):
            if current is not None:
                records.append(current)
                current = None
            if line:
                inner = line[1:-1]
                if "=" in inner:
                    name, value = inner.split("=", 1)
                    headers[name.strip().lower()] = value.strip()
                else:
                    headers["section"] = inner.strip()
            continue
        if current is None:
            current = dict(headers)
        if line == "FAIL":
            current["fail"] = True
        elif "=" in line:
            name, value = line.split("=", 1)
            current[name.strip().lower()] = value.strip()
    if current is not None:
        records.append(current)
    return records


def unhex(value: str) -> bytes:
    """Bytes of a hex field (NIST files write an empty field as nothing)."""
    return bytes.fromhex(value)


def oaep_custom(path: str) -> list[dict]:
    """Parse a pyca ``oaep-custom`` file: one dict per key with its RSA numbers and its examples.

    Returns:
        ``[{"n", "e", "d", "p", "q", "dmp1", "dmq1", "iqmp": int, "examples": [(message, ciphertext)]}]``.
    """
    labels = {
        "Modulus:": "n",
        "Public exponent:": "e",
        "Exponent:": "d",
        "Prime 1:": "p",
        "Prime 2:": "q",
        "Prime exponent 1:": "dmp1",
        "Prime exponent 2:": "dmq1",
        "Coefficient:": "iqmp",
        "Message:": "message",
        "Encryption:": "ciphertext",
    }
    keys: list[dict] = []
    field: str | None = None
    in_private = False
    for line in lines(path):
        if line.startswith("# ====="):
            keys.append({"examples": []})
            in_private = False
            continue
        if line.startswith("#"):
            label = line.lstrip("# ").strip()
            if label == "Private key":
                in_private = True
            # The public half repeats "Exponent:" for e; only the private section's is d.
            field = labels.get(label)
            if field == "d" and not in_private:
                field = "e"
            continue
        if not line or field is None or not keys:
            continue
        key = keys[-1]
        if field == "message":
            key["examples"].append([bytes.fromhex(line), None])
        elif field == "ciphertext":
            key["examples"][-1][1] = bytes.fromhex(line)
        else:
            key[field] = int(line, 16)
        field = None
    return keys


def ed25519_sign_input(limit: int) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """The first ``limit`` cases of djb's Ed25519 ``sign.input``: ``(seed, public, message, signature)``."""
    cases = []
    for line in lines("asymmetric/Ed25519/sign.input"):
        if len(cases) == limit:
            break
        secret, public, message, signed, _ = line.split(":")
        cases.append((bytes.fromhex(secret)[:32], bytes.fromhex(public), bytes.fromhex(message),
                      bytes.fromhex(signed)[:64]))
    return cases
