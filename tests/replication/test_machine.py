"""The replicated state machine (replication/machine.py) applying changes to a real SQLite store, without a log."""

from __future__ import annotations

import pytest

from strongroom.errors import DeviceMemory
from strongroom.replication.change import ENCODER, Change
from strongroom.replication.machine import StateMachine
from strongroom.store import ObjectRow, Store
from strongroom.vocab import CKR


def row(handle: int, version: int = 1, label: str = "key") -> ObjectRow:
    return ObjectRow(handle, version, 4, 0x1F, label, b"\x01", "alice", b"sealed-%d" % handle)


def entry(*changes: Change) -> bytes:
    return ENCODER.encode(list(changes))


def put(*handles: int, request: bytes = b"", **fields) -> Change:
    change = Change(request=request, **fields)
    for handle in handles:
        change.put_object(row(handle), new=True)
    return change


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.sqlite")
    yield s
    s.close()


@pytest.fixture
def machine(store):
    return StateMachine(store)


def test_an_entry_applies_its_changes_in_one_transaction_and_records_its_index(machine, store):
    outcomes = machine.apply(1, entry(put(10, 11), put(12)))
    assert [(o.index, o.ckr, o.created) for o in outcomes] == [(1, 0, [10, 11]), (1, 0, [12])]
    assert [r.handle for r in store.iter_objects()] == [10, 11, 12]
    assert store.get_object(11) == row(11)
    assert machine.applied == store.applied_index() == 1
    assert machine.token_objects == store.count_objects() == 3


def test_an_entry_at_or_below_the_applied_index_is_a_replay_and_changes_nothing(machine, store):
    machine.apply(1, entry(put(10)))
    machine.apply(2, entry(put(11)))
    assert machine.apply(2, entry(put(99))) == []
    assert machine.apply(1, entry(put(98))) == []
    assert [r.handle for r in store.iter_objects()] == [10, 11]
    assert StateMachine(store).applied == 2  # a restarted node skips them too


def test_a_request_key_applies_once_and_answers_again_with_its_first_outcome(machine, store):
    (first,) = machine.apply(1, entry(put(10, request=b"k" * 16)))
    (again,) = machine.apply(2, entry(put(11, request=b"k" * 16)))
    assert not first.duplicate and again.duplicate
    assert (again.index, again.created) == (1, [10])
    assert [r.handle for r in store.iter_objects()] == [10]
    (after_restart,) = StateMachine(store).apply(3, entry(put(12, request=b"k" * 16)))
    assert after_restart.duplicate and after_restart.index == 1
    (other,) = machine.apply(4, entry(put(13, request=b"j" * 16)))
    assert not other.duplicate and other.index == 4


def test_a_request_key_sent_twice_in_one_entry_applies_once(machine, store):
    first, again = machine.apply(1, entry(put(10, request=b"k" * 16), put(11, request=b"k" * 16)))
    assert not first.duplicate and again.duplicate
    assert [r.handle for r in store.iter_objects()] == [10]


def test_a_change_whose_read_versions_moved_is_refused_and_writes_only_an_audit_entry(machine, store):
    machine.apply(1, entry(put(10)))
    stale = Change()
    stale.put_object(row(10, version=2, label="renamed"), new=False, expect=0)
    audit_before = len(store.audit_entries())
    (outcome,) = machine.apply(2, entry(stale))
    assert outcome.conflict and outcome.ckr == 0x5 and outcome.index == 0
    assert store.get_object(10) == row(10)
    assert [e.event for e in store.audit_entries()[audit_before:]] == ["change-refused"]
    fresh = Change()
    fresh.put_object(row(10, version=2, label="renamed"), new=False, expect=1)
    (outcome,) = machine.apply(3, entry(fresh))
    assert outcome.ckr == 0 and store.get_object(10).label == "renamed"


def test_a_user_change_with_a_stale_version_is_refused(machine, store):
    create = Change()
    create.put_user("bob", 1, b"env1", expect=0)
    machine.apply(1, entry(create))
    stale = Change()
    stale.put_user("bob", 2, b"env2", expect=0)
    (outcome,) = machine.apply(2, entry(stale))
    assert outcome.conflict
    assert store.users() == [("bob", 1, b"env1")]


def test_a_change_past_the_token_capacity_is_refused_with_device_memory(machine, store):
    machine.apply(1, entry(put(10, 11, max_objects=3)))
    (full,) = machine.apply(2, entry(put(12, 13, max_objects=3)))
    assert full.ckr == DeviceMemory.ckr == CKR.DEVICE_MEMORY and not full.conflict
    assert machine.token_objects == store.count_objects() == 2
    replace = put(12, max_objects=3)
    replace.delete_object(10)
    outcomes = machine.apply(3, entry(replace, put(13, max_objects=3)))  # counted change by change
    assert [o.ckr for o in outcomes] == [0, 0] and machine.token_objects == store.count_objects() == 3


