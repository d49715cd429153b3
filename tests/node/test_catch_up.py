"""Requests waiting for the node to apply the client's latest write: released in index order as entries apply,
or refused after the wait; an expiry from the middle of the waiting heap keeps the others in heap order."""

from __future__ import annotations

import asyncio

from strongroom.node import listener


class _Machine:
    def __init__(self) -> None:
        self.applied = 0

    def on_advance(self, callback):
        self.advance = callback


class _Hsm:
    def __init__(self) -> None:
        self.machine = _Machine()


def test_a_wait_that_expires_leaves_the_others_released_as_their_index_applies(monkeypatch):
    hsm = _Hsm()
    catch_up = listener.CatchUp(hsm)
    answers: list[tuple[int, bool]] = []

    def answer(index):
        return lambda ok: answers.append((index, ok))

    async def scenario() -> None:
        catch_up.attach(asyncio.get_running_loop())
        monkeypatch.setattr(listener, "CATCH_UP_WAIT_S", 0.01)
        catch_up.wait(1, answer(1))  # the heap's root, and the only one that expires
        monkeypatch.setattr(listener, "CATCH_UP_WAIT_S", 30.0)
        catch_up.wait(5, answer(5))
        catch_up.wait(2, answer(2))
        await asyncio.sleep(0.05)
        hsm.machine.applied = 2
        catch_up._release()
        hsm.machine.applied = 5
        catch_up._release()

    asyncio.run(scenario())
    assert answers == [(1, False), (2, True), (5, True)]
    assert catch_up.waiting == []
