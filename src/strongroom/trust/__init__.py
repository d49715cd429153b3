"""Trust: who may hold the cluster's secrets and how they prove it.

- :mod:`~strongroom.trust.ca`: a CA and the server and client certificates it issues (the fleet CA and local
  owner CAs are made with it).
- :mod:`~strongroom.trust.fleet`: HSM identities from the fleet CA, their provisioning, the control plane's
  appliance identity.
- :mod:`~strongroom.trust.join_proof`: the challenge a newcomer signs with its fleet identity to join.
- :mod:`~strongroom.trust.masking_key`: the masking key wrapped to a newcomer's identity.
- :mod:`~strongroom.trust.cluster_certificate`: the cluster key, its CSR, the owner-signed certificate and the
  HSMs' TLS certificates under it.

Leaf of the layers above it: imports ``cryptography``, :mod:`strongroom.errors` and nothing of the node, the
client, the control plane or the command lines.
"""
