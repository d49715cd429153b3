"""An application's view of the HSM: the PKCS#11 functions plus user management, sharing and audit.

One :class:`Application` is one client connection. Its methods follow the PKCS#11 3.0 functions of the same
names (``open_session`` is ``C_OpenSession``) and raise the ``CKR_*`` the standard names. The calls live in
modules named after what they do; this class puts them together.
"""

from __future__ import annotations

from .cluster_calls import ClusterCalls
from .key_management import KeyCalls
from .login import LoginCalls
from .operations import OperationCalls
from .user_admin import UserAdminCalls


class Application(LoginCalls, UserAdminCalls, ClusterCalls, KeyCalls, OperationCalls):
    """One application (client connection) of an :class:`~strongroom.node.hsm.HSM`; see the module docs."""
