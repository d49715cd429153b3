"""In-memory stand-ins for HSMs behind :class:`strongroom.client.balancer.Balancer`: each endpoint answers from a
script instead of a node process, and every request it receives is recorded."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strongroom.client import links
from strongroom.client.balancer import Balancer
from strongroom.client.config import ClientConfig
from strongroom.client.connection import ConnectionLost
from strongroom.errors import StrongroomError
from strongroom.protocol import Response


@dataclass
class Sent:
    """One request as an HSM received it, and the log index its answer carried."""

    endpoint: str
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    after: int
    key: bytes
    index: int = 0


# An answer: a value, an error class or instance to answer with (its ``CKR_*``), or a callable of the request
# returning one of those.
Answer = Any


@dataclass
class FakeHSM:
    """One endpoint. ``answers[name]`` is a list of answers used up one per request (then the cluster's
    shared ones, then the default); an answer that is :class:`ConnectionLost` drops the connection instead
    (:meth:`die`)."""

    endpoint: str
    members: list[str]
    log: list[Sent]
    shared: dict[str, list[Answer]]  # answers used up by whichever HSM of the cluster the request lands on
    index: int = 0  # the log index a write of this HSM answers with (0: writes nothing)
    down: bool = False
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    conn: FakeConnection | None = None
    _handles: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def queued(self, name: str) -> list[Answer]:
        return self.answers.get(name) or self.shared.get(name) or []

    def answer(self, sent: Sent) -> Response:
        queued = self.queued(sent.name)
        answer = queued.pop(0) if queued else self.default(sent)
        if callable(answer) and not isinstance(answer, type):
            answer = answer(sent)
        if isinstance(answer, type) and issubclass(answer, StrongroomError):
            answer = answer()
        if isinstance(answer, StrongroomError):
            return Response(0, int(answer.ckr), None, str(answer), 0)
        sent.index = self.index
        return Response(0, 0, answer, "", self.index)

    def default(self, sent: Sent) -> Answer:
        if sent.name == "cluster_status":
            return {"endpoints": self.members}
        if sent.name == "open_session":
            return 1000 * (1 + self.members.index(self.endpoint)) + next(self._handles)
        if sent.name in ("sign", "sign_final"):
            return b"signature from " + self.endpoint.encode()
        return None

    def die(self) -> None:
        """The HSM goes away: its connection drops and it refuses new ones."""
        self.down = True
        if self.conn is not None:
            self.conn.close()


class FakeConnection:
    """What :class:`~strongroom.client.balancer.Balancer` uses of a
    :class:`~strongroom.client.connection.NodeConnection`."""

    def __init__(self, hsm: FakeHSM) -> None:
        self.hsm = hsm
        self.node = {"endpoint": hsm.endpoint}
        self.closed = asyncio.get_running_loop().create_future()

    @property
    def is_open(self) -> bool:
        return not self.closed.done()

    async def request(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                      timeout_s: float | None = None, after: int = 0, key: bytes = b"") -> Response:
        sent = Sent(self.hsm.endpoint, name, tuple(args), dict(kwargs), after, key)
        self.hsm.log.append(sent)
        await asyncio.sleep(0)
        queued = self.hsm.queued(name)
        if queued and queued[0] is ConnectionLost:
            queued.pop(0)
            self.hsm.die()
        if not self.is_open:
            raise ConnectionLost(f"{self.hsm.endpoint} closed")
        return self.hsm.answer(sent)

    def close(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class FakeCluster:
    """HSMs by endpoint, and the ``open_connection`` that reaches them."""

    def __init__(self, count: int) -> None:
        self.log: list[Sent] = []
        self.shared: dict[str, list[Answer]] = {}
        self.endpoints = [f"127.0.0.{i + 1}:2225" for i in range(count)]
        self.hsms = {e: FakeHSM(e, self.endpoints, self.log, self.shared) for e in self.endpoints}

    def answer_next(self, name: str, *answers: Answer) -> None:
        """The next ``name`` requests, on whichever HSMs they land, get these answers."""
        self.shared.setdefault(name, []).extend(answers)

    def drop_next(self, name: str) -> None:
        """The next ``name`` request, on whichever HSM, loses its HSM (the connection drops, no reconnect)."""
        self.answer_next(name, ConnectionLost)

    async def open_connection(self, endpoint: str, ssl_context: Any, **_: Any) -> FakeConnection:
        hsm = self.hsms[endpoint]
        if hsm.down:
            raise ConnectionLost(f"cannot connect to {endpoint}")
        hsm.conn = FakeConnection(hsm)
        return hsm.conn

    def sent(self, name: str) -> list[Sent]:
        return [s for s in self.log if s.name == name]

    def where(self, name: str) -> list[str]:
        """The endpoints that received each ``name`` request, in order."""
        return [s.endpoint for s in self.sent(name)]


def run_with(fake: FakeCluster, monkeypatch: Any, scenario: Callable[[Balancer], Any], *,
             timeout_s: float = 5.0) -> Any:
    """Run ``scenario(balancer)`` on a started balancer over ``fake``'s HSMs, then close the balancer."""
    monkeypatch.setattr(links, "open_connection", fake.open_connection)
    config = ClientConfig(tuple(fake.endpoints), Path("unused-ca.pem"), timeout_s=timeout_s)

    async def main() -> Any:
        b = Balancer(config, ssl_context=None)
        await b.start()
        try:
            for _ in range(20):  # the HSMs connecting in the background
                if all(n.up for n in b.nodes):
                    break
                await asyncio.sleep(0.01)
            return await scenario(b)
        finally:
            b.close()

    return asyncio.run(asyncio.wait_for(main(), 30))
