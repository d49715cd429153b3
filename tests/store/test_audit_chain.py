"""The audit chain's verifier reports the first modified, missing or reordered entry."""

from __future__ import annotations

import itertools
import sqlite3

import pytest

from strongroom.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "a.sqlite")
    for i in range(10):
        with s.transaction() as tx:
            tx.audit("login", f"user{i}", peer=f"pid {i}")
    yield s
    s.close()


def _sql(store: Store, sql: str, *args) -> None:
    conn = sqlite3.connect(store.path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def test_intact_chain_verifies(store):
    report = store.verify_audit()
    assert (report.ok, report.entries, report.first_bad_seq) == (True, 10, None)
    entries = store.audit_entries()
    assert [e.seq for e in entries] == list(range(1, 11))
    assert entries[0].prev == bytes(32) and all(b.prev == a.digest for a, b in itertools.pairwise(entries))


def test_edited_entry(store):
    _sql(store, "UPDATE audit SET actor = 'mallory' WHERE seq = 4")
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "modified" in report.reason


def test_edited_detail(store):
    _sql(store, """UPDATE audit SET detail = '{"peer": "pid 99"}' WHERE seq = 7""")
    assert store.verify_audit().first_bad_seq == 7


def test_deleted_entry(store):
    _sql(store, "DELETE FROM audit WHERE seq = 5")
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert "missing" in report.reason


def test_deleted_tail(store):
    _sql(store, "DELETE FROM audit WHERE seq >= 9")
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 9)


def test_swapped_entries(store):
    conn = sqlite3.connect(store.path)
    rows = {r[0]: r[1:] for r in conn.execute("SELECT * FROM audit WHERE seq IN (3, 6)")}
    for seq, other in ((3, 6), (6, 3)):
        conn.execute("UPDATE audit SET time=?, event=?, actor=?, detail=?, prev=?, digest=? WHERE seq=?",
                     (*rows[other], seq))
    conn.commit()
    conn.close()
    assert store.verify_audit().first_bad_seq == 3


def test_renumbered_entries(store):
    _sql(store, "UPDATE audit SET seq = 100 WHERE seq = 2")
    report = store.verify_audit()
    assert report.first_bad_seq == 2
