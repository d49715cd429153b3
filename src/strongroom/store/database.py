"""Node-local persistence in SQLite (WAL): masked objects, users, settings and the audit chain.

The store never sees clear key material: object and user records arrive already sealed by
:class:`strongroom.store.barrier.Barrier`. A few attributes are repeated in clear index columns (class, key
type, label, id, owner) so that finds are indexed; the node re-checks them against the envelope's contents.
Every change is one SQLite transaction, audit entry included, so an operation and its audit record land
together or not at all.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from ..errors import DeviceError
from .audit import GENESIS, AuditEntry, AuditReport, entry_digest, verify

SCHEMA_VERSION = 2
# Settings that belong to the replicated state (copied by snapshots); every other setting is node-local.
REPLICATED_SETTINGS = ("next_handle", "applied_index", "directory", "cluster_identity", "admitted", "mode")

# Blob columns are read through CAST so that a value stored with another type still arrives as bytes.
_OBJECT_COLUMNS = ("handle, version, class, key_type, label, CAST(id AS BLOB), owner, CAST(envelope AS BLOB)")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    handle INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    class INTEGER NOT NULL,
    key_type INTEGER,
    label TEXT NOT NULL,
    id BLOB NOT NULL,
    owner TEXT NOT NULL,
    envelope BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_label ON objects(label);
CREATE INDEX IF NOT EXISTS objects_id ON objects(id);
CREATE INDEX IF NOT EXISTS objects_class ON objects(class, key_type);
CREATE INDEX IF NOT EXISTS objects_owner ON objects(owner);
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, version INTEGER NOT NULL, envelope BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS requests (token BLOB PRIMARY KEY, idx INTEGER NOT NULL, outcome BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS requests_idx ON requests(idx);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev BLOB NOT NULL,
    digest BLOB NOT NULL
);
"""


_SNAPSHOT_SCHEMA = "\n".join(
    line.replace("IF NOT EXISTS ", "IF NOT EXISTS snap.", 1) for line in _SCHEMA.splitlines()
    if line.startswith("CREATE TABLE") or not line.startswith("CREATE"))


_GET_REQUEST = "SELECT CAST(outcome AS BLOB) FROM requests WHERE token = ?"

class ObjectRow(msgspec.Struct, array_like=True, frozen=True):
    """A stored object: its handle, version, clear index columns and sealed envelope (also the form a sealed
    object travels in through the replicated log)."""

    handle: int
    version: int
    cls: int
    key_type: int | None
    label: str
    id: bytes
    owner: str
    envelope: bytes


