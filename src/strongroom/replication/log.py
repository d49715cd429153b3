"""The replicated log: Raft over pysyncobj (:class:`RaftLog`), or a node-local log for a lone in-process HSM
(:class:`LocalLog`). Both hand every committed entry to the same :class:`StateMachine`.

Raft traffic travels over mutual TLS 1.3 (:mod:`.transport`): members present their fleet certificates, or,
in a log assembled without fleet identities, certificates from a CA derived from the masking key
(:mod:`.peer_tls`), so only members take part. The log journal and snapshots live in the node's data directory
under ``raft/``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import msgspec

from ..errors import ArgumentsBad, DeviceError, NodeBehind, NoQuorum, StrongroomError
from .batch import Batch, Waiter, array_header
from .change import ENCODER, Change, Outcome
from .durable import DurableJournal
from .machine import StateMachine
from .peer_tls import PeerTLS, secret_peer_tls
from .transport import transport_class

log = logging.getLogger("strongroom.replication")

DEFAULT_COMMIT_TIMEOUT_S = 3.0
REMOVED_MARKER = "removed"  # in the raft directory of a member that applied its own removal


class _QuietReplays(logging.Filter):
    """pysyncobj reports every re-sent batch of identical entries as a possible divergence; they are not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("truncating already-applied log entries")


logging.getLogger("pysyncobj.syncobj").addFilter(_QuietReplays())


COMPACTION_BYTES = 8 * 1024 * 1024  # journal bytes after which the log is compacted into a snapshot
BUSY_TICK_S = 0.25  # a tick that took this much longer than its wait was busy
BUSY_GRACE_S = 1.5  # after a busy tick, the time left to hear from the leader before calling an election
STARTUP_GRACE_S = 5.0  # a restarted member waits this long for a leader before it may call an election
LEAVE_S = 10.0  # a member applying its own removal stops at the latest this long after
LEAVE_GRACE_S = 3.0  # ...and, once it no longer hears from a leader, no sooner than this long after
MAX_BATCHES_IN_FLIGHT = 2
MAX_BATCH_CHANGES = 256
MAX_BATCH_BYTES = 4 * 1024 * 1024


class LocalLog:
    """A log of one in-process node: entries commit as soon as they are applied locally.

    Args:
        machine: the state machine entries are applied to.
    """

    def __init__(self, machine: StateMachine) -> None:
        self.machine = machine
        self._lock = threading.Lock()

    def commit(self, change: Change, timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S) -> Outcome:
        """Append and apply ``change``; returns its outcome."""
        with self._lock:
            return self.machine.apply(self.machine.applied + 1, ENCODER.encode([change]))[0]

    def unavailable(self) -> StrongroomError | None:
        """A node-local log is always in contact with itself."""
        return None

    def status(self) -> dict[str, Any]:
        return {"role": "leader", "leader": "local", "self": "local", "members": ["local"],
                "term": 0, "commit_index": self.machine.applied, "applied_index": self.machine.applied,
                "has_quorum": True, "ready": True, "endpoints": sorted(set(self.machine.directory().values()))}

    def close(self) -> None:
        pass


def _raft_clock() -> float:
    """pysyncobj's clock (monotonic seconds), which its election deadlines are kept in."""
    from pysyncobj.monotonic import monotonic

    return cast(float, monotonic())  # pysyncobj is untyped


def _import_pysyncobj() -> Any:
    import pysyncobj

    return pysyncobj


