"""The PKCS#11 agent with no HSM behind it: what p11-kit's client and the agent cost by themselves.

Usage: python bench/p11floor.py --socket PATH --trust-anchor CA.pem

Runs the real agent (``strongroom.pkcs11.agent``) with every cluster call answered at once in its own process:
sessions and logins succeed, a key pair is a pair of numbers, a signature is a constant of the right size
(64 bytes for ``CKM_ECDSA``, 256 otherwise). No TLS, no node, no cryptography. ``bench/p11_throughput.py`` drives it
like the real agent, so the rate it measures is a ceiling for any HSM behind this agent on the same machine.
Prints one JSON line ``{"socket": PATH}`` once it serves.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import uvloop

from strongroom.client.config import ClientConfig
from strongroom.errors import FunctionNotSupported
from strongroom.pkcs11 import agent as agent_module
from strongroom.pkcs11 import served

CKM_ECDSA = 0x1041


class NoHsm:
    """Stands in for the agent's cluster connections (``Balancer``): answers in the same turn of the loop."""

    def __init__(self) -> None:
        self.sessions: dict[int, bool] = {}
        self.handles = itertools.count(1)
        self.mechanisms: dict[int, int] = {}  # of the sign operations started with sign_init

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "open_session":
            handle = next(self.handles)
            self.sessions[handle] = True
            return handle
        if name == "close_session":
            self.sessions.pop(args[0], None)
            return None
        if name == "generate_key_pair":
            return next(self.handles), next(self.handles)
        if name == "sign_init":
            self.mechanisms[args[0]] = args[1].mechanism
            return None
        if name in ("login", "logout"):
            return None
        if name in ("sign", "sign_once"):
            mechanism = args[1].mechanism if name == "sign_once" else self.mechanisms.pop(args[0], None)
            size = 64 if mechanism == CKM_ECDSA else 256
            if kwargs.get("query"):
                return size
            return b"\x01" * size
        raise FunctionNotSupported(f"{name} is not answered without an HSM")

    def close(self) -> None:
        pass


async def _no_hsm(self: Any) -> NoHsm:
    if self.balancer is None:
        self.balancer = NoHsm()
    return self.balancer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--trust-anchor", type=Path, required=True, help="any CA certificate (unused)")
    args = parser.parse_args(argv)
    served.ServedApplication.cluster = _no_hsm  # type: ignore[method-assign]
    agent = agent_module.Agent(ClientConfig(("127.0.0.1:1",), args.trust_anchor), args.socket)

    def ready() -> None:
        print(json.dumps({"socket": str(args.socket)}), flush=True)

    uvloop.run(agent.serve_until_signalled(ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
