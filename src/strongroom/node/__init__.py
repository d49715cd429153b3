"""The HSM node's cryptographic boundary (in-process API).

``HSM`` owns a data directory; ``HSM.connect()`` returns an ``Application`` whose methods are the PKCS#11
functions plus user management, sharing, audit verification and zeroisation.
"""

from .application import Application
from .hsm import HSM, Settings, State
from .users import Role

__all__ = ["HSM", "Application", "Role", "Settings", "State"]
