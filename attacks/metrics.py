"""Metric directions, declared by the scorers that produce the metrics.

Each scoring module declares, next to its scorer, which way its metrics help the attacker
and the value of a perfect attack (:func:`declare`).  A :class:`~attacks.base.Score`
carries the declarations of its metrics, every ``result.json`` records them
(``metric_specs``), and the report reads them from there (:mod:`analysis.report`).  A
metric nobody declared counts as higher-is-attack with no perfect value.

Example:
    >>> declare(demo_error=lower(0.0))
    >>> metric_spec("demo_error")
    MetricSpec(higher_is_attack=False, perfect=0.0)
    >>> metric_spec("never-declared") is None
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class MetricSpec:
    """Which way a metric helps the attacker, and its value for a perfect attack (``None``: none)."""

    higher_is_attack: bool
    perfect: Optional[float] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SPECS: dict[str, MetricSpec] = {}


def higher(perfect: Optional[float] = None) -> MetricSpec:
    """A metric where a larger value means a stronger attack (accuracy, AUC, SSIM)."""
    return MetricSpec(True, perfect)


def lower(perfect: Optional[float] = None) -> MetricSpec:
    """A metric where a smaller value means a stronger attack (an error)."""
    return MetricSpec(False, perfect)


def declare(**specs: MetricSpec) -> None:
    """Declare metrics (by name); a name may be declared again only with the same spec."""
    for name, spec in specs.items():
        if _SPECS.get(name, spec) != spec:
            raise ValueError(f"metric {name!r} is already declared as {_SPECS[name]}, not {spec}")
        _SPECS[name] = spec


def metric_spec(name: str) -> Optional[MetricSpec]:
    """The declaration of metric ``name``, or ``None``."""
    return _SPECS.get(name)


def declared_metrics() -> dict[str, MetricSpec]:
    """Every declared metric (those of the scorers imported so far)."""
    return dict(_SPECS)
