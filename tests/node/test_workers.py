"""The blocking-call threads are shared fairly: a connection's flood of logins or RSA operations does not make
another connection's call wait behind it."""

from __future__ import annotations

import threading
import time

import pytest

from strongroom.node.workers import Workers


def _until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_another_owners_call_starts_on_the_first_free_thread_whatever_a_flood_queued():
    workers = Workers(2, "test")
    gate, started = threading.Event(), []

    def flood(i: int) -> None:
        started.append(f"flood-{i}")
        gate.wait(5)

    try:
        for i in range(50):
            workers.submit("flooder", flood, i)
        _until(lambda: len(started) == 2)  # the flood holds both threads
        workers.submit("honest", started.append, "honest")
        gate.set()
        _until(lambda: len(started) == 51)
        assert started.index("honest") == 2  # the next call to start, ahead of 48 queued flood calls
    finally:
        gate.set()
        workers.shutdown()


def test_owners_take_turns_and_one_owner_alone_uses_every_thread():
    workers = Workers(3, "test")
    order: list[str] = []
    lock, gate = threading.Lock(), threading.Event()
    running = []

    def job(tag: str) -> None:
        with lock:
            order.append(tag)
            running.append(tag)
        gate.wait(5)

    try:
        for i in range(3):
            workers.submit("a", job, f"a{i}")
        _until(lambda: len(running) == 3)  # alone, an owner gets all the threads
        for i in range(3):
            workers.submit("a", job, f"a{i + 3}")
            workers.submit("b", job, f"b{i}")
            workers.submit("c", job, f"c{i}")
        gate.set()
        _until(lambda: len(order) == 12)
        assert {tag[0] for tag in order[3:5]} == {"b", "c"}  # the owners with nothing running come first
    finally:
        gate.set()
        workers.shutdown()


def test_a_failing_call_frees_its_thread_and_shutdown_drops_the_queue():
    workers = Workers(1, "test")
    done = threading.Event()
    workers.submit("x", lambda: 1 / 0)
    workers.submit("x", done.set)
    assert done.wait(5)
    workers.shutdown()
    with pytest.raises(RuntimeError):
        workers.submit("x", done.set)
