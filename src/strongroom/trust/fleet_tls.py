"""The replication channel's TLS from a node's fleet identity: each member presents its fleet certificate and
accepts only peers whose certificate the fleet CA issued to an HSM (not the control plane's appliance identity,
which the same CA issues)."""

from __future__ import annotations

from ..replication.peer_tls import PeerTLS, peer_tls
from .fleet import Identity, is_appliance


def replication_tls(identity: Identity) -> PeerTLS:
    """Mutual TLS 1.3 contexts for the replication channel of the node holding ``identity``.

    Raises:
        ssl.SSLError: the identity's certificate does not match its key, or the fleet CA is not PEM X.509.
    """
    return peer_tls(identity.key, identity.certificate, identity.fleet_ca,
                    accepts=lambda der: not is_appliance(identity.fleet_ca, der))
