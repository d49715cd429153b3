"""Running HSM nodes on a machine: a node's process (start-up, TLS, joining its cluster through the SDK) above
both the boundary (:mod:`strongroom.node`) and the client (:mod:`strongroom.client`)."""
