"""Raft's persistent state on the disk before a member acts on it.

pysyncobj keeps its log in a memory-mapped journal file and its term and vote in a small file it rewrites, and
forces neither to the disk: a crashed process loses nothing (the page cache survives it), a machine that loses
power may. Raft counts an entry as committed once a majority *stored* it (Raft paper §5.3, Figure 2: "updated
on stable storage before responding to RPCs"), so a member here:

- forces the journal to the disk (``msync``) before it acknowledges entries to the leader, and the leader
  before it counts its own entries towards a commit (at the end of the tick that appended them);
- writes its term and vote to a new file, forces it, renames it over the old one and forces the directory.

The cost is one ``msync`` per batch of entries, only when the journal changed (reads and cryptography write
nothing to the log).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_durably(path: Path, data: bytes) -> None:
    """Replace the file at ``path`` with ``data``, forced to the disk with its directory entry."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class DurableJournal:
    """Tracks changes to one pysyncobj ``FileJournal`` and forces them to the disk on :meth:`sync`.

    Args:
        journal: the member's journal (``SyncObj._SyncObj__raftLog``).
    """

    _CHANGES = ("add", "clear", "deleteEntriesFrom", "deleteEntriesTo")

    def __init__(self, journal: Any) -> None:
        from pysyncobj.pickle import dumps

        self.journal = journal
        self.dirty = True  # what pysyncobj wrote before this was installed
        self.syncs = 0
        for name in self._CHANGES:
            setattr(journal, name, self._marking(getattr(journal, name)))
        meta = getattr(journal, "_FileJournal__metaStorer", None)
        if meta is not None:
            path = Path(meta.getPath())
            meta.storeMeta = lambda values: write_durably(path, dumps(values))

    def _marking(self, change: Callable[..., Any]) -> Callable[..., Any]:
        def changed(*args: Any, **kwargs: Any) -> Any:
            self.dirty = True
            return change(*args, **kwargs)

        return changed

    def sync(self) -> None:
        """Force the journal to the disk if it changed since the last call (from the member's tick thread)."""
        if self.dirty:
            self.dirty = False
            self.journal.flush()
            self.syncs += 1
