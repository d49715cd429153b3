"""Threads that run the node's blocking calls (RSA private-key operations, key generation, password hashing).

Lighter than :class:`concurrent.futures.ThreadPoolExecutor` on the hot path: a call is handed over through
one C-implemented queue and no future is made for it, since its answer goes back to the event loop through
the connection that asked (``_Connection._work``). The threads start with the pool.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Workers:
    """A fixed set of threads taking calls from one queue.

    Args:
        count: threads (at least 1).
        name: the threads' name prefix (``name-0`` …).
    """

    def __init__(self, count: int, name: str) -> None:
        self.queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self.closed = False
        self.threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
                        for i in range(max(1, count))]
        for thread in self.threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a worker thread; what it returns is dropped and what it raises is logged.

        Raises:
            RuntimeError: after :meth:`shutdown`.
        """
        if self.closed:
            raise RuntimeError("the node's workers are stopped")
        self.queue.put((fn, args))

    def shutdown(self) -> None:
        """Drop the calls not yet started and let every thread end after its current call."""
        self.closed = True
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass
        for _ in self.threads:
            self.queue.put(None)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:
                log.exception("a blocking call failed")
