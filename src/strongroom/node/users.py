"""HSM users: roles, username and password rules, argon2id hashing, lockout counters.

Roles are those of the service Strongroom matches: ``unactivated-admin`` (exists before activation; may only
activate), ``admin`` (manages users and policy, cannot use keys), ``crypto-user`` (owns and uses keys, cannot
manage users) and ``appliance`` (health, backup and audit export only).
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .. import crypto
from ..errors import ArgumentsBad, PinIncorrect, PinLenRange
from ..vendor import Role as Role  # the roles' one home is the vocabulary; node modules import it from here

MAX_USERNAME_CHARS = 31
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 32
DEFAULT_LOCKOUT_THRESHOLD = 5
MAX_USERS = 1024

_USERNAME = re.compile(rf"^[a-z0-9_]{{1,{MAX_USERNAME_CHARS}}}$")


class UserRecord(msgspec.Struct):
    """A user as sealed in the store.

    Attributes:
        failures: consecutive wrong passwords, counted cluster-wide.
        locked: the failures reached the lockout threshold; an unlock clears both.
        initial_password: the unactivated admin's password as made by the first HSM, for the appliance to hand
            to the owner; emptied by activation.
        failed_at: when the last wrong password was counted (UTC, seconds since the epoch): the back-off runs
            from it.
        owner_unlocks: nonces of the owner-signed unlock requests this user was unlocked with → their expiry
            (UTC seconds), kept until they expire so none is accepted twice.
    """

    name: str
    role: str
    password_hash: str
    failures: int = 0
    locked: bool = False
    version: int = 1
    initial_password: str = ""
    failed_at: float = 0.0
    owner_unlocks: dict[str, float] = msgspec.field(default_factory=dict)


def new_initial_password() -> str:
    """A random initial admin password: 24 URL-safe base64 characters (144 bits from the HSM's RNG)."""
    return base64.urlsafe_b64encode(crypto.random_bytes(18)).decode()


def write_initial_password(path: Path, password: str) -> None:
    """Write the initial admin password into the new file ``path`` (mode 0600).

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` when the file exists or cannot be made.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ArgumentsBad(f"cannot make {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")


def backoff_s(failures: int, base_s: float, max_s: float) -> float:
    """The wait before a user's next password check after ``failures`` consecutive wrong passwords: none after
    the first, then ``base_s`` doubling with each failure, at most ``max_s``."""
    if failures < 2 or base_s <= 0:
        return 0.0
    return float(min(max_s, base_s * 2 ** min(failures - 2, 32)))


def check_username(name: str) -> str:
    """Return the canonical (lowercase) username.

    Raises:
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` unless 1–31 characters of letters, digits and ``_``.
    """
    canonical = name.lower() if isinstance(name, str) else ""
    if not _USERNAME.match(canonical):
        raise ArgumentsBad(
            f"username must be 1-{MAX_USERNAME_CHARS} characters of letters, digits and '_', got {name!r}")
    return canonical


def check_password(password: str) -> None:
    """Raises ``CKR_PIN_LEN_RANGE`` (:class:`PinLenRange`) unless the password has 8–32 characters."""
    if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise PinLenRange(f"password must be {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} characters")


def split_pin(pin: str | bytes) -> tuple[str, str]:
    """Split a PKCS#11 PIN of the form ``username:password``.

    Raises:
        PinIncorrect: ``CKR_PIN_INCORRECT`` when the PIN has no ``:`` or no user name: to an application it is
            a wrong PIN like any other (PKCS#11 3.0 §5.5, ``C_Login``).
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` when the PIN is bytes that are not UTF-8.
    """
    if isinstance(pin, (bytes, bytearray)):
        try:
            pin = bytes(pin).decode("utf-8")
        except UnicodeDecodeError:
            raise ArgumentsBad("the PIN must be UTF-8 'username:password'") from None
    name, sep, password = pin.partition(":")
    if not sep or not name:
        raise PinIncorrect("wrong PIN: a PIN is 'username:password'")
    return name, password


class Passwords:
    """argon2id hashing (RFC 9106). The default cost is the RFC's second recommended option (64 MiB, t=3).

    Args:
        memory_kib: memory cost in KiB.
        time_cost: iterations.
    """

    def __init__(self, memory_kib: int = 65536, time_cost: int = 3) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        self._dummy: str | None = None

    @property
    def dummy_hash(self) -> str:
        """A hash of a random password, verified against for unknown users so that timing reveals nothing."""
        if self._dummy is None:
            import secrets

            self._dummy = self.hash(secrets.token_urlsafe(16))
        return self._dummy

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
