"""Typed attack parameters: each attack declares a frozen dataclass, one routine validates it.

A field is declared with :func:`param`: its type (the annotation), a one-line ``doc``, and
optionally a range (``ge``/``gt``/``le``/``lt``, applied to each item of a tuple), ``choices``
and ``min_len`` (tuples).  :func:`resolve` checks a dict of values against the dataclass
(unknown or missing names and wrong types: ``TypeError``; values out of range or not among
the choices: ``ValueError``), runs the dataclass's cross-field ``check()`` if it has one
(it returns an error message or ``None``), and returns the frozen instance.
:func:`parse_assignment` reads ``key=value`` text (``owsd attack NAME --param``) into a typed
value; :func:`describe` lists the fields for ``--help-params``.

Types: ``int``, ``float`` (an int is accepted too), ``bool``, ``str``, ``tuple[int, ...]``,
``Optional[...]`` of those, and ``Any`` (objects that cannot come from the command line).

Example:
    >>> @dataclass(frozen=True, kw_only=True)
    ... class Demo:
    ...     k: int = param(doc="principal components", ge=1)
    ...     source: str = param("scrambled", doc="what the attacker observes", choices=("scrambled", "outputs"))
    >>> resolve(Demo, {"k": 3}, owner="demo")
    Demo(k=3, source='scrambled')
    >>> resolve(Demo, {"k": 0}, owner="demo")
    Traceback (most recent call last):
    ...
    ValueError: demo: parameter k must be >= 1, got 0
    >>> parse_assignment(Demo, "k=5"), parse_assignment(Demo, "source=outputs")
    (('k', 5), ('source', 'outputs'))
    >>> describe(Demo)[0]
    'k  int  >= 1  principal components'
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Optional, Sequence

_BOUNDS = (("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b),
           ("le", "<=", lambda v, b: v <= b), ("lt", "<", lambda v, b: v < b))
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def param(default: Any = MISSING, *, doc: str, ge: Optional[float] = None, gt: Optional[float] = None,
          le: Optional[float] = None, lt: Optional[float] = None, choices: Optional[Sequence] = None,
          min_len: Optional[int] = None) -> Any:
    """A dataclass field of attack parameters (no default: every budget must give it)."""
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt,
            "choices": tuple(choices) if choices is not None else None, "min_len": min_len}
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Field:
    """One declared parameter: name, type, default (``MISSING``: required) and constraints."""

    name: str
    type: Any
    default: Any
    meta: dict

    @property
    def required(self) -> bool:
        return self.default is MISSING

    def type_name(self) -> str:
        return _type_name(self.type)

    def constraint(self) -> str:
        """The constraints as text (``>= 1``, ``one of a|b``, ``at least 1 item``)."""
        m = self.meta
        parts = [f"{sym} {m[k]:g}" for k, sym, _ in _BOUNDS if m.get(k) is not None]
        if m.get("choices"):
            parts.append("one of " + "|".join(map(str, m["choices"])))
        if m.get("min_len"):
            parts.append(f"at least {m['min_len']} item(s)")
        return ", ".join(parts)


def _type_name(t: Any) -> str:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner) + " or None"
    if origin is tuple:
        return f"tuple of {_type_name(args[0])}" if args else "tuple"
    return "any" if t is Any else getattr(t, "__name__", str(t))


def fields(cls: type) -> list[Field]:
    """The declared parameters of a parameter dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [Field(f.name, hints[f.name], f.default, dict(f.metadata)) for f in dataclasses.fields(cls)]


def _type_ok(v: Any, t: Any) -> bool:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if t is Any:
        return True
    if origin is typing.Union:
        return any(_type_ok(v, a) for a in args)
    if t is type(None):
        return v is None
    if origin is tuple:
        return isinstance(v, tuple) and all(_type_ok(x, args[0]) for x in v) if args else isinstance(v, tuple)
    if t is bool:
        return isinstance(v, bool)
    if t is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if t is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, t)


