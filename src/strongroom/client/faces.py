"""The two faces of the SDK's objects: :class:`Sync` (every method returns its value) and :class:`Async` (every
method returns an awaitable of it), and the runner that carries a call either way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, Literal, TypeVar, overload


class _Face:
    """Which face of the SDK an object serves (a type parameter only; nothing is made of it)."""


class Sync(_Face):
    """The synchronous face (:func:`strongroom.client.connect`): methods return their values."""


class Async(_Face):
    """The asyncio face (:func:`strongroom.client.connect_async`): methods return awaitables of their values."""


F = TypeVar("F", bound=_Face)


class _Runner(Generic[F]):
    """Runs calls on a connection; ``then`` post-processes the value (awaited in async mode).

    A call's value is what the node's handler of that name returns (see :mod:`strongroom.protocol.calls`), so
    it is ``Any`` here; the methods of :class:`Cluster`, :class:`Session` and :class:`Key` give it its type.
    """

    @overload
    def __init__(self: _Runner[Sync], call: Callable[..., Any], is_async: Literal[False]) -> None: ...
    @overload
    def __init__(self: _Runner[Async], call: Callable[..., Awaitable[Any]], is_async: Literal[True]) -> None: ...

    def __init__(self, call: Callable[..., Any], is_async: bool) -> None:
        self.call = call
        self.is_async = is_async

    def __call__(self, name: str, *args: Any, then: Callable[[Any], Any] | None = None, **kwargs: Any) -> Any:
        if not self.is_async:
            value = self.call(name, *args, **kwargs)
            return then(value) if then is not None else value
        if then is None:
            return self.call(name, *args, **kwargs)

        async def run() -> Any:
            value = await self.call(name, *args, **kwargs)
            return then(value)

        return run()
