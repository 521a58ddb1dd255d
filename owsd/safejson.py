"""Bounded JSON reading for the files users feed (key files, specs, reports).

:func:`read_text` refuses non-regular files (a FIFO would block forever) and files above a
size limit, checked with ``stat`` before a byte is read; :func:`loads` refuses nesting deeper
than a limit (measured by a linear scan before parsing, so a 100,000-level document costs no
recursion) and turns every parser failure, including Python's limit on integer digits, into
the caller's error type.

Example:
    >>> loads('{"a": [1, 2]}', source="x.json")
    {'a': [1, 2]}
    >>> loads("[" * 100 + "]" * 100, source="x.json")
    Traceback (most recent call last):
    ValueError: x.json: JSON nested deeper than 64 levels
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Type

MAX_DEPTH = 64


def nesting_depth(text: str, *, stop_above: int = MAX_DEPTH) -> int:
    """Deepest ``[``/``{`` nesting of a JSON text (strings skipped); stops once above ``stop_above``."""
    depth = deepest = 0
    in_str = escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_above:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def loads(text: str, *, source: str, max_depth: int = MAX_DEPTH, error: Type[Exception] = ValueError) -> Any:
    """``json.loads`` with a nesting limit; every failure raises ``error("SOURCE: problem")``."""
    if nesting_depth(text, stop_above=max_depth) > max_depth:
        raise error(f"{source}: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{source}: not valid JSON ({exc})") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # e.g. an integer of more than 4,300 digits
        raise error(f"{source}: unreadable JSON ({type(exc).__name__}: {str(exc)[:120]})") from None


def read_text(path: str | Path, *, max_bytes: int, what: str, error: Type[Exception] = ValueError) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` bytes.

    A missing file raises ``FileNotFoundError``; everything else raises ``error``.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(2, f"no such {what}", str(path)) from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a directory, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file, expected a {what}")
    if st.st_size > max_bytes:
        raise error(f"{path}: {st.st_size:,} bytes, larger than any {what} ({max_bytes:,}-byte limit)")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror})") from None
    if len(raw) > max_bytes:
        raise error(f"{path}: larger than any {what} ({max_bytes:,}-byte limit)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text, expected a {what} ({exc.reason} at byte {exc.start})") from None
