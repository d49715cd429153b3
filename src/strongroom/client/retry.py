"""Retrying on another member: the client's rule for errors that say the same request may succeed elsewhere.

An error whose class is ``retryable`` (a lost connection, a member that cannot commit or has not caught up)
moves the request on to the next member; any other error is the answer. The balancer applies this rule per call
over its live connections; :func:`on_any_member` applies it to a whole exchange that must run on one connection
of its own (joining a cluster: the challenge belongs to the connection that asked for it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ..errors import ArgumentsBad, StrongroomError

T = TypeVar("T")


async def on_any_member(endpoints: Sequence[str], attempt: Callable[[str], Awaitable[T]], *, deadline_s: float,
                        pause_s: float = 0.5) -> T:
    """Run ``attempt(endpoint)`` on each member in turn until one answers.

    A retryable :class:`~strongroom.errors.StrongroomError` moves on to the next endpoint; after a round in which
    every endpoint failed so, wait ``pause_s`` seconds and go round again, until ``deadline_s`` seconds from now.

    Raises:
        StrongroomError: at once, the first error that is not retryable; after the deadline, the last retryable
            one.
        ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for no endpoints.
    """
    if not endpoints:
        raise ArgumentsBad("no member to try")
    deadline = time.monotonic() + deadline_s
    while True:
        error: StrongroomError | None = None
        for endpoint in endpoints:
            try:
                return await attempt(endpoint)
            except StrongroomError as exc:
                if not exc.retryable:
                    raise
                error = exc
        if error is not None and time.monotonic() > deadline:
            raise error
        await asyncio.sleep(pause_s)
