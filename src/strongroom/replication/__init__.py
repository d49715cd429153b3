"""The replicated state machine: every change to token objects, users and settings is a Raft log entry applied
in order to each node's store (see docs/architecture.md)."""

from .change import Change, Outcome
from .log import LocalLog, RaftLog
from .machine import StateMachine
from .peer_tls import cluster_secret

__all__ = ["Change", "LocalLog", "Outcome", "RaftLog", "StateMachine", "cluster_secret"]
