"""Metered oracles: every query an attacker sends is counted against its threat model.

The :class:`~attacks.victim.AttackerView` offers three oracles, each behind one
:class:`QueryMeter` whose budget comes from the :class:`~attacks.threat.ThreatModel`:

* ``scramble``: chosen inputs scrambled under the victim's key (:class:`ScrambleOracle`;
  budget ``chosen_queries``);
* ``cloud``: the cloud model on images of the attacker's choosing (:class:`CloudOracle`;
  budget ``model_queries`` when ``queried_model == "cloud"``, else 0).  The victim's own
  cloud outputs (``cloud_outputs``) are traffic the attacker observes, not queries;
* ``internal``: the victim's internal model on output vectors (granted by the membership
  games' challenger; budget ``model_queries`` when ``queried_model == "internal"``).

Asking any of them for more than its budget raises :class:`BudgetExceededError` (one
error type for every oracle); the counts used go to the result's ``cost["oracle_queries"]``.

Example:
    >>> m = QueryMeter("cloud", 3)
    >>> m.charge(2); m.used
    2
    >>> m.charge(2)
    Traceback (most recent call last):
    ...
    attacks.oracles.BudgetExceededError: cloud oracle: the threat model grants 3 queries; 2 used, 2 more asked
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

from attacks.threat import ThreatModel

log = logging.getLogger(__name__)

#: the oracles an attacker view may offer, in the order ``cost["oracle_queries"]`` lists them
ORACLES = ("scramble", "cloud", "internal")


class BudgetExceededError(RuntimeError):
    """The attack asked an oracle for more queries than its threat model grants."""


class QueryMeter:
    """Counts queries to one oracle against a fixed budget (``used`` never passes ``budget``)."""

    def __init__(self, name: str, budget: int) -> None:
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
            raise ValueError(f"{name} oracle: budget must be a non-negative integer, got {budget!r}")
        self.name, self.budget, self.used = name, budget, 0

    def charge(self, n: int) -> None:
        """Count ``n`` more queries, or raise :class:`BudgetExceededError` (nothing is counted then)."""
        n = int(n)
        if n < 0:
            raise ValueError(f"{self.name} oracle: cannot charge {n} queries")
        if self.used + n > self.budget:
            grant = "grants no queries" if self.budget == 0 else f"grants {self.budget} queries"
            raise BudgetExceededError(f"{self.name} oracle: the threat model {grant}; {self.used} used, {n} more asked")
        self.used += n

    def __repr__(self) -> str:
        return f"QueryMeter({self.name!r}, used {self.used} of {self.budget})"


def meters_for(threat: ThreatModel) -> dict[str, QueryMeter]:
    """One meter per oracle, with the budgets ``threat`` grants (0 where it grants none)."""
    model = threat.model_queries
    return {"scramble": QueryMeter("scramble", threat.chosen_queries),
            "cloud": QueryMeter("cloud", model if threat.queried_model == "cloud" else 0),
            "internal": QueryMeter("internal", model if threat.queried_model == "internal" else 0)}


class _Metered:
    """An oracle's view of its meter: the queries allowed (``budget``) and spent (``used``)."""

    _meter: QueryMeter

    @property
    def budget(self) -> int:
        return self._meter.budget

    @property
    def used(self) -> int:
        return self._meter.used


class ScrambleOracle(_Metered):
    """Chosen-input access to the victim's scrambler, counted by ``meter``."""

    def __init__(self, channel: Any, meter: QueryMeter, input_kind: str) -> None:
        self._channel, self._meter, self.input_kind = channel, meter, input_kind

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        if self.input_kind == "embedding" and not hasattr(self._channel, "scramble_embeddings"):
            raise TypeError("embedding queries need a channel that scrambles embeddings (OWSD)")
        self._meter.charge(len(inputs))
        if self.input_kind == "embedding":
            return self._channel.scramble_embeddings(np.asarray(inputs, np.float32))
        return self._channel.scramble_images(inputs)


class CloudOracle(_Metered):
    """The cloud model as the attacker may use it: ``predict`` is charged one query per image.

    Exposes the cloud's public description (``name``, ``input_size``, ``num_outputs``), not
    the model itself.
    """

    def __init__(self, cloud: Any, meter: QueryMeter) -> None:
        self._cloud, self._meter = cloud, meter
        self.name, self.input_size, self.num_outputs = cloud.name, cloud.input_size, cloud.num_outputs

    def predict(self, images: Any, *, batch_size: int = 64, verbose: bool = False) -> np.ndarray:
        self._meter.charge(len(images))
        return self._cloud.predict(images, batch_size=batch_size, verbose=verbose)

    def __repr__(self) -> str:
        return f"CloudOracle({self.name!r}, used {self.used} of {self.budget})"


def usage(meters: Optional[dict[str, QueryMeter]]) -> dict[str, int]:
    """``{oracle: queries used}`` for every oracle in :data:`ORACLES` (0 where none was offered)."""
    meters = meters or {}
    return {k: (meters[k].used if k in meters else 0) for k in ORACLES}
