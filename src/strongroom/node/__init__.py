"""The HSM node's cryptographic boundary (in-process API).

``HSM`` owns a data directory; ``Application(hsm)`` is one client connection of it, whose methods are the
PKCS#11 functions plus user management, sharing, audit verification and zeroisation.
"""

from .application import Application
from .boundary import HSM, Settings
from .commit import RequestContext
from .state import State
from .users import Role

__all__ = ["HSM", "Application", "RequestContext", "Role", "Settings", "State"]