class RaftLog:
    """A Raft member (pysyncobj) whose state machine is a node's store.

    Args:
        machine: the state machine.
        raft_dir: directory for the journal, the snapshot and the member list.
        self_address: this node's replication address, ``host:port``.
        peers: the other members' addresses; ignored once the directory holds a member list (membership then
            comes from the log).
        secret: the cluster secret (:func:`cluster_secret`); without ``tls``, the replication channel's
            certificates come from a CA derived from it.
        compaction_entries: the journal is compacted into a snapshot once it holds this many entries (members
            that fall further behind catch up from the snapshot).
        joining: this member was just admitted to an existing cluster: it calls no election before it has
            caught up once (it could not win one, and would unseat the leader).
        tls: the replication channel's contexts (from the node's fleet identity:
            :func:`strongroom.trust.fleet_tls.replication_tls`).
        on_removed: called (on the log's thread) once this member, having applied its own removal (a change
            ``leaving`` it: from then on it serves nothing and calls no election), no longer hears from the
            leader, or ``LEAVE_S`` after; the node's process stops.

    Raises:
        DeviceError: ``CKR_DEVICE_ERROR`` when the replication port cannot be bound.
    """

    def __init__(self, machine: StateMachine, raft_dir: Path, self_address: str, peers: list[str],
                 secret: bytes, *, compaction_entries: int = 20_000, joining: bool = False,
                 tls: PeerTLS | None = None, on_removed: Callable[[], None] | None = None) -> None:
        pso = _import_pysyncobj()
        self.machine = machine
        self.raft_dir = Path(raft_dir)
        self.raft_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.self_address = self_address
        if machine.applied and not (self.raft_dir / "journal").exists() and not (self.raft_dir / "snapshot").exists():
            raise DeviceError("the store holds changes this node's replicated log does not have")
        (self.raft_dir / "self").write_text(self_address + "\n")
        self._journal_bytes = 0
        self._busy = False
        self._started = _raft_clock()
        joining_marker = self.raft_dir / "joining"
        if joining:
            joining_marker.touch()
        self._joining_marker = joining_marker
        self._joining = joining_marker.exists()
        self._removed_marker = self.raft_dir / REMOVED_MARKER
        self.removed = _raft_clock() if self._removed_marker.exists() else 0.0  # when it applied its removal
        self._on_removed = on_removed
        members_file = self.raft_dir / "members.json"
        if members_file.is_file():
            peers = [m for m in json.loads(members_file.read_text()) if m != self_address]
        else:  # recorded before anything else, so a node that stops at once still knows its cluster
            members_file.write_text(json.dumps(sorted({*peers, self_address})))
        self._members_file = members_file
        self._known_members: frozenset[str] = frozenset()
        self._durable: DurableJournal | None = None
        owner = self

        sync_obj: Any = pso.SyncObj
        replicated: Any = pso.replicated

        # pysyncobj is untyped: its class is Any to mypy (subclassing Any is [misc]), its decorator untyped
        class _Member(sync_obj):  # type: ignore[misc]
            @replicated  # type: ignore[untyped-decorator]
            def apply_entry(self, entry: bytes) -> list[Outcome]:
                # The journal lives in memory too: compact it by size as well as by count of entries.
                owner._journal_bytes += len(entry)
                if owner._journal_bytes > COMPACTION_BYTES:
                    owner._journal_bytes = 0
                    self.forceLogCompaction()
                return owner.machine.apply(self.raftLastApplied + 1, entry)

            def _onTick(self, timeToWait: float = 0.0) -> None:
                # Time this member spent busy (applying a long run of entries, installing a snapshot) is not
                # time without a leader: the leader's heartbeats are waiting in the socket. Without this, a
                # member catching up would call an election after every long tick and unseat the leader.
                started = _raft_clock()
                deadline = cast(float, vars(self)["_SyncObj__raftElectionDeadline"])
                if owner.removed:  # leaving: it never calls an election; it stops once the leader let it go
                    if not self._isLeader() and deadline < started:  # a follower no longer hearing its leader
                        if started - owner.removed > LEAVE_GRACE_S:  # (not the pause of a leadership handover)
                            owner.leave()
                        self._SyncObj__raftElectionDeadline = started + BUSY_GRACE_S
                    if started - owner.removed > LEAVE_S:
                        owner.leave()
                elif self.otherNodes and not self.isReady() and (
                        owner._joining or started - owner._started < STARTUP_GRACE_S):
                    # A newcomer's empty log cannot win an election, nor can a restarted member's old one while
                    # a leader is about to send it what it missed: calling one would only unseat that leader.
                    # (When the whole cluster restarts, elections begin after the start-up grace.)
                    self._SyncObj__raftElectionDeadline = started + BUSY_GRACE_S
                elif owner._busy:
                    self._SyncObj__raftElectionDeadline = max(self._SyncObj__raftElectionDeadline,
                                                              started + BUSY_GRACE_S)
                pso.SyncObj._onTick(self, timeToWait)
                owner._busy = _raft_clock() - started > timeToWait + BUSY_TICK_S
                owner.durable(self).sync()  # entries appended this tick, before the next one counts them

            def _SyncObj__sendNextNodeIdx(self, node: Any, reset: bool = False,
                                          nextNodeIdx: int | None = None, success: bool = False) -> None:
                owner.durable(self).sync()  # what this answer acknowledges is on the disk first
                pso.SyncObj._SyncObj__sendNextNodeIdx(self, node, reset, nextNodeIdx, success)

            def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> Any:
                # A follower's refusal never moves the leader's next index for it forward. pysyncobj sends
                # entries optimistically; a late refusal of an optimistic send ("my log ends at n") would
                # otherwise undo the step back over a diverged tail, and a follower that missed entries
                # under write load could keep refusing forever.
                if (isinstance(message, dict) and message.get("type") == "next_node_idx"
                        and message.get("reset") and not message.get("success") and self._isLeader()):
                    current = self._SyncObj__raftNextIndex.get(node)
                    if current is not None and message.get("next_node_idx", 0) > current:
                        message = {**message, "next_node_idx": current}
                return pso.SyncObj._SyncObj__onMessageReceived(self, node, message)

        conf = pso.SyncObjConf(
            appendEntriesUseBatch=False,
            # Messages stay small enough to be received and handled within an election timeout, and above
            # MAX_BATCH_BYTES so that an entry always travels whole.
            appendEntriesBatchSizeBytes=2 * MAX_BATCH_BYTES,
            journalFile=str(self.raft_dir / "journal"),
            fullDumpFile=str(self.raft_dir / "snapshot"),
            serializer=self._save_snapshot,
            deserializer=self._load_snapshot,
            dynamicMembershipChange=True,
            raftMinTimeout=1.0,
            raftMaxTimeout=2.0,
            appendEntriesPeriod=0.1,
            connectionTimeout=3.0,
            connectionRetryTime=0.5,
            leaderFallbackTimeout=3.0,
            logCompactionMinEntries=compaction_entries,
            logCompactionMinTime=3600,
            logCompactionBatchSize=1024 * 1024,
            bindRetryTime=0.2,
            maxBindRetries=25,
        )
        try:
            self._member = _Member(self_address, peers, conf,
                                   transportClass=transport_class(tls or secret_peer_tls(secret)))
        except Exception as exc:
            raise DeviceError(f"cannot start replication on {self_address}: {exc}") from exc
        try:
            self._member.waitBinded()
        except Exception:
            self._member.destroy()
            raise DeviceError(f"cannot bind the replication port {self_address}") from None
        self._refusal: StrongroomError | None = NodeBehind("this HSM is starting; retry")
        self._member.addOnTickCallback(self._on_tick)
        machine.on_applied(self._applied)
        self._fail = pso.FAIL_REASON
        self._pending: list[tuple[Change, Waiter]] = []
        self._pending_lock = threading.Lock()
        self._in_flight = 0

    # ----------------------------------------------------------------- pysyncobj hooks (tick thread)
    def durable(self, member: Any) -> DurableJournal:
        """The member's journal, forced to the disk before it is acted on (made on first use: the journal
        exists once pysyncobj's start-up made it)."""
        if self._durable is None:
            self._durable = DurableJournal(member._SyncObj__raftLog)
        return self._durable

    def _on_tick(self) -> None:
        member = self._member
        self._refusal = self._check_contact()
        if self._joining and member.isReady():
            self._joining = False
            self._joining_marker.unlink(missing_ok=True)
        nodes = frozenset(n.id for n in member.otherNodes) | {self.self_address}
        if nodes != self._known_members:
            self._known_members = nodes
            tmp = self._members_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(sorted(nodes)))
            os.replace(tmp, self._members_file)
        # A lone member commits on its next tick; wake that tick now instead of at the poll timeout.
        if not member.otherNodes and member._isLeader() \
                and member._SyncObj__getCurrentLogIndex() > member.raftCommitIndex:
            notifier = getattr(member, "_SyncObj__pipeNotifier", None)
            if notifier is not None:
                notifier.notify()

    def _save_snapshot(self, path: str, data: tuple[Any, Any, Any]) -> None:
        last, prev, cluster = data
        meta = msgspec.msgpack.encode([list(last), list(prev), sorted(n.id for n in cluster)])
        self.machine.save_snapshot(path, meta)

    def _load_snapshot(self, path: str) -> tuple[Any, Any, Any]:
        from pysyncobj.node import TCPNode

        last, prev, cluster = msgspec.msgpack.decode(self.machine.load_snapshot(path))
        return tuple(last), tuple(prev), [TCPNode(addr) for addr in cluster]

    # ----------------------------------------------------------------- API
    def commit(self, change: Change, timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S) -> Outcome:
        """Replicate ``change`` to a majority and apply it here; returns its outcome.

        Changes from concurrent writers on this node travel together: while a batch is being committed the
        next ones gather, and each batch is one log entry applied in one store transaction (group commit).

        Raises:
            NoQuorum: (retryable) the change was not committed within ``timeout_s`` seconds, or the leader
                changed before it was; sending it again with the same request key is safe.
        """
        waiter = Waiter()
        with self._pending_lock:
            self._pending.append((change, waiter))
            self._pump()
        if not waiter.done.wait(timeout_s):
            self._abandon(waiter.batch)
            raise NoQuorum(f"the change was not committed by a majority of HSMs within {timeout_s:g} s")
        if waiter.error is not None:
            raise waiter.error
        if waiter.outcome is None:  # never: the outcome or the error is set before done
            raise DeviceError("the committed change has no outcome")
        return waiter.outcome

    def _pump(self) -> None:
        """Propose gathered changes while fewer than MAX_BATCHES_IN_FLIGHT batches await their commit (holding
        the pending lock)."""
        while self._pending and self._in_flight < MAX_BATCHES_IN_FLIGHT:
            batch, size = Batch(), 0
            while self._pending and len(batch.members) < MAX_BATCH_CHANGES and size < MAX_BATCH_BYTES:
                change, waiter = self._pending.pop(0)
                encoded = ENCODER.encode(change)
                size += len(encoded)
                waiter.batch = batch
                batch.members.append((encoded, waiter))
            self._in_flight += 1
            entry = b"".join((array_header(len(batch.members)), *(e for e, _ in batch.members)))
            self._member.apply_entry(entry, callback=lambda value, error, batch=batch: self._finished(
                batch, value, error))

    def _abandon(self, batch: Batch | None) -> None:
        """A batch whose commit was not heard of in time frees its place (its late outcome is ignored)."""
        with self._pending_lock:
            if batch is not None and not batch.settled:
                batch.settled = True
                self._in_flight -= 1
                self._pump()

    def _finished(self, batch: Batch, value: Any, error: int) -> None:
        with self._pending_lock:
            if not batch.settled:
                batch.settled = True
                self._in_flight -= 1
            self._pump()
        ok = error == self._fail.SUCCESS and isinstance(value, list) and len(value) == len(batch.members)
        if not ok:
            reason = {self._fail.QUEUE_FULL: "the log's queue is full", self._fail.MISSING_LEADER: "no leader",
                      self._fail.DISCARDED: "the leader changed", self._fail.NOT_LEADER: "the leader changed",
                      self._fail.LEADER_CHANGED: "the leader changed",
                      self._fail.UNKNOWN_OUTCOME: "the leader changed"}.get(error, f"error {error}")
        for i, (_, waiter) in enumerate(batch.members):
            if ok:
                waiter.outcome = value[i]
            else:
                waiter.error = NoQuorum(f"the change was not committed: {reason}")
            waiter.done.set()

    def unavailable(self) -> StrongroomError | None:
        """Why this member may not serve now, or ``None`` (as of the log's last tick, at most ~50 ms ago: this
        is asked on every request)."""
        return self._refusal

    def _check_contact(self) -> StrongroomError | None:
        """Why this member may not serve now, or ``None``: it must have caught up with the leader since it
        started (else ``NodeBehind``) and be in contact with a leader now — the leader with a majority
        connected, or a follower of one (else ``NoQuorum``). A member cut off from the majority, or removed
        from the cluster, stops serving instead of answering from a replica that may be stale (a destroyed
        key, a deleted user)."""
        member = self._member
        if self.removed:
            return NoQuorum("this HSM was removed from its cluster; use another member")
        if not member.isReady():
            return NodeBehind("this HSM is catching up with its cluster; retry")
        if member._isLeader():
            in_contact = bool(member.hasQuorum)
        else:  # a follower hears from its leader at least once per election timeout
            in_contact = (member._getLeader() is not None
                          and member._SyncObj__raftElectionDeadline > _raft_clock())
        if in_contact:
            return None
        return NoQuorum("this HSM is not in contact with a majority of its cluster; retry")

    def ready(self) -> bool:
        return self.unavailable() is None

    def status(self) -> dict[str, Any]:
        """``role`` (leader, follower, candidate), ``leader``, ``self``, ``members`` (replication addresses),
        ``endpoints`` (the members' client endpoints), ``term``, ``commit_index``, ``applied_index``,
        ``has_quorum``, ``ready``."""
        member = self._member
        leader = member._getLeader()
        state = member.getStatus().get("state", 0)
        members = sorted(n.id for n in member.otherNodes | {member.selfNode})
        directory = self.machine.directory()
        return {
            "role": {0: "follower", 1: "candidate", 2: "leader"}.get(state, str(state)),
            "leader": leader.id if leader is not None else None,
            "self": self.self_address,
            "members": members,
            "term": member.raftCurrentTerm,
            "commit_index": member.raftCommitIndex,
            "applied_index": max(self.machine.applied, member.raftLastApplied),
            "has_quorum": member.hasQuorum,
            "ready": self.ready(),
            "endpoints": [directory[m] for m in members if m in directory],
        }

    def change_membership(self, address: str, *, add: bool, wait_s: float = 10.0) -> bool:
        """Add or remove a member; True once the change is committed, False if it was not within ``wait_s``
        seconds (it may still commit: a second member can only acknowledge once it runs, so adding to a
        one-node cluster completes only after the newcomer starts).

        The leader is removed after it hands its leadership to another member.

        Raises:
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a malformed address, or removing a node that is not a member.
            NoQuorum: (retryable) the change was refused (another change is in progress, the leader could not
                hand over) or failed.
        """
        host, _, port = address.rpartition(":")
        if not host or len(address) > 300 or not port.isdigit() or not 0 < int(port) < 65536:
            raise ArgumentsBad(f"a member address is host:port, got {address!r:.80}")
        members = self.status()["members"]
        if (address in members) == add:
            if add:
                return True  # already a member
            raise ArgumentsBad(f"{address} is not a member of this cluster")
        if not add and self._member._getLeader() is not None and self._member._getLeader().id == address:
            self._step_down(address)
        done = threading.Event()
        result: list[Any] = []

        def finished(value: Any, error: int) -> None:
            result.append(error)
            done.set()

        if add:
            self._member.addNodeToCluster(address, callback=finished)
        else:
            self._member.removeNodeFromCluster(address, callback=finished)
        if not done.wait(wait_s):
            return False
        if result[0] == self._fail.REQUEST_DENIED:
            if (address in self.status()["members"]) == add:
                return True
            raise NoQuorum("another membership change is in progress; retry")
        if result[0] != self._fail.SUCCESS:
            raise NoQuorum(f"the membership change was not committed (reason {result[0]})")
        return True

    def _step_down(self, address: str, wait_s: float = 10.0) -> None:
        """Have the leader at ``address`` hand its leadership to another member (Raft TimeoutNow), asking it
        through the log when it is not this node."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            leader = self._member._getLeader()
            if leader is not None and leader.id != address:
                return
            if leader is not None:
                if self._member._isLeader():
                    self._member.transferLeadership()
                else:
                    self.commit(Change(step_down=address))
            time.sleep(0.3)
        raise NoQuorum(f"the leader {address} did not hand over its leadership in time; retry")

    def _applied(self, change: Change, outcome: Outcome) -> None:  # the log's thread
        if change.leaving == self.self_address and not self.removed and not self._joining:
            # It serves no client from now on and calls no election, but still acknowledges entries until the
            # leader drops it (the cluster keeps its majority meanwhile, a two-member one too); then it stops.
            # A newcomer catching up skips the entries before its admission: one may have removed an earlier
            # member at the address it now has.
            self.removed = _raft_clock()
            self._removed_marker.touch()
            log.warning("this HSM (%s) is being removed from its cluster", self.self_address)
            if self._member._isLeader():
                self._member.transferLeadership()
        if change.step_down == self.self_address and self._member._isLeader():
            self._member.transferLeadership()
        if change.compact:
            self._member.forceLogCompaction()

    def leave(self) -> None:  # the log's thread
        """The member is out of the membership: its process stops (``on_removed``), once."""
        if self._on_removed is not None:
            log.warning("this HSM (%s) was removed from its cluster: it stops", self.self_address)
            self._on_removed()
            self._on_removed = None

    def close(self) -> None:
        try:
            self._member.destroy()
        except Exception:  # noqa: S110 - closing anyway
            pass
