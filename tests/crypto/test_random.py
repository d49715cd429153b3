"""The RNG's continuous test (FIPS 140-2 §4.9.2 block comparison) and its sticky failure state."""

from __future__ import annotations

import itertools

import pytest

from strongroom.crypto import RandomSource, random_bytes
from strongroom.crypto.random import BLOCK_SIZE, default_source
from strongroom.errors import ArgumentsBad, DeviceError


def test_random_bytes() -> None:
    assert random_bytes(0) == b""
    for size in (1, 15, 16, 17, 100):
        assert len(random_bytes(size)) == size
    assert random_bytes(32) != random_bytes(32)
    assert not default_source().failed


def _counter_source() -> tuple[RandomSource, list[int]]:
    """A source whose blocks are distinct counters; records how many bytes each read asked for."""
    counter = itertools.count()
    requests: list[int] = []

    def read(n: int) -> bytes:
        requests.append(n)
        return b"".join(next(counter).to_bytes(BLOCK_SIZE, "big") for _ in range(n // BLOCK_SIZE))

    return RandomSource(read=read), requests


def test_first_block_is_kept_for_comparison_only() -> None:
    source, requests = _counter_source()
    assert source.random_bytes(20) == (1).to_bytes(16, "big") + (2).to_bytes(16, "big")[:4]
    assert requests == [16, 32]
    assert source.random_bytes(16) == (3).to_bytes(16, "big")


def test_stuck_source_fails_and_stays_failed() -> None:
    healthy = [True]

    def read(n: int) -> bytes:
        return bytes(n) if not healthy[0] else b"".join(i.to_bytes(16, "big") for i in range(1, n // 16 + 1))

    source = RandomSource(read=read)
    healthy[0] = False
    with pytest.raises(DeviceError):
        source.random_bytes(16)
    assert source.failed
    healthy[0] = True
    with pytest.raises(DeviceError):
        source.random_bytes(16)


def test_repeat_across_calls_is_caught() -> None:
    blocks = iter([b"A" * 16, b"B" * 16, b"C" * 16, b"C" * 16])
    source = RandomSource(read=lambda n: b"".join(next(blocks) for _ in range(n // 16)))
    assert source.random_bytes(16) == b"B" * 16
    assert source.random_bytes(16) == b"C" * 16
    with pytest.raises(DeviceError):
        source.random_bytes(1)
    assert source.failed


def test_repeat_inside_one_request_is_caught() -> None:
    data = b"A" * 16 + b"B" * 16 + b"C" * 16 + b"C" * 16 + b"D" * 16
    reads = iter([data[:16], data[16:]])
    source = RandomSource(read=lambda n: next(reads))
    with pytest.raises(DeviceError):
        source.random_bytes(64)


def test_short_read_and_bad_length() -> None:
    source = RandomSource(read=lambda n: bytes(n - 1))
    with pytest.raises(DeviceError):
        source.random_bytes(8)
    assert source.failed
    with pytest.raises(ArgumentsBad):
        RandomSource().random_bytes(-1)
