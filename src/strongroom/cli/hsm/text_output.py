"""``--output text``: a command's answer for people, at most :data:`WIDTH` columns wide.

Lists of records (keys, users, HSMs, client CAs) print as a table when it fits, else as one block of
``name: value`` lines per record; long values (a 4096-bit modulus) wrap. ``key list`` adds its totals and how to
ask for the next page. Values print as the JSON answer has them (``true``, ``0x…``), never as Python objects.
"""

from __future__ import annotations

import textwrap
from typing import Any

WIDTH = 100
_GAP = "  "
_PAGING = ("total_key_count", "returned_key_count", "next_token")


def scalar(value: Any) -> str:
    """One value as text: ``true``/``false``, ``-`` for none, lists joined with ``, ``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(scalar(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={scalar(v)}" for k, v in value.items()) if value else "-"
    return str(value)


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` as ``{"a.b": "1"}``; a key's ``attributes`` print under their own names."""
    out: dict[str, str] = {}
    for key, value in record.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, prefix if key == "attributes" else f"{prefix}{key}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for n, item in enumerate(value):
                out.update(_flat(item, f"{prefix}{key}[{n}]."))
        else:
            out[f"{prefix}{key}"] = scalar(value)
    return out


def _pair(name: str, value: str, indent: str = "") -> list[str]:
    """``name: value``, wrapped at :data:`WIDTH` with continuation lines under the value."""
    lines: list[str] = []
    head = f"{indent}{name}: "
    for n, part in enumerate(value.splitlines() or [""]):
        first = head if n == 0 else " " * len(head)
        lines += textwrap.wrap(part, WIDTH, initial_indent=first, subsequent_indent=" " * len(head),
                               break_long_words=True, break_on_hyphens=False, drop_whitespace=False) or [first]
    return [line.rstrip() for line in lines]


def _table(records: list[dict[str, str]]) -> list[str] | None:
    """An aligned table, or ``None`` when it would be wider than :data:`WIDTH` or a cell holds a line break."""
    columns: list[str] = []
    for record in records:
        columns += [c for c in record if c not in columns]
    cells = [[record.get(c, "") for c in columns] for record in records]
    if any("\n" in cell for row in cells for cell in row):
        return None
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    if sum(widths) + len(_GAP) * (len(widths) - 1) > WIDTH:
        return None
    lines = [_GAP.join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
             _GAP.join("-" * w for w in widths)]
    lines += [_GAP.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return lines


def _records(name: str, items: list[dict[str, Any]]) -> list[str]:
    records = [_flat(item) for item in items]
    table = _table(records)
    if table is not None:
        return table
    lines: list[str] = []
    for n, record in enumerate(records):
        lines.append(f"{name} {n + 1} of {len(records)}")
        for key, value in record.items():
            lines += _pair(key, value, "  ")
    return lines


def _paging(data: dict[str, Any]) -> list[str]:
    total, returned = int(data.get("total_key_count", 0)), int(data.get("returned_key_count", 0))
    next_token = data.get("next_token")
    end = int(next_token) if next_token is not None else total
    shown = f"showing {end - returned + 1}-{end}" if returned else "showing none"
    lines = [f"{total} {'key matches' if total == 1 else 'keys match'}; {shown}."]
    if next_token is not None:
        lines.append(f"Next page: the same command with --starting-token {next_token} (and --max-items {returned}).")
    return lines


def render(data: Any) -> list[str]:
    """The lines of a command's answer; none is longer than :data:`WIDTH` characters."""
    if not isinstance(data, dict):
        return [line for part in scalar(data).splitlines() or [""] for line in textwrap.wrap(
            part, WIDTH, break_long_words=True, break_on_hyphens=False) or [""]]
    lines: list[str] = []
    rest: dict[str, Any] = {}
    paged = "total_key_count" in data
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines += _records(key.removesuffix("s").replace("matched_key", "key"), value)
        elif not paged or (key not in _PAGING and value != []):
            rest[key] = value
    for key, value in _flat(rest).items():
        lines += _pair(key, value)
    if paged:
        lines += _paging(data)
    return lines
