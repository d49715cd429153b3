"""Node-local persistence: SQLite store, the masking barrier and the audit chain."""

from .audit import AuditEntry, AuditReport
from .barrier import Barrier
from .database import ObjectRow, Store, Transaction

__all__ = ["AuditEntry", "AuditReport", "Barrier", "ObjectRow", "Store", "Transaction"]
