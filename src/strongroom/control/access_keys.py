"""The API's access keys: issued, listed, deactivated and deleted by whoever holds the control plane's directory
(``strongroom control access-key …``, which works on its records and sealing key while it runs), and looked up by
the API for each signed request.

The secret is needed in clear to check a SigV4 signature (an HMAC), so it is sealed, not hashed
(:mod:`strongroom.control.sealed`); it is shown once, when the key is created.
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from ..errors import ArgumentsBad
from .records import AccessKey, Base, Store
from .sealed import ACCESS_KEY as KIND
from .sealed import SealingKey

ACTIVE, INACTIVE = "Active", "Inactive"
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class NoSuchAccessKey(ArgumentsBad):
    """``CKR_ARGUMENTS_BAD``: no access key has the given id."""


@dataclass(frozen=True)
class Secret:
    """An access key's secret and status, for checking a signature."""

    secret_access_key: str
    active: bool


def _shape(key: AccessKey) -> dict[str, Any]:
    return {"access_key_id": key.access_key_id, "status": key.status,
            "created": datetime.datetime.fromtimestamp(key.created, datetime.UTC).isoformat(timespec="seconds")}


def create(store: Store, sealing: SealingKey) -> dict[str, Any]:
    """A new active key: ``{"access_key_id", "secret_access_key", "status", "created"}`` (the only time the secret
    is shown)."""
    key_id = "AKIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
    secret = secrets.token_urlsafe(30)[:40]
    with store.session() as session:
        key = AccessKey(access_key_id=key_id, sealed_secret=sealing.seal(KIND, key_id, secret), status=ACTIVE)
        session.add(key)
        session.flush()
        shape = _shape(key)
    return {**shape, "secret_access_key": secret}


def listing(store: Store) -> list[dict[str, Any]]:
    """Every key, oldest first: ``{"access_key_id", "status", "created"}`` (no secret)."""
    with store.session() as session:
        return [_shape(k) for k in session.scalars(select(AccessKey).order_by(AccessKey.created))]


def _existing(session: Session, access_key_id: str) -> AccessKey:
    key = session.get(AccessKey, access_key_id)
    if key is None:
        raise NoSuchAccessKey(f"no access key {access_key_id!r:.40}")
    return key


def set_status(store: Store, access_key_id: str, status: str) -> dict[str, Any]:
    """Make a key ``Active`` or ``Inactive`` (an inactive key's requests are refused from the next one on).

    Raises:
        NoSuchAccessKey: no key has that id.
    """
    with store.session() as session:
        key = _existing(session, access_key_id)
        key.status = status
        return _shape(key)


def delete(store: Store, access_key_id: str) -> dict[str, Any]:
    """Delete a key for good (its requests are refused as an unknown key's).

    Raises:
        NoSuchAccessKey: no key has that id.
    """
    with store.session() as session:
        key = _existing(session, access_key_id)
        shape = _shape(key)
        session.delete(key)
    return {**shape, "status": "Deleted"}


def seal_clear_secrets(store: Store, sealing: SealingKey) -> int:
    """Seal the secrets an earlier version kept in clear (an ``access_keys`` table with a ``secret_access_key``
    column): the table is made again with sealed secrets, and on SQLite the file is vacuumed and the write-ahead
    log emptied so the clear values leave the disk. Returns how many keys were sealed."""
    columns = {c["name"] for c in inspect(store.engine).get_columns(AccessKey.__tablename__)}
    if "secret_access_key" not in columns:
        return 0
    table = Base.metadata.tables[AccessKey.__tablename__]
    with store.engine.begin() as connection:
        rows = connection.execute(text("SELECT access_key_id, secret_access_key, created FROM access_keys")).all()
        connection.execute(text("DROP TABLE access_keys"))
        table.create(connection)
        for key_id, clear, created in rows:
            connection.execute(table.insert().values(
                access_key_id=key_id, sealed_secret=sealing.seal(KIND, key_id, clear), status=ACTIVE,
                created=created))
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as connection:
            connection.exec_driver_sql("VACUUM")
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return len(rows)


def secret(store: Store, sealing: SealingKey, access_key_id: str) -> Secret | None:
    """The key's secret and whether it is active; ``None`` for an id the control plane does not hold."""
    with store.session() as session:
        key = session.get(AccessKey, access_key_id)
        if key is None:
            return None
        return Secret(sealing.open(KIND, key.access_key_id, key.sealed_secret), key.status == ACTIVE)
