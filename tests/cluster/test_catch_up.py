"""Read-your-writes waits hold no thread: requests asking for a log index the node has not applied wait on the
event loop, so a flood of them cannot starve other clients."""

from __future__ import annotations

import asyncio

import strongroom.client as sdk
from strongroom.client.connection import open_connection
from strongroom.errors import NodeBehind

from ..fixtures.cluster import ALICE_PW, client_ssl


def test_a_flood_of_requests_for_a_future_index_does_not_stall_other_clients(node, pki):
    proc, config = node
    ctx = client_ssl(pki)

    def honest() -> bytes:
        with sdk.connect(config) as cluster, cluster.login("alice", ALICE_PW) as session:
            return session.random(16)

    async def flood():
        conns = [await open_connection(proc.endpoint, ctx) for _ in range(3)]
        try:
            waiting = [asyncio.ensure_future(conn.request(name, args, {}, after=2**62)) for conn in conns
                       for name, args in [("hsm_info", ()), ("list_users", (1,))] * 32]
            await asyncio.sleep(0.2)  # the flood is parked on the node
            random = await asyncio.to_thread(honest)
            parked = sum(not w.done() for w in waiting)  # the flood is still waiting when the honest client is done
            answers = await asyncio.gather(*waiting)
            return random, parked, answers
        finally:
            for conn in conns:
                conn.close()

    random, parked, answers = asyncio.run(flood())
    assert len(random) == 16
    assert parked == len(answers) == 192
    assert {a.ckr for a in answers} == {NodeBehind.ckr}
