"""objects layer (see docs/architecture.md)."""
