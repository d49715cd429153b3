"""Cluster membership calls: a new HSM joins through a member, members leave, anyone reads the status."""

from __future__ import annotations

import secrets
from typing import Any

from ..errors import (
    ArgumentsBad,
    FunctionNotSupported,
    NoQuorum,
    OperationActive,
    OperationNotInitialized,
    StrongroomError,
)
from ..replication import Change
from ..trust import cluster_certificate, fleet, join_proof, masking_key
from . import arguments
from .base import ApplicationBase
from .commit import local_write
from .state import MembershipLog
from .users import Role

# Log entries past which a join first compacts the members' journals.
COMPACT_BEFORE_JOIN = 1000


class ClusterCalls(ApplicationBase):
    _join_challenge: bytes | None = None

    def cluster_status(self) -> dict[str, Any]:
        """The replicated log as this node sees it (needs no login).

        Returns:
            ``role`` (leader, follower, candidate), ``leader`` and ``self`` (replication addresses),
            ``members``, ``endpoints`` (client endpoints of the members), ``commit_index``, ``applied_index``,
            ``has_quorum``, ``ready``.
        """
        self.hsm.require_operational()
        return self.hsm.log.status()

    def join_challenge(self) -> bytes:
        """A fresh 32-byte challenge for :meth:`join_cluster` on this connection."""
        self.hsm.require_operational()
        self._join_challenge = secrets.token_bytes(join_proof.CHALLENGE_BYTES)
        return self._join_challenge

    def join_cluster(self, handle: int, certificate: bytes, address: str, signature: bytes) -> dict[str, Any]:
        """Admit a new HSM (admins and the appliance user, or any HSM whose fleet certificate the control plane
        admitted with :meth:`admit_member`): check its fleet certificate and its signature over this
        connection's challenge, add its replication ``address`` to the membership, and wrap the masking key to
        its identity key.

        Returns:
            ``cluster_id``, ``members`` (replication addresses, the newcomer's included), ``ephemeral`` and
            ``wrapped_key`` (see :func:`strongroom.trust.masking_key.wrap_masking_key`).

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` without an admin or appliance login.
            OperationNotInitialized: ``CKR_OPERATION_NOT_INITIALIZED`` without a challenge first.
            SignatureInvalid: ``CKR_SIGNATURE_INVALID`` for a certificate not from this fleet or a bad signature.
            FunctionNotSupported: ``CKR_FUNCTION_NOT_SUPPORTED`` on a node without a fleet identity or log.
            NoQuorum: (retryable) the membership change was not committed.
        """
        self._session(handle)
        certificate = arguments.data(certificate, "certificate")
        admitted = ""
        if self.role not in (Role.ADMIN, Role.APPLIANCE):
            admitted = fleet.fingerprint(certificate)
            if admitted not in self.hsm.machine.admitted():
                self._require_role(Role.ADMIN, Role.APPLIANCE)  # raises: neither logged in nor admitted
        signature = arguments.data(signature, "signature")
        address = arguments.text(address, "address")
        challenge, self._join_challenge = self._join_challenge, None
        if challenge is None:
            raise OperationNotInitialized("ask for a join challenge first")
        hsm = self.hsm
        log = hsm.log
        if hsm.identity is None or not isinstance(log, MembershipLog):
            raise FunctionNotSupported("this HSM has no fleet identity or replicated log")
        key = join_proof.verify_newcomer(hsm.identity.fleet_ca, certificate, signature, challenge,
                                         hsm.cluster_id, address)
        if admitted:  # an admission serves one join; withdrawn while the membership still has its majority
            hsm.commit(Change(admit=["-" + admitted]))
        if hsm.machine.applied > COMPACT_BEFORE_JOIN:
            # the newcomer then catches up from one snapshot, not entry by entry
            hsm.commit(Change(compact=True))
        # A one-node cluster commits a second member only once the newcomer runs: do not wait for that long.
        committed = log.change_membership(address, add=True, wait_s=2.0)
        point, wrapped = masking_key.wrap_masking_key(hsm.masking_key, key, hsm.cluster_id)
        with local_write(hsm.store) as tx:
            tx.audit("member-add", self._actor(), address=address, committed=committed, peer=self.peer)
        members = sorted(set(log.status()["members"]) | {address})
        return {"cluster_id": hsm.cluster_id, "members": members, "ephemeral": point, "wrapped_key": wrapped}

    def admit_member(self, handle: int, certificate: bytes) -> str:
        """Let the HSM holding this fleet certificate join without a login (the appliance user: the control
        plane adding an HSM). Returns the certificate's SHA-256 fingerprint; the admission ends with the join.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` without the appliance login.
            SignatureInvalid: ``CKR_SIGNATURE_INVALID`` for a certificate this fleet's CA did not issue.
            NoQuorum: (retryable) the admission was not committed.
        """
        self._session(handle)
        self._require_role(Role.APPLIANCE)
        certificate = arguments.data(certificate, "certificate")
        hsm = self.hsm
        if hsm.identity is None:
            raise FunctionNotSupported("this HSM has no fleet identity")
        fleet.verify_fleet_certificate(hsm.identity.fleet_ca, certificate)
        admitted = fleet.fingerprint(certificate)
        change = Change(admit=[admitted])
        change.add_audit("member-admit", self._actor(), fingerprint=admitted, peer=self.peer)
        hsm.commit(change)
        return admitted

    def cluster_csr(self) -> str:
        """The cluster's certificate signing request (PEM), for its owner to sign (needs no login).

        Raises:
            FunctionNotSupported: ``CKR_FUNCTION_NOT_SUPPORTED`` for a cluster without a cluster key (not made by
                a control plane).
        """
        self.hsm.require_operational()
        identity = self.hsm.cluster_identity()
        if identity is None:
            raise FunctionNotSupported("this cluster has no cluster key (it was not made by a control plane)")
        return identity.csr.decode()

    def initialize_cluster(self, handle: int, certificate: str, trust_anchor: str) -> None:
        """``InitializeCluster`` on the HSM side (the appliance user): store the owner's signed cluster certificate
        and trust anchor in the replicated state, after which every HSM serves TLS under the cluster key.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` without the appliance login.
            FunctionNotSupported: ``CKR_FUNCTION_NOT_SUPPORTED`` for a cluster without a cluster key.
            OperationActive: ``CKR_OPERATION_ACTIVE`` when the cluster is already initialised.
            ArgumentsBad, SignatureInvalid: see :func:`strongroom.trust.cluster_certificate.initialized`.
        """
        self._session(handle)
        self._require_role(Role.APPLIANCE)
        certificate_pem = arguments.text(certificate, "certificate").encode()
        anchor_pem = arguments.text(trust_anchor, "trust anchor").encode()
        identity = self.hsm.cluster_identity()
        if identity is None:
            raise FunctionNotSupported("this cluster has no cluster key (it was not made by a control plane)")
        if identity.certificate:
            raise OperationActive("the cluster is already initialised")
        done = cluster_certificate.initialized(identity, certificate_pem, anchor_pem)
        change = Change(cluster_identity=done.encode())
        change.add_audit("cluster-initialize", self._actor(), fingerprint=fleet.fingerprint(certificate_pem),
                         peer=self.peer)
        self.hsm.commit(change)

    def register_client_ca(self, handle: int, certificate: str) -> str:
        """Trust one more client CA for mutual TLS on every HSM of the cluster (an admin; replicated, audited
        ``client-ca-register``); returns its SHA-256 fingerprint (hex). New connections only.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` without an admin login.
            FunctionNotSupported, ArgumentsBad, SignatureInvalid: see
                :func:`strongroom.trust.cluster_certificate.client_ca_added`.
            NoQuorum: (retryable) the change was not committed.
        """
        self._session(handle)
        actor = self._require_role(Role.ADMIN)
        pem = arguments.text(certificate, "certificate").encode()
        identity = self._cluster_identity()
        done, fingerprint = cluster_certificate.client_ca_added(identity, pem)
        change = Change(cluster_identity=done.encode())
        change.add_audit("client-ca-register", actor.name, fingerprint=fingerprint)
        self.hsm.commit(change)
        return fingerprint

    def unregister_client_ca(self, handle: int, fingerprint: str) -> None:
        """Stop trusting a registered client CA (an admin; replicated, audited ``client-ca-unregister``): new
        connections with its certificates are refused at the TLS handshake.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` without an admin login.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a fingerprint no registered client CA has.
            NoQuorum: (retryable) the change was not committed.
        """
        self._session(handle)
        actor = self._require_role(Role.ADMIN)
        fingerprint = arguments.text(fingerprint, "fingerprint")
        done = cluster_certificate.client_ca_removed(self._cluster_identity(), fingerprint)
        change = Change(cluster_identity=done.encode())
        change.add_audit("client-ca-unregister", actor.name, fingerprint=fingerprint.lower())
        self.hsm.commit(change)

    def list_client_cas(self, handle: int) -> list[dict[str, str]]:
        """The cluster's client trust anchors (an admin): see
        :func:`strongroom.trust.cluster_certificate.client_cas`.

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` without an admin login.
        """
        self._session(handle)
        self._require_role(Role.ADMIN)
        return cluster_certificate.client_cas(self._cluster_identity())

    def _cluster_identity(self) -> cluster_certificate.ClusterIdentity:
        identity = self.hsm.cluster_identity()
        if identity is None:
            raise FunctionNotSupported("this cluster has no cluster key (it was not made by a control plane); "
                                       "its nodes' --client-ca names the client CAs")
        return identity

    def remove_member(self, handle: int, address: str) -> None:
        """Remove an HSM from the membership by its replication address (admins and the appliance user).

        Raises:
            UserNotLoggedIn: ``CKR_USER_NOT_LOGGED_IN`` without an admin or appliance login.
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a malformed address or one that is not a member.
            NoQuorum: (retryable) the membership change was not committed.
        """
        self._session(handle)
        self._require_role(Role.ADMIN, Role.APPLIANCE)
        address = arguments.text(address, "address")
        hsm = self.hsm
        log = hsm.log
        if not isinstance(log, MembershipLog):
            raise FunctionNotSupported("this HSM has no replicated log")
        status = log.status()
        if address not in status["members"]:
            raise ArgumentsBad(f"{address} is not a member of this cluster")
        if address == status["self"]:
            # A member taken out stops hearing from the cluster before it hears of its removal: another member
            # does it (the SDK retries the call on one).
            raise NoQuorum("a member does not remove itself; ask another member")
        endpoint = hsm.machine.directory().get(address, "")
        # clients stop discovering it, and it stops serving and calling elections, before the membership shrinks
        hsm.commit(Change(directory={address: ""}, leaving=address))
        try:
            if not log.change_membership(address, add=False):
                raise NoQuorum("the membership change was not committed in time")
        except StrongroomError:
            if endpoint:
                hsm.commit(Change(directory={address: endpoint}))
            raise
        with local_write(hsm.store) as tx:
            tx.audit("member-remove", self._actor(), address=address, peer=self.peer)
