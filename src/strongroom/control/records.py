"""The control plane's own records, through SQLAlchemy: SQLite by default, any URL SQLAlchemy takes (PostgreSQL).

It records clusters, HSMs, tags, the API's access keys and the signatures of the changes it accepted: no HSM key
material. Secrets (an access key's secret, a cluster's initial admin password until activation) are stored only
sealed (:mod:`strongroom.control.sealed`). The rows hold the fields of the cloudhsmv2 shapes they answer with
(``Cluster``, ``Hsm``, ``Tag``).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, LargeBinary, String, Text, create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

ID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"  # the service's ID pattern: [2-7a-zA-Z]{11,16}
ID_LENGTH = 11


def new_id(prefix: str) -> str:
    """``cluster-…``, ``hsm-…`` or ``backup-…`` with 11 random characters of the service's alphabet."""
    return f"{prefix}-" + "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


STATE_MESSAGE_CHARS = 300  # the records' StateMessage columns


def clip(text: str, limit: int = STATE_MESSAGE_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters: a longer one is cut at the last space before the limit
    (never inside a word) and ends with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[:limit - 1]
    cut = head.rfind(" ")
    return (head[:cut] if cut > 0 else head).rstrip(" ,;:") + "…"


class Base(DeclarativeBase):
    pass


class AccessKey(Base):
    """An API credential the control plane issued: the SigV4 access key id, its secret sealed under the control
    plane's sealing key (the id in the associated data), and its status (``Active`` or ``Inactive``)."""

    __tablename__ = "access_keys"
    access_key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sealed_secret: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="Active")
    created: Mapped[float] = mapped_column(Float, default=time.time)


class AcceptedSignature(Base):
    """The SigV4 signature of a changing request the API accepted, kept until its date leaves the allowed clock
    skew (``expires``, epoch seconds): the same request sent again is refused as a replay."""

    __tablename__ = "accepted_signatures"
    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires: Mapped[float] = mapped_column(Float, index=True)


class Cluster(Base):
    __tablename__ = "clusters"
    cluster_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(32))
    state_message: Mapped[str] = mapped_column(String(STATE_MESSAGE_CHARS), default="")
    hsm_type: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(16), default="FIPS")
    network_type: Mapped[str] = mapped_column(String(16), default="IPV4")
    subnet_mapping: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    vpc_id: Mapped[str] = mapped_column(String(32))
    security_group: Mapped[str] = mapped_column(String(32))
    backup_retention_days: Mapped[str] = mapped_column(String(3), default="90")
    source_backup_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    create_timestamp: Mapped[float] = mapped_column(Float, default=time.time)
    cluster_csr: Mapped[str] = mapped_column(Text, default="")
    cluster_certificate: Mapped[str] = mapped_column(Text, default="")
    trust_anchor: Mapped[str] = mapped_column(Text, default="")
    # the first HSM's initial admin password, sealed, from its creation until the cluster is activated
    sealed_preco_password: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, default=None)
    hsms: Mapped[list[Hsm]] = relationship(back_populates="cluster", order_by="Hsm.created")


class Hsm(Base):
    __tablename__ = "hsms"
    hsm_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.cluster_id"))
    availability_zone: Mapped[str] = mapped_column(String(32))
    subnet_id: Mapped[str] = mapped_column(String(32))
    eni_id: Mapped[str] = mapped_column(String(32))
    eni_ip: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(32))
    state_message: Mapped[str] = mapped_column(String(STATE_MESSAGE_CHARS), default="")
    placement: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # what the provider needs to find it
    created: Mapped[float] = mapped_column(Float, default=time.time)
    cluster: Mapped[Cluster] = relationship(back_populates="hsms")


class Tag(Base):
    __tablename__ = "tags"
    resource_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(String(256), default="")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")  # a deleted row's bytes are overwritten, not left in free pages
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _private_files(database: str | None) -> None:
    """Make a SQLite database file mode 0600 before SQLite opens it (SQLite gives its ``-wal`` and ``-shm`` files
    the database's mode), and bring files an earlier version left readable to 0600."""
    if not database or database == ":memory:":
        return
    path = Path(database)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        if name.exists():
            name.chmod(0o600)


class Store:
    """The control plane's database.

    Args:
        url: a SQLAlchemy URL, e.g. ``sqlite:///var/control/state.db`` or ``postgresql+psycopg://…``.
    """

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            _private_files(self.engine.url.database)
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self._add_missing_columns()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _add_missing_columns(self) -> None:
        """Columns later versions added to a table an earlier version made (nullable ones only)."""
        present = {c["name"] for c in inspect(self.engine).get_columns(Cluster.__tablename__)}
        with self.engine.begin() as connection:
            for column in Cluster.__table__.columns:
                if column.name not in present and column.nullable:
                    kind = column.type.compile(dialect=self.engine.dialect)
                    connection.execute(text(f"ALTER TABLE {Cluster.__tablename__} ADD COLUMN {column.name} {kind}"))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()
