"""Random bytes from the operating system's CSPRNG, watched by a continuous test.

The continuous random number generator test of FIPS 140-2 §4.9.2 (the block-comparison form that
NIST SP 800-90B §4.4 generalises): output is drawn in 16-byte blocks, the first block after start-up is
kept only for comparison, and every new block is compared with the one before it. A repeat means the
source is stuck; the source then stays failed and every later request raises ``DeviceError``
(``CKR_DEVICE_ERROR``) until the process restarts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from ..errors import ArgumentsBad, DeviceError

BLOCK_SIZE = 16
"""Bytes per compared block (128 bits, one AES block, so a repeat by chance has probability 2^-128)."""


class RandomSource:
    """A CSPRNG wrapped in the continuous test; safe to share between threads.

    Args:
        read: returns that many bytes from the underlying generator; ``os.urandom`` unless a test injects
            another (e.g. a stuck one).
    """

    def __init__(self, read: Callable[[int], bytes] = os.urandom) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._previous: bytes | None = None
        self._failed = False

    @property
    def failed(self) -> bool:
        """Whether the continuous test has failed; a failed source never recovers."""
        return self._failed

    def random_bytes(self, n: int) -> bytes:
        """Return ``n`` random bytes (``C_GenerateRandom``).

        Raises:
            ArgumentsBad: (``CKR_ARGUMENTS_BAD``) ``n`` is negative.
            DeviceError: (``CKR_DEVICE_ERROR``) the continuous test failed now or earlier.
        """
        if n < 0:
            raise ArgumentsBad("cannot generate a negative number of bytes")
        with self._lock:
            if self._failed:
                raise DeviceError("the random number generator failed its continuous test")
            if self._previous is None:
                self._previous = self._draw(BLOCK_SIZE)
            count = -(-n // BLOCK_SIZE)
            data = self._draw(count * BLOCK_SIZE)
            for offset in range(0, len(data), BLOCK_SIZE):
                block = data[offset : offset + BLOCK_SIZE]
                if block == self._previous:
                    self._failed = True
                    raise DeviceError("the random number generator failed its continuous test")
                self._previous = block
            return data[:n]

    def _draw(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) != n:
            self._failed = True
            raise DeviceError("the random number generator returned short output")
        return data


_DEFAULT = RandomSource()


def default_source() -> RandomSource:
    """The process-wide source behind :func:`random_bytes` (for health checks of its state)."""
    return _DEFAULT


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the process-wide :class:`RandomSource`.

    Raises:
        ArgumentsBad, DeviceError: as :meth:`RandomSource.random_bytes`.
    """
    return _DEFAULT.random_bytes(n)
