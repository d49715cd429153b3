"""Threads that run the node's blocking calls (RSA private-key operations, key generation, password hashing,
writes waiting for the log), shared fairly between the connections that ask for them.

Each call is queued under its owner (the connection that asked). A free thread takes the next call of the owner
with the fewest calls running, the one that waited longest among equals, and sends that owner to the back of
the line: a connection that floods the node with logins or RSA signatures gets the threads only while nobody
else waits, and another connection's call starts as soon as one thread is free, whatever the flood queued.
No future is made for a call: its answer goes back to the event loop through the connection that asked
(``_Connection._work``). The threads start with the pool.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger(__name__)

_Call = tuple[Callable[..., Any], tuple[Any, ...]]


class Workers:
    """A fixed set of threads taking calls from a fair queue (see the module docs).

    Args:
        count: threads (at least 1).
        name: the threads' name prefix (``name-0`` …).
    """

    def __init__(self, count: int, name: str) -> None:
        self.lock = threading.Lock()
        self.ready = threading.Condition(self.lock)
        self.waiting: dict[Hashable, deque[_Call]] = {}  # owner → its queued calls; dict order is the line
        self.running: dict[Hashable, int] = {}  # owner → its calls running now
        self.closed = False
        self.threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
                        for i in range(max(1, count))]
        for thread in self.threads:
            thread.start()

    def submit(self, owner: Hashable, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a worker thread in ``owner``'s turn; what it returns is dropped and what it
        raises is logged.

        Raises:
            RuntimeError: after :meth:`shutdown`.
        """
        with self.lock:
            if self.closed:
                raise RuntimeError("the node's workers are stopped")
            self.waiting.setdefault(owner, deque()).append((fn, args))
            self.ready.notify()

    def shutdown(self) -> None:
        """Drop the calls not yet started and let every thread end after its current call."""
        with self.lock:
            self.closed = True
            self.waiting.clear()
            self.ready.notify_all()

    def _take(self) -> tuple[Hashable, _Call]:
        """The next call (holding the lock, with calls waiting): the owner with the fewest calls running, the
        earliest in line among equals; it goes to the back of the line."""
        owner = min(self.waiting, key=lambda o: self.running.get(o, 0))
        calls = self.waiting.pop(owner)
        call = calls.popleft()
        if calls:
            self.waiting[owner] = calls
        self.running[owner] = self.running.get(owner, 0) + 1
        return owner, call

    def _run(self) -> None:
        while True:
            with self.lock:
                while not self.waiting and not self.closed:
                    self.ready.wait()
                if self.closed:
                    return
                owner, (fn, args) = self._take()
            try:
                fn(*args)
            except Exception:
                log.exception("a blocking call failed")
            finally:
                with self.lock:
                    left = self.running[owner] - 1
                    if left:
                        self.running[owner] = left
                    else:
                        del self.running[owner]
