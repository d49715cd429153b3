"""The object record the boundary holds: attributes, key material, owner and sharing."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..vocab import CKA, CKK, CKO
from .attributes import Attributes


@dataclass
class HsmObject:
    """One PKCS#11 object inside the boundary.

    Attributes:
        handle: 64-bit object handle, unique in the cluster and never reused.
        attrs: every attribute the object carries except secret components (see ``material``).
        material: the key material: a secret key's value, a private key's PKCS#8 DER, a public key's
            SubjectPublicKeyInfo DER; ``b""`` for data objects and certificates (their ``CKA_VALUE`` is in attrs).
        owner: username of the crypto user who created it; ``""`` for objects without an owner.
        shared: usernames the owner shared the object with; they may use it, not manage it.
        version: incremented on every change; bound into the masking envelope.
        session: for session objects, the ``(application id, session handle)`` that created it; ``None`` for
            token objects.
    """

    handle: int
    attrs: Attributes
    material: bytes = b""
    owner: str = ""
    shared: frozenset[str] = frozenset()
    version: int = 1
    session: tuple[int, int] | None = field(default=None)

    @property
    def cls(self) -> CKO:
        """``CKA_CLASS``; :func:`~strongroom.objects.attributes.normalize_template` made it a ``CKO``."""
        cls: CKO = self.attrs[CKA.CLASS]
        return cls

    @property
    def key_type(self) -> CKK | None:
        return self.attrs.get(CKA.KEY_TYPE)

    @property
    def is_token(self) -> bool:
        return bool(self.attrs.get(CKA.TOKEN, False))

    @property
    def is_private(self) -> bool:
        return bool(self.attrs.get(CKA.PRIVATE, False))

    def flag(self, cka: CKA) -> bool:
        return bool(self.attrs.get(cka, False))
