"""pkcs11 layer (see docs/architecture.md)."""
