"""The replicated state machine: every change to token objects, users and settings is a Raft log entry applied
in order to each node's store (see docs/architecture.md)."""

from .change import Change, Outcome
from .log import LocalLog, RaftLog, cluster_secret
from .machine import StateMachine

__all__ = ["Change", "LocalLog", "Outcome", "RaftLog", "StateMachine", "cluster_secret"]
