"""Strongroom's own values in the PKCS#11 vendor-defined ranges (PKCS#11 3.0 §3.7: ``*_VENDOR_DEFINED``)."""

from __future__ import annotations

from .vocab import CKU

CKU_APPLIANCE = 0x80000001
"""User type of the appliance identity (the control plane's limited user: health, backup, audit export)."""

USER_TYPES = {int(CKU.SO), int(CKU.USER), CKU_APPLIANCE}