def utc_now() -> str:
    """The current time, ISO 8601 UTC with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Transaction:
    """The writes of one atomic change; obtained from :meth:`Store.transaction`."""

    def __init__(self, store: Store, conn: sqlite3.Connection) -> None:
        self._store = store
        self._conn = conn

    def put_object(self, row: ObjectRow) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?,?,?)",
            (row.handle, row.version, row.cls, row.key_type, row.label, row.id, row.owner, row.envelope))

    def delete_object(self, handle: int) -> None:
        self._conn.execute("DELETE FROM objects WHERE handle = ?", (handle,))

    def delete_all_objects(self) -> None:
        self._conn.execute("DELETE FROM objects")

    def put_user(self, name: str, version: int, envelope: bytes) -> None:
        self._conn.execute("INSERT OR REPLACE INTO users VALUES (?,?,?)", (name, version, envelope))

    def delete_user(self, name: str) -> None:
        self._conn.execute("DELETE FROM users WHERE name = ?", (name,))

    def delete_all_users(self) -> None:
        self._conn.execute("DELETE FROM users")

    def put_setting(self, name: str, value: bytes) -> None:
        self._conn.execute("INSERT OR REPLACE INTO settings VALUES (?,?)", (name, value))

    def get_setting(self, name: str) -> bytes | None:
        row = self._conn.execute("SELECT CAST(value AS BLOB) FROM settings WHERE name = ?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    def delete_setting(self, name: str) -> None:
        self._conn.execute("DELETE FROM settings WHERE name = ?", (name,))

    def next_counter(self, name: str, count: int = 1) -> int:
        """Advance a persistent counter by ``count`` and return the first value taken (values start at 1);
        used for never-reused handles."""
        row = self._conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        value = int.from_bytes(row[0], "big") + 1 if row else 1
        self.put_setting(name, (value + count - 1).to_bytes(8, "big"))
        return value

    def object_version(self, handle: int) -> int:
        """The stored version of an object, 0 when there is none."""
        row = self._conn.execute("SELECT version FROM objects WHERE handle = ?", (handle,)).fetchone()
        return row[0] if row else 0

    def user_version(self, name: str) -> int:
        row = self._conn.execute("SELECT version FROM users WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def get_request(self, token: bytes) -> bytes | None:
        row = self._conn.execute(_GET_REQUEST, (token,)).fetchone()
        return bytes(row[0]) if row else None

    def put_request(self, token: bytes, index: int, outcome: bytes) -> None:
        self._conn.execute("INSERT OR REPLACE INTO requests VALUES (?,?,?)", (token, index, outcome))

    def forget_requests(self, before_index: int) -> None:
        self._conn.execute("DELETE FROM requests WHERE idx < ?", (before_index,))

    def set_applied_index(self, index: int) -> None:
        self.put_setting("applied_index", index.to_bytes(8, "big"))

    def audit(self, event: str, actor: str, **detail: Any) -> AuditEntry:
        """Append one entry to the audit chain, in this transaction."""
        head = self._conn.execute("SELECT value FROM settings WHERE name = 'audit_head'").fetchone()
        seq, prev = (int.from_bytes(head[0][:8], "big") + 1, head[0][8:]) if head else (1, GENESIS)
        time = utc_now()
        digest = entry_digest(prev, seq, time, event, actor, detail)
        self._conn.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?)",
                           (seq, time, event, actor, json.dumps(detail, sort_keys=True), prev, digest))
        self.put_setting("audit_head", seq.to_bytes(8, "big") + digest)
        return AuditEntry(seq, time, event, actor, detail, prev, digest)


class Store:
    """One node's SQLite database.

    Args:
        path: the database file; created with the schema if missing. Journal mode WAL, synchronous FULL.

    Raises:
        DeviceError: ``CKR_DEVICE_ERROR`` when the file cannot be opened or is not a Strongroom store.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # Storage is untrusted: a text column holding bytes that are not UTF-8 must reach the integrity
            # checks as a mismatching value, not fail the read.
            self._conn.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
            version = self.get_setting("schema_version")
            # A new store, or version 1 (version 2 added the requests table, which the schema script makes):
            # stamp the current version.
            if version is None or int.from_bytes(version, "big") == 1:
                with self.transaction() as tx:
                    tx.put_setting("schema_version", SCHEMA_VERSION.to_bytes(4, "big"))
            elif int.from_bytes(version, "big") != SCHEMA_VERSION:
                raise DeviceError(f"store schema version {int.from_bytes(version, 'big')} is not supported")
        except sqlite3.DatabaseError as exc:
            raise DeviceError(f"cannot open store {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A write transaction; commits on exit, rolls back on an exception.

        Raises:
            DeviceError: ``CKR_DEVICE_ERROR`` when SQLite fails (disk full, I/O error).
        """
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise DeviceError(f"store write failed: {exc}") from exc
            try:
                yield Transaction(self, self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise DeviceError(f"store write failed: {exc}") from exc

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise DeviceError(f"store read failed: {exc}") from exc

    def get_request(self, token: bytes) -> bytes | None:
        """The encoded outcome stored with an applied change's request key, or ``None`` (a read, no
        transaction: it does not wait for the writer)."""
        rows = self._query(_GET_REQUEST, (token,))
        return bytes(rows[0][0]) if rows else None

    def applied_index(self) -> int:
        """The index of the last replicated-log entry applied to this store (0: none)."""
        value = self.get_setting("applied_index")
        return int.from_bytes(value, "big") if value else 0

    def export_replicated(self, path: Path | str, meta: bytes) -> None:
        """Write the replicated state (objects, users, request outcomes, replicated settings) and ``meta`` to a
        new SQLite file at ``path``: a snapshot of this store at its applied index.

        Raises:
            DeviceError: ``CKR_DEVICE_ERROR`` when SQLite fails.
        """
        path = Path(path)
        path.unlink(missing_ok=True)
        with self._lock:
            try:
                self._conn.execute("ATTACH DATABASE ? AS snap", (str(path),))
                try:
                    self._conn.executescript(_SNAPSHOT_SCHEMA)
                    self._conn.execute("BEGIN")
                    self._conn.execute("INSERT INTO snap.objects SELECT * FROM main.objects")
                    self._conn.execute("INSERT INTO snap.users SELECT * FROM main.users")
                    self._conn.execute("INSERT INTO snap.requests SELECT * FROM main.requests")
                    self._conn.execute(f"INSERT INTO snap.settings SELECT * FROM main.settings WHERE name IN "  # noqa: S608 - placeholders only
                                       f"({','.join('?' * len(REPLICATED_SETTINGS))})", REPLICATED_SETTINGS)
                    self._conn.execute("INSERT INTO snap.settings VALUES ('raft_meta', ?)", (meta,))
                    self._conn.execute("COMMIT")
                finally:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    self._conn.execute("DETACH DATABASE snap")
            except sqlite3.Error as exc:
                raise DeviceError(f"cannot write snapshot {path}: {exc}") from exc

    @staticmethod
    def snapshot_info(path: Path | str) -> tuple[int, bytes]:
        """The applied index and meta bytes a snapshot file carries.

        Raises:
            DeviceError: ``CKR_DEVICE_ERROR`` when the file is not a snapshot.
        """
        try:
            conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
            try:
                rows = dict(conn.execute("SELECT name, CAST(value AS BLOB) FROM settings "
                                         "WHERE name IN ('applied_index', 'raft_meta')").fetchall())
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise DeviceError(f"cannot read snapshot {path}: {exc}") from exc
        if "raft_meta" not in rows:
            raise DeviceError(f"{path} is not a snapshot")
        applied = rows.get("applied_index")
        return (int.from_bytes(applied, "big") if applied else 0), bytes(rows["raft_meta"])

    def import_replicated(self, path: Path | str, audit: dict[str, Any]) -> None:
        """Replace this store's replicated state with a snapshot's, audited as ``snapshot-install``.

        Raises:
            DeviceError: ``CKR_DEVICE_ERROR`` when SQLite fails; the store is left as it was.
        """
        with self._lock:
            try:
                self._conn.execute("ATTACH DATABASE ? AS snap", (f"file:{Path(path)}?mode=ro",))
            except sqlite3.Error as exc:
                raise DeviceError(f"cannot read snapshot {path}: {exc}") from exc
            try:
                with self.transaction() as tx:
                    for table in ("objects", "users", "requests"):
                        # table names from the literal tuple above, settings names as placeholders
                        self._conn.execute(f"DELETE FROM main.{table}")  # noqa: S608
                        self._conn.execute(f"INSERT INTO main.{table} SELECT * FROM snap.{table}")  # noqa: S608
                    self._conn.execute(f"DELETE FROM main.settings WHERE name IN "  # noqa: S608
                                       f"({','.join('?' * len(REPLICATED_SETTINGS))})", REPLICATED_SETTINGS)
                    self._conn.execute(f"INSERT INTO main.settings SELECT * FROM snap.settings WHERE name IN "  # noqa: S608
                                       f"({','.join('?' * len(REPLICATED_SETTINGS))})", REPLICATED_SETTINGS)
                    tx.audit("snapshot-install", "", **audit)
            except sqlite3.Error as exc:
                raise DeviceError(f"cannot install snapshot {path}: {exc}") from exc
            finally:
                self._conn.execute("DETACH DATABASE snap")

    def get_setting(self, name: str) -> bytes | None:
        rows = self._query("SELECT value FROM settings WHERE name = ?", (name,))
        return bytes(rows[0][0]) if rows else None

    def get_object(self, handle: int) -> ObjectRow | None:
        rows = self._query(f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE handle = ?", (handle,))  # noqa: S608 - constant
        return ObjectRow(*rows[0]) if rows else None

    def key_versions(self, classes: tuple[int, ...]) -> list[tuple[int, int]]:
        """``(handle, version)`` of every object of these classes (a list of ``CKO`` values), without envelopes."""
        marks = ", ".join("?" for _ in classes)
        sql = f"SELECT handle, version FROM objects WHERE class IN ({marks}) ORDER BY handle"  # noqa: S608 - marks only
        return [(int(h), int(v)) for h, v in self._query(sql, tuple(classes))]

    def find_objects(self, *, cls: int | None = None, key_type: int | None = None, label: str | None = None,
                     id: bytes | None = None) -> list[ObjectRow]:
        """Rows whose clear index columns match every given value, in handle order."""
        where, args = [], []
        for column, value in (("class", cls), ("key_type", key_type), ("label", label), ("id", id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        # the column names are literals above; the values go as parameters
        sql = (f"SELECT {_OBJECT_COLUMNS} FROM objects"  # noqa: S608
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY handle")
        return [ObjectRow(*r) for r in self._query(sql, tuple(args))]

    def iter_objects(self) -> Iterator[ObjectRow]:
        for row in self._query(f"SELECT {_OBJECT_COLUMNS} FROM objects ORDER BY handle"):  # noqa: S608 - constant
            yield ObjectRow(*row)

    def count_objects(self) -> int:
        """The number of objects in the store."""
        count: int = self._query("SELECT COUNT(*) FROM objects")[0][0]
        return count

    def users(self) -> list[tuple[str, int, bytes]]:
        """Every user as ``(name, version, envelope)``, in name order."""
        rows = self._query("SELECT name, version, CAST(envelope AS BLOB) FROM users ORDER BY name")
        return [(n, v, bytes(e)) for n, v, e in rows]

    def audit_entries(self, after_seq: int = 0) -> list[AuditEntry]:
        rows = self._query("SELECT * FROM audit WHERE seq > ? ORDER BY seq", (after_seq,))
        return [AuditEntry(s, t, e, a, json.loads(d), bytes(p), bytes(g)) for s, t, e, a, d, p, g in rows]

    def verify_audit(self) -> AuditReport:
        """Verify the whole audit chain in storage order (see :func:`strongroom.store.audit.verify`)."""
        rows = self._query("SELECT seq, time, event, actor, detail, prev, digest FROM audit ORDER BY rowid")
        head = self.get_setting("audit_head")
        return verify(rows, (int.from_bytes(head[:8], "big"), head[8:]) if head else None)