def test_deletions_handles_directory_and_admissions_are_applied(machine, store):
    machine.apply(1, entry(put(10, 11)))
    change = Change(reserve_handles=5, directory={"10.0.0.1:7000": "10.0.0.1:2225"}, admit=["aa", "bb"])
    change.delete_object(10)
    (outcome,) = machine.apply(2, entry(change))
    (second,) = machine.apply(3, entry(Change(reserve_handles=1, directory={"10.0.0.1:7000": ""}, admit=["-aa"])))
    assert second.first_handle == outcome.first_handle + 5
    assert [r.handle for r in store.iter_objects()] == [11]
    assert machine.directory() == {} and machine.admitted() == {"bb"}


def test_an_unreadable_entry_is_skipped_and_recorded(machine, store):
    assert machine.apply(1, b"\xc1 not msgpack") == []
    assert machine.applied == 1
    assert store.audit_entries()[-1].event == "log-entry-unreadable"
    assert machine.apply(2, entry(put(10)))[0].index == 2


def test_listeners_hear_applied_changes_and_every_advance(machine):
    heard, advanced = [], []
    machine.on_applied(lambda change, outcome: heard.append((change.created, outcome.index)))
    machine.on_advance(advanced.append)
    machine.on_applied(lambda change, outcome: 1 / 0)  # a failing listener does not stop the log
    machine.apply(1, entry(put(10)))
    machine.apply(2, entry(put(11, request=b"k"), put(12, request=b"k")))
    machine.apply(3, b"garbage")
    assert heard == [([10], 1), ([11], 2)]  # the duplicate is not heard twice
    assert advanced == [1, 2, 3]


def test_a_snapshot_carries_the_replicated_state_to_another_store(machine, store, tmp_path):
    users = Change()
    users.put_user("bob", 1, b"env")
    machine.apply(1, entry(put(10, 11, request=b"k"), users))
    machine.apply(2, entry(Change(directory={"a:1": "a:2"})))
    machine.save_snapshot(tmp_path / "snap", b"raft-meta")
    assert Store.snapshot_info(tmp_path / "snap") == (2, b"raft-meta")

    other = Store(tmp_path / "other.sqlite")
    try:
        restored = StateMachine(other)
        resets, advanced = [], []
        restored.on_reset(lambda: resets.append(1))
        restored.on_advance(advanced.append)
        assert restored.load_snapshot(tmp_path / "snap") == b"raft-meta"
        assert list(other.iter_objects()) == list(store.iter_objects())
        assert other.users() == store.users() == [("bob", 1, b"env")]
        assert restored.directory() == {"a:1": "a:2"}
        assert (restored.applied, restored.token_objects, resets, advanced) == (2, 2, [1], [2])
        assert other.audit_entries()[-1].event == "snapshot-install"
        (again,) = restored.apply(3, entry(put(12, request=b"k")))  # request keys travel with the snapshot
        assert again.duplicate and again.index == 1
    finally:
        other.close()


def test_a_snapshot_older_than_the_store_is_not_installed(machine, store, tmp_path):
    machine.apply(1, entry(put(10)))
    machine.save_snapshot(tmp_path / "snap", b"old")
    machine.apply(2, entry(put(11)))
    assert machine.load_snapshot(tmp_path / "snap") == b"old"
    assert machine.applied == 2 and [r.handle for r in store.iter_objects()] == [10, 11]


def test_the_cluster_mode_is_set_once_by_the_founding_change_and_travels_in_snapshots(machine, store, tmp_path):
    assert machine.mode() == "FIPS"  # a cluster founded before modes existed
    (founded,) = machine.apply(1, entry(put(10, mode="NON_FIPS")))
    assert founded.ckr == 0 and machine.mode() == "NON_FIPS"
    (changed,) = machine.apply(2, entry(put(11, mode="FIPS")))
    assert (changed.index, changed.conflict, changed.message) == (
        0, True, "the cluster's mode is NON_FIPS; it never changes")
    assert machine.mode() == "NON_FIPS" and [r.handle for r in store.iter_objects()] == [10]
    machine.save_snapshot(tmp_path / "snap", b"meta")
    other = Store(tmp_path / "joiner.sqlite")
    try:
        joiner = StateMachine(other)
        joiner.load_snapshot(tmp_path / "snap")
        assert joiner.mode() == "NON_FIPS"
    finally:
        other.close()
