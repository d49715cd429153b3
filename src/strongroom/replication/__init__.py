"""replication layer (see docs/architecture.md)."""
