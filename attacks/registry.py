"""The registry of attacks: every adversary registers here by name.

Registering checks the attack's rows of the budgets table (:func:`attacks.budgets.check_budget`)
against its parameter dataclass, so a bad table entry fails at import.

Example:
    >>> "key-known-plaintext" in available_attacks() or True
    True
"""

from __future__ import annotations

import importlib
from typing import Type

from attacks.base import Attack
from attacks.budgets import check_budget, check_table
from attacks.params import resolve

_ATTACKS: dict[str, Type[Attack]] = {}

#: modules that define attacks; imported on first use of the registry
FAMILY_MODULES = ("attacks.key_estimation", "attacks.inversion", "attacks.leakage", "attacks.structure")


def register_attack(cls: Type[Attack]) -> Type[Attack]:
    """Class decorator: add an attack to the registry (names are unique)."""
    if cls.name in _ATTACKS and _ATTACKS[cls.name] is not cls:
        raise ValueError(f"attack name {cls.name!r} is already registered")
    check_budget(cls.name, lambda p: resolve(cls.Params, p, owner=cls.name))
    _ATTACKS[cls.name] = cls
    return cls


def _load_families() -> None:
    loaded = True
    for mod in FAMILY_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name is None or not mod.startswith(exc.name):
                raise
            loaded = False
    if loaded:
        check_table(set(_ATTACKS))


def available_attacks() -> dict[str, Type[Attack]]:
    """All registered attacks by name."""
    _load_families()
    return dict(sorted(_ATTACKS.items()))


def get_attack(name: str) -> Type[Attack]:
    attacks = available_attacks()
    if name not in attacks:
        raise ValueError(f"unknown attack {name!r}; available: {sorted(attacks)}")
    return attacks[name]
