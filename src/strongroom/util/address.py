"""``HOST:PORT`` as the command lines and configurations write network addresses."""

from __future__ import annotations


def host_port(address: str, *, any_port: bool = True) -> tuple[str, int]:
    """Split ``HOST:PORT`` (an IPv6 host in brackets keeps them).

    Args:
        address: the text to split at its last colon.
        any_port: accept port 0 (listen on any free port); otherwise the port is 1-65535.

    Raises:
        ValueError: no host, or a port that is not a number in range; the message names the expected form.
    """
    host, _, port = address.rpartition(":")
    low = 0 if any_port else 1
    if not host or not port.isdigit() or not low <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port of {low}-65535")
    return host, int(port)
