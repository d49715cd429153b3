"""Strongroom: a self-hosted, clustered HSM service with PKCS#11 semantics.

The public faces are :mod:`strongroom.client` (the Python SDK), :mod:`strongroom.errors` (one exception per
``CKR_*``) and :mod:`strongroom.vocab` (the standard's names and values); the ``strongroom`` and
``strongroom-cli`` commands are built on them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("strongroom")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
