"""The control plane's sealing key: the one layer that encrypts its secrets at rest (access keys' secrets, a
cluster's initial admin password), so that its database, its write-ahead log and its backups hold none in clear.

A sealed value is ``version (1 byte, 0x01) ‖ nonce (12 bytes) ‖ AES-256-GCM ciphertext and 16-byte tag``; the
associated data binds the kind of record and its id, so a sealed value moved to another row does not open. The
key is 32 random bytes in ``sealing.key`` (mode 0600) in the control plane's directory, never in the database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import DeviceError

ACCESS_KEY = "access-key"  # the kinds of sealed values: an access key's secret (record id: the key id)
PRECO = "preco-password"  # a cluster's initial admin password (record id: the cluster id)
VERSION = b"\x01"
NONCE_BYTES = 12
KEY_BYTES = 32
FILE_NAME = "sealing.key"


class SealingKeyError(DeviceError):
    """``CKR_DEVICE_ERROR``: the sealing key file is missing its 32 bytes, or a sealed value does not open under it
    (another directory's key, a row altered or moved)."""


def _associated(kind: str, record_id: str) -> bytes:
    return b"strongroom.control\x00" + kind.encode() + b"\x00" + record_id.encode()


@dataclass(frozen=True)
class SealingKey:
    """AES-256-GCM over the control plane's secrets.

    Args:
        key: the 32-byte key.
    """

    key: bytes

    @classmethod
    def load(cls, folder: Path, *, create: bool = False) -> SealingKey:
        """The key in ``folder/sealing.key``; with ``create``, made from the OS CSPRNG (mode 0600) when absent.

        Raises:
            SealingKeyError: the file is absent (without ``create``) or does not hold 32 bytes.
        """
        path = Path(folder) / FILE_NAME
        if create and not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(KEY_BYTES))
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            raise SealingKeyError(f"no sealing key in {folder} (is it a control plane's directory?)") from None
        if len(key) != KEY_BYTES:
            raise SealingKeyError(f"{path} must hold {KEY_BYTES} bytes, not {len(key)}")
        return cls(key)

    def seal(self, kind: str, record_id: str, value: str) -> bytes:
        """``value`` sealed for the record ``record_id`` of ``kind`` (e.g. ``"access-key"``, the key id)."""
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + AESGCM(self.key).encrypt(nonce, value.encode(), _associated(kind, record_id))

    def open(self, kind: str, record_id: str, sealed: bytes) -> str:
        """The value :meth:`seal` sealed for the same ``kind`` and ``record_id``.

        Raises:
            SealingKeyError: it does not open (another key, another record, altered bytes).
        """
        if sealed[:1] != VERSION or len(sealed) < 1 + NONCE_BYTES + 16:
            raise SealingKeyError(f"the sealed {kind} of {record_id!r:.40} is not in a known format")
        try:
            clear = AESGCM(self.key).decrypt(sealed[1:1 + NONCE_BYTES], sealed[1 + NONCE_BYTES:],
                                             _associated(kind, record_id))
        except InvalidTag:
            raise SealingKeyError(f"the sealed {kind} of {record_id!r:.40} does not open under this sealing key") \
                from None
        return clear.decode()
