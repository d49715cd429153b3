"""Test-only access inside the boundary: reading key material to prove it never reaches disk in clear.

Nothing outside the test suite imports this module; no transport exposes it.
"""

from __future__ import annotations

from .boundary import HSM


def key_material(hsm: HSM, handle: int) -> bytes:
    """The stored material of an object: a secret key's value, a private key's PKCS#8 DER."""
    return hsm.repository.get_object(handle).material
