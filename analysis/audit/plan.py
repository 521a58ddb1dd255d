"""The audit's plan: which jobs (attack x configuration) run, and the victim they need.

Every registered attack runs with its budget's parameters; at ``standard`` and ``full`` also
its variants from the budgets table (:mod:`attacks.budgets`) and the threat-model sweeps of
:data:`SWEEPS`.

Example:
    >>> [j.id for j in plan_jobs("smoke", only=("key-known-plaintext",))]
    ['key-known-plaintext']
    >>> job_id("key-known-plaintext", {"n_pairs": 32})
    'key-known-plaintext--n-pairs-32'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Type

from analysis.audit.errors import AuditError
from attacks.base import Attack
from attacks.params import fields
from attacks.registry import available_attacks, get_attack
from owsd.data import load_splits

#: threat-model sweeps: a parameter an attack accepts -> fractions of its budget value.
#: Each fraction adds a job (a point of the key-recovery curve).
SWEEPS: dict[str, dict[str, tuple[float, ...]]] = {
    "smoke": {},
    "standard": {"n_pairs": (0.25,)},
    "full": {"n_pairs": (0.0625, 0.25), "n_queries": (0.25,)},
}

#: the smallest victim an audit builds (each pool), whatever its jobs ask for
MIN_VICTIM_SIZES = {"n_private": 8, "n_public": 8, "n_heldout": 8}


@dataclass(frozen=True)
class Job:
    """One attack under one configuration (``params`` override the budget's defaults)."""

    id: str
    attack: str
    params: dict
    role: str = "main"  # "main", "variant" or "sweep"

    def make(self, budget: str, seed: int, device: str, verbose: bool) -> Attack:
        """The attack object of this job."""
        return get_attack(self.attack)(budget=budget, seed=seed, device=device, verbose=verbose, **self.params)


def _slug(v: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(v)).strip("-")[:40] or "x"


def job_id(attack: str, params: dict) -> str:
    """The folder name of an attack under ``params`` (the attack's name alone without overrides)."""
    return attack + "".join(f"--{_slug(k)}-{_slug(params[k])}" for k in sorted(params))


def _variants(cls: Type[Attack], budget: str) -> list[tuple[dict, str]]:
    """Configurations of one attack class: its main one, the table's variants, and sweeps.

    A smoke audit (tests) runs the main configuration only."""
    row = cls.budget_row(budget)
    out: list[tuple[dict, str]] = [({}, "main")]
    if budget == "smoke":
        return out
    out += [(dict(v), "variant") for v in row.variants]
    default, accepted = row.params, {f.name for f in fields(cls.Params)}
    for pname, fracs in SWEEPS.get(budget, {}).items():
        if pname in accepted and isinstance(default.get(pname), int):
            for f in fracs:
                v = max(1, int(round(default[pname] * f)))
                if v != default[pname]:
                    out.append(({pname: v}, "sweep"))
    return out


def plan_jobs(budget: str, *, only: Optional[Iterable[str]] = None, exclude: Iterable[str] = ()) -> list[Job]:
    """Every registered attack under every configuration it supports at ``budget``."""
    attacks = available_attacks()
    only = set(only) if only is not None else None
    exclude = set(exclude)
    if only is not None:
        unknown = sorted(n for n in only if n not in attacks and not any(n.startswith(a + "--") for a in attacks))
        if unknown:
            raise AuditError(f"unknown attack(s) {unknown}; available: {sorted(attacks)}")
    jobs, seen = [], set()
    for name, cls in attacks.items():
        for params, role in _variants(cls, budget):
            jid = job_id(name, params)
            if jid in seen:
                continue
            if only is not None and name not in only and jid not in only:
                continue
            if name in exclude or jid in exclude:
                continue
            seen.add(jid)
            jobs.append(Job(jid, name, params, role))
    return jobs


def victim_sizes(jobs: Sequence[Job], budget: str, seed: int, dataset: str, data_dir: Optional[str | Path],
                 notes: list[str]) -> dict[str, int]:
    """The one victim the jobs share: the largest sizes any job asks for, cut to what ``dataset`` holds.

    A cut is explained in ``notes``; a dataset that cannot be loaded is an :class:`AuditError`.
    """
    sizes: dict[str, int] = dict(MIN_VICTIM_SIZES)
    for j in jobs:
        for k, v in j.make(budget, seed, "cpu", False).victim_sizes().items():
            sizes[k] = max(sizes.get(k, 0), int(v))
    try:
        train, test = load_splits(dataset, data_dir)
    except (FileNotFoundError, ValueError, OSError) as exc:
        where = f" from {data_dir}" if data_dir is not None else ""
        raise AuditError(f"cannot load dataset {dataset!r}{where}: {exc}") from None
    room = len(train)
    if sizes["n_private"] + sizes["n_public"] > room:
        f = room / (sizes["n_private"] + sizes["n_public"])
        new = {"n_private": int(sizes["n_private"] * f), "n_public": room - int(sizes["n_private"] * f)}
        notes.append(f"{dataset} has {room} training images: the victim's private/public pools were cut from "
                     f"{sizes['n_private']}/{sizes['n_public']} to {new['n_private']}/{new['n_public']}")
        sizes.update(new)
    if sizes["n_heldout"] > len(test):
        notes.append(f"{dataset} has {len(test)} test images: held-out set cut from {sizes['n_heldout']}")
        sizes["n_heldout"] = len(test)
    return sizes
