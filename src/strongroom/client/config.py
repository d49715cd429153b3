"""Client configuration: one JSON file naming the nodes, the trust anchor and an optional client certificate.

Example::

    {
      "endpoints": ["127.0.0.1:2225"],
      "trust_anchor": "customerCA.crt",
      "client_cert": "client.crt",
      "client_key": "client.key",
      "server_name": "hsm.strongroom.local",
      "timeout_s": 30
    }

Relative paths are read relative to the file's folder. Every node requires a client certificate (mutual TLS):
one from the cluster owner's CA, or from a client CA the cluster trusts. A file may name more than one
certificate: ``strongroom up`` writes the agent's as ``client_cert``/``client_key`` (the SDK's default) and the
command line's as ``cli_cert``/``cli_key`` (read with ``certificate="cli"``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ArgumentsBad


@dataclass(frozen=True)
class ClientConfig:
    """Where the nodes are and how to trust them.

    Attributes:
        endpoints: ``HOST:PORT`` of each node.
        trust_anchor: PEM file of the CA the node certificates chain to.
        client_cert, client_key: PEM files for mutual TLS, or ``None``.
        server_name: the name to check in node certificates; ``None`` checks each endpoint's host.
        timeout_s: how long one request may take before it fails (seconds).
        connect_timeout_s: how long connecting and the TLS handshake may take (seconds).
        source: the file it was read from (``None`` for one built from a mapping): clients follow it while they
            run (:class:`ConfigFile`), reading it with the same ``certificate`` choice.
    """

    endpoints: tuple[str, ...]
    trust_anchor: Path
    client_cert: Path | None = None
    client_key: Path | None = None
    server_name: str | None = None
    timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    source: Path | None = field(default=None, compare=False)
    certificate: str = field(default="client", compare=False)

    @classmethod
    def from_file(cls, path: Path | str, certificate: str = "client") -> ClientConfig:
        """Read a configuration file (``certificate`` as in :meth:`from_dict`).

        Raises:
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for an unreadable file or a missing or malformed field.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ArgumentsBad(f"cannot read client configuration {path}: {exc}") from None
        return replace(cls.from_dict(data, base=path.parent, certificate=certificate), source=path,
                       certificate=certificate)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Path = Path("."), certificate: str = "client") -> ClientConfig:
        """Build a configuration from a mapping like the file's (paths relative to ``base``).

        Args:
            certificate: whose client certificate to use: ``"cli"`` reads ``cli_cert``/``cli_key`` when the
                mapping names them, else ``client_cert``/``client_key`` like the default ``"client"``.

        Raises:
            ArgumentsBad: ``CKR_ARGUMENTS_BAD`` for a missing or malformed field.
        """
        if not isinstance(data, dict):
            raise ArgumentsBad("the client configuration must be a JSON object")
        endpoints = data.get("endpoints")
        if not isinstance(endpoints, list) or not endpoints or not all(
                isinstance(e, str) and e.rpartition(":")[2].isdigit() and 0 < int(e.rpartition(":")[2]) <= 65535
                for e in endpoints):
            raise ArgumentsBad("'endpoints' must be a non-empty list of \"HOST:PORT\" strings (port 1-65535)")
        if not isinstance(data.get("trust_anchor"), str):
            raise ArgumentsBad("'trust_anchor' must name the PEM file of the cluster's CA")

        def path(name: str) -> Path | None:
            value = data.get(name)
            if value is None:
                return None
            if not isinstance(value, str):
                raise ArgumentsBad(f"'{name}' must be a file path")
            return base / value

        try:
            timeout = float(data.get("timeout_s", 30.0))
            connect_timeout = float(data.get("connect_timeout_s", 10.0))
        except (TypeError, ValueError):
            raise ArgumentsBad("'timeout_s' and 'connect_timeout_s' must be numbers of seconds") from None
        if not (0 < timeout < float("inf") and 0 < connect_timeout < float("inf")):
            raise ArgumentsBad("'timeout_s' and 'connect_timeout_s' must be positive numbers of seconds")
        if data.get("server_name") is not None and not isinstance(data["server_name"], str):
            raise ArgumentsBad("'server_name' must be a host name")
        prefix = certificate if data.get(f"{certificate}_cert") is not None else "client"
        return cls(tuple(endpoints), base / data["trust_anchor"], path(f"{prefix}_cert"), path(f"{prefix}_key"),
                   data.get("server_name"), timeout, connect_timeout)


class ConfigFile:
    """A configuration file followed while a client runs (its HSMs change as the cluster's membership does).

    Args:
        path: the file; ``certificate`` as in :meth:`ClientConfig.from_dict`.
    """

    def __init__(self, path: os.PathLike[str] | str, certificate: str = "client") -> None:
        self.path = Path(path)
        self.certificate = certificate  # whose client certificate, as in ClientConfig.from_dict
        self._stamp = self._now()

    def _now(self) -> tuple[int, int, int] | None:
        """What tells a changed file (written in place or renamed over): its inode, size and modification time."""
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return info.st_ino, info.st_size, info.st_mtime_ns

    def changed(self) -> ClientConfig | None:
        """The configuration read again if the file changed since the last look, else ``None`` (also for a file
        that does not read as one now: it is read again once it changes again)."""
        stamp = self._now()
        if stamp is None or stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            return ClientConfig.from_file(self.path, self.certificate)
        except ArgumentsBad:
            return None
