"""Values the benchmarks share. Imports no other bench module, so any of them may import it."""

from __future__ import annotations

P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")  # CKA_EC_PARAMS of P-256: the DER OID of secp256r1 (prime256v1)