def check_value(owner: str, f: Field, v: Any) -> None:
    """Raise ``TypeError`` (wrong type) or ``ValueError`` (out of range, not a choice) for ``v``."""
    if not _type_ok(v, f.type):
        raise TypeError(f"{owner}: parameter {f.name} must be {f.type_name()}, got {v!r}")
    if v is None:
        return
    m = f.meta
    if m.get("choices") is not None and v not in m["choices"]:
        raise ValueError(f"{owner}: parameter {f.name} must be one of {m['choices']}, got {v!r}")
    if isinstance(v, tuple):
        if m.get("min_len") and len(v) < m["min_len"]:
            raise ValueError(f"{owner}: parameter {f.name} needs at least {m['min_len']} item(s), got {v!r}")
        items = v
    else:
        items = (v,)
    for x in items:
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            for k, sym, ok in _BOUNDS:
                if m.get(k) is not None and not ok(x, m[k]):
                    what = "items" if isinstance(v, tuple) else ""
                    raise ValueError(f"{owner}: parameter {f.name}{' ' + what if what else ''} must be "
                                     f"{sym} {m[k]:g}, got {v!r}")


def resolve(cls: type, values: dict, *, owner: str) -> Any:
    """Validate ``values`` against the parameter dataclass ``cls``; return the frozen instance."""
    fs = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(fs))
    if unknown:
        raise TypeError(f"{owner}: unknown parameter(s) {unknown}; accepted: {sorted(fs)}")
    missing = sorted(n for n, f in fs.items() if f.required and n not in values)
    if missing:
        raise TypeError(f"{owner}: missing parameter(s) {missing} (no budget gives them)")
    for name, v in values.items():
        check_value(owner, fs[name], v)
    obj = cls(**values)
    check = getattr(obj, "check", None)
    problem = check() if callable(check) else None
    if problem:
        raise ValueError(f"{owner}: {problem}")
    return obj


def parse_value(f: Field, text: str) -> Any:
    """The typed value of command-line ``text`` for field ``f`` (``ValueError`` if it cannot be)."""
    t = f.type
    if typing.get_origin(t) is typing.Union:
        if text.strip().lower() == "none":
            return None
        t = next(a for a in typing.get_args(t) if a is not type(None))
    if t is Any:
        raise ValueError(f"{f.name} cannot be set from the command line")
    if typing.get_origin(t) is tuple or t is tuple:
        item = (typing.get_args(t) or (str,))[0]
        parts = [p for p in text.split(",") if p.strip()]
        return tuple(parse_value(Field(f.name, item, MISSING, {}), p.strip()) for p in parts)
    if t is bool:
        low = text.strip().lower()
        if low not in _TRUE + _FALSE:
            raise ValueError(f"{f.name} must be true or false, got {text!r}")
        return low in _TRUE
    try:
        return t(text)
    except (TypeError, ValueError):
        raise ValueError(f"{f.name} must be {f.type_name()}, got {text!r}") from None


def parse_assignment(cls: type, text: str) -> tuple[str, Any]:
    """``key=value`` -> ``(key, typed value)``, checked against the field's type and constraints."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    fs = {f.name: f for f in fields(cls)}
    if not sep or not key:
        raise ValueError(f"expected key=value, got {text!r}")
    if key not in fs:
        raise ValueError(f"unknown parameter {key!r}; accepted: {', '.join(sorted(fs))}")
    value = parse_value(fs[key], raw)
    try:
        check_value("", fs[key], value)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc).removeprefix(": ")) from None
    return key, value


def describe(cls: type) -> list[str]:
    """One line per field: name, type, constraints, doc (and default if it has one)."""
    out = []
    for f in fields(cls):
        cons = f.constraint()
        doc = f.meta.get("doc", "")
        if not f.required:
            doc += f" (default {f.default!r})"
        out.append("  ".join(p for p in (f.name, f.type_name(), cons, doc) if p))
    return out


@dataclass(frozen=True, kw_only=True)
class NoParams:
    """The parameters of an attack that takes none."""
