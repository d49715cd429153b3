"""An application's view of the HSM: the PKCS#11 functions plus user management, sharing and audit.

One :class:`Application` is one client connection of an :class:`~strongroom.node.boundary.HSM`, made with
``Application(hsm, peer)``. Its methods follow the PKCS#11 3.0 functions of the same names (``open_session``
is ``C_OpenSession``) and raise the ``CKR_*`` the standard names. Where each call lives:

============================  ==========================================================================
module                        calls
============================  ==========================================================================
:mod:`.session_calls`         sessions and login (§5.6): ``open_session`` … ``login``, ``logout``
:mod:`.object_calls`          objects (§5.7): create, copy, destroy, attributes, find; ``share``, ``key_info``
:mod:`.crypto_calls`          encrypt, decrypt, digest, sign, verify (§5.8–§5.13), single-part ``*_once``
:mod:`.key_calls`             generate, generate pair, wrap, unwrap, derive (§5.14–§5.18), random (§5.19)
:mod:`.admin_calls`           users, activation, audit export, ``hsm_info``, zeroisation (vendor)
:mod:`.cluster_calls`         membership, cluster certificate, ``cluster_status`` (vendor)
:mod:`.base`                  the connection's state and the checks every call makes
============================  ==========================================================================

Calls that commit through the log on a client's behalf (the catalogue's ``write`` records) take the client
request's :class:`~strongroom.node.commit.RequestContext` as the keyword ``request``; :func:`call` passes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import StrongroomError, UserNotLoggedIn
from ..protocol.calls import CALL_SPECS
from ..vocab import CKK
from .admin_calls import AdminCalls
from .boundary import HSM
from .cluster_calls import ClusterCalls
from .commit import RequestContext
from .crypto_calls import CryptoCalls
from .key_calls import KeyCalls
from .object_calls import ObjectCalls
from .peer import PeerIdentity
from .session_calls import SessionCalls
from .sessions import OpKind


class Application(SessionCalls, ObjectCalls, CryptoCalls, KeyCalls, AdminCalls, ClusterCalls):
    """One application (client connection) of an :class:`~strongroom.node.boundary.HSM`; see the module docs.

    Args:
        hsm: the node it is an application of; it counts the application among its own.
        peer: who the client is (address, certificate subject and fingerprint), recorded in every audit entry of
            its calls; a bare address for a connection without a certificate.
    """

    def __init__(self, hsm: HSM, peer: PeerIdentity | str = "") -> None:
        super().__init__(hsm, peer)

    # ----------------------------------------------------------------- questions of the node server
    def is_rsa_key(self, handle: Any) -> bool:
        """Whether ``handle`` names an RSA key (its private-key operations block: the server runs them on a
        thread). False for anything else, including a handle that names nothing."""
        try:
            return self.hsm.repository.get_object(handle).key_type is CKK.RSA
        except (TypeError, StrongroomError):
            return False

    def active_key_is_rsa(self, session: Any, kind: OpKind) -> bool:
        """Whether the ``kind`` operation active in ``session`` uses an RSA key (False when there is none)."""
        try:
            active = self.sessions[session].ops[kind]
        except (KeyError, TypeError):
            return False
        return self.is_rsa_key(active.key)


def call(app: Application, name: str, args: list[Any], kwargs: dict[str, Any], request: RequestContext) -> Any:
    """Run the call ``name`` of ``app`` for a client ``request``.

    The one place the login rule is kept: a call whose catalogue record is not ``before_login`` is refused
    while no user is logged in, whatever its arguments (it is checked as the call runs, after any login the
    client sent before it). A call that writes through the log gets the request context (its key makes the
    write exactly-once; the index it committed at comes back in it).

    Raises:
        UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` for a call that needs a login, without one.
        KeyError: ``name`` is not a call of the catalogue.
    """
    spec = CALL_SPECS[name]
    if not spec.before_login and app.user is None:
        raise UserNotLoggedIn(f"{name} needs a logged-in user")
    method: Callable[..., Any] = getattr(app, name)
    if spec.write:
        return method(*args, request=request, **kwargs)
    return method(*args, **kwargs)
