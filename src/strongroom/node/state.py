"""The node's states as types: what an :class:`~strongroom.node.boundary.HSM` holds in each.

```
  open ──> Running(masking key, barrier, log) ──enter_error──> Failed(reason, held=Running)
    │            │                                                  │
    │            └──────────────zeroize──────────────> Zeroized(reason) <──┘
    └─ a self-test failed ──> Failed(reason, held=Running | None)
```

Only a :class:`Running` node serves: every other state answers ``CKR_DEVICE_ERROR``. A :class:`Failed` node
keeps what it held (its log is still closed with the node, its cluster identity still read); a
:class:`Zeroized` node holds no masking key at all. :class:`State` gives each state's name, as
``get_hsm_info`` reports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..errors import StrongroomError
from ..replication import Change, Outcome, StateMachine
from ..store import Barrier


class State:
    """The names of the node's states (``get_hsm_info``'s ``state``)."""

    OPERATIONAL = "operational"
    ERROR = "error"
    ZEROIZED = "zeroized"


class Log(Protocol):
    """What the node needs of a replicated log (:mod:`strongroom.replication.log`)."""

    machine: StateMachine

    def commit(self, change: Change, timeout_s: float = ...) -> Outcome: ...
    def status(self) -> dict[str, Any]: ...
    def unavailable(self) -> StrongroomError | None: ...
    def close(self) -> None: ...


@runtime_checkable
class MembershipLog(Log, Protocol):
    """A log whose membership can change (:class:`~strongroom.replication.RaftLog`; a node-local log cannot)."""

    def change_membership(self, address: str, *, add: bool, wait_s: float = ...) -> bool: ...


LogFactory = Callable[[StateMachine, bytes], Log]


@dataclass(frozen=True)
class Running:
    """The operational state: the unsealed masking key, the barrier over it and the replicated log.

    Attributes:
        masking_key: the cluster's 32-byte AES-256 masking key, in clear (inside the boundary only).
        barrier: seals and opens store records under ``masking_key``.
        log: the replicated log every change of the cluster's state is committed through.
    """

    name: ClassVar[str] = State.OPERATIONAL
    reason: ClassVar[str] = ""
    masking_key: bytes
    barrier: Barrier
    log: Log


@dataclass(frozen=True)
class Failed:
    """The error state: a self-test or the random source's health test failed.

    Attributes:
        reason: what failed, reported by ``get_hsm_info`` and every refused call.
        held: what the node held when it failed (``None`` if it failed before unsealing): its log is closed
            with the node and its barrier still opens the cluster identity; nothing else uses them.
    """

    name: ClassVar[str] = State.ERROR
    reason: str
    held: Running | None


@dataclass(frozen=True)
class Zeroized:
    """The zeroised state: no masking key, no object, no user; only the audit chain survives."""

    name: ClassVar[str] = State.ZEROIZED
    reason: str


NodeState = Running | Failed | Zeroized


def held(state: NodeState) -> Running | None:
    """The keys and log a node in ``state`` holds (a failed node keeps them; a zeroised one has none)."""
    if isinstance(state, Running):
        return state
    if isinstance(state, Failed):
        return state.held
    return None
