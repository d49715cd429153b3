"""Call arguments from plain values: a :class:`Mechanism` from a ``CKM`` value, a template from ``CKA`` keys or
attribute names."""

from __future__ import annotations

from typing import Any

from ..errors import ArgumentsBad
from ..mechanism_params import Mechanism
from ..vocab import CKA


def mechanism(value: int | Mechanism, parameter: Any = None) -> Mechanism:
    """A :class:`Mechanism` from a ``CKM`` value (with an optional parameter) or a Mechanism as is."""
    if isinstance(value, Mechanism):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentsBad(f"a mechanism is a CKM value or a Mechanism, got {type(value).__name__}")
    return Mechanism(value, parameter)


def template(attrs: dict[Any, Any] | None = None, **named: Any) -> dict[int, Any]:
    """A template from ``CKA`` keys and/or keyword names (``label="x"`` is ``CKA.LABEL``; ``cls`` stands for
    ``CKA.CLASS``, a Python keyword)."""
    if attrs is not None and not isinstance(attrs, dict):
        raise ArgumentsBad(f"a template is a mapping of CKA values to values, got {type(attrs).__name__}")
    if any(isinstance(k, bool) or not isinstance(k, int) for k in (attrs or {})):
        raise ArgumentsBad("template keys must be CKA values (integers)")
    out = {int(k): v for k, v in (attrs or {}).items()}
    for name, value in named.items():
        try:
            out[int(CKA.CLASS if name == "cls" else CKA[name.upper()])] = value
        except KeyError:
            raise ArgumentsBad(f"{name} is not an attribute name (CKA_{name.upper()} does not exist)") from None
    return out
