"""Test PKI: the product's certificate helpers, with the names the tests use."""

from strongroom.protocol.certificates import CertificateAuthority as CA
from strongroom.protocol.certificates import Issued

__all__ = ["CA", "Issued"]
