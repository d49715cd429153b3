"""Strongroom's own values in the PKCS#11 vendor-defined ranges (PKCS#11 3.0 §3.7: ``*_VENDOR_DEFINED``), and the
roles an HSM user has, with the PKCS#11 user type each logs in as.

Source of the role names: the service Strongroom matches (ARCHITECTURE.md, "Users and roles").
"""

from __future__ import annotations

from enum import Enum

from .vocab import CKR, CKU

CKU_APPLIANCE = 0x80000001
"""User type of the appliance identity (the control plane's limited user: health, backup, audit export)."""

USER_TYPES = {int(CKU.SO), int(CKU.USER), CKU_APPLIANCE}

CKR_VENDOR_NO_QUORUM = CKR.VENDOR_DEFINED | 0x101
"""``0x80000101``: a write was not committed by a majority of HSMs in time (:class:`~strongroom.errors.NoQuorum`)."""

CKR_VENDOR_NODE_BEHIND = CKR.VENDOR_DEFINED | 0x102
"""``0x80000102``: the HSM has not yet applied the client's latest write (:class:`~strongroom.errors.NodeBehind`)."""

CKR_VENDOR_NAMES: dict[int, str] = {CKR_VENDOR_NO_QUORUM: "CKR_VENDOR_NO_QUORUM",
                                    CKR_VENDOR_NODE_BEHIND: "CKR_VENDOR_NODE_BEHIND"}
"""The names of Strongroom's vendor-defined ``CKR_*`` values, as logs and error messages print them."""


class Role(str, Enum):  # noqa: UP042 - a StrEnum would change what str() and format() of a member print
    """The role of an HSM user; the value is the name stored in the user's record and typed at the CLI.

    ``unactivated-admin`` exists before activation and may only activate (it then becomes ``admin``); ``admin``
    manages users and policy and cannot use keys; ``crypto-user`` owns and uses keys and cannot manage users;
    ``appliance`` is the control plane's identity (health, backup and audit export only).
    """

    UNACTIVATED_ADMIN = "unactivated-admin"
    ADMIN = "admin"
    CRYPTO_USER = "crypto-user"
    APPLIANCE = "appliance"

    @property
    def user_type(self) -> int:
        """The PKCS#11 user type that logs in with this role: ``CKU_SO`` for both admins, ``CKU_USER`` for a
        crypto user, :data:`CKU_APPLIANCE` for the appliance."""
        if self in (Role.ADMIN, Role.UNACTIVATED_ADMIN):
            return int(CKU.SO)
        if self is Role.CRYPTO_USER:
            return int(CKU.USER)
        return CKU_APPLIANCE


LOGIN_ROLES: dict[str, int] = {role.value: role.user_type for role in (Role.CRYPTO_USER, Role.ADMIN, Role.APPLIANCE)}
"""Role name → PKCS#11 user type, for the roles a caller names when logging in (an unactivated admin logs in as
``admin``): ``{"crypto-user": CKU_USER, "admin": CKU_SO, "appliance": CKU_APPLIANCE}``."""

AGENT_UNIT = "strongroom-agent"
"""The organizational unit (``OU``) of a client certificate issued to a client agent: a node records the
application the agent names at login (its verified ``SO_PEERCRED``) as ``client`` only from such a peer."""
