"""Scoring settings: how precisely an outcome is measured, chosen by the runner, not the attack.

An attack's parameters (:mod:`attacks.params`) say what the attacker does.  The statistics its
score is reported with (bootstrap resamples, permutation and sign-flip nulls, the kNN
estimator's neighbours, the reported operating points) are the runner's choice: the audit
runner, :func:`analysis.security.run_attack`, the leakage suite and ``owsd attack`` (its
``--scoring key=value``) pass a :class:`ScoringConfig` to :meth:`attacks.base.Attack.__call__`,
which hands it to the scorer; without one, ``__call__`` takes the attack budget's row of
:data:`attacks.budgets.SCORING`.  Fields without a default are given by every budget;
``result.json`` records the settings used (``scoring``).

Example:
    >>> ScoringConfig.for_budget("standard").mantel_permutations
    999
    >>> ScoringConfig.for_budget("smoke", mi_permutations=19).mi_permutations
    19
    >>> ScoringConfig.for_budget("smoke", mantel_permutations=0)
    Traceback (most recent call last):
    ...
    ValueError: scoring: parameter mantel_permutations must be >= 1, got 0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from attacks.budgets import BUDGETS, SCORING
from attacks.params import param, resolve


@dataclass(frozen=True, kw_only=True)
class ScoringConfig:
    """The settings of every scorer's statistics (one frozen value per run)."""

    # shared by several scorers (the same at every budget)
    bootstrap: int = param(1000, doc="bootstrap resamples of mean/median/max CIs (key estimation, inversion, "
                                     "structure)", ge=1)
    sign_flips: int = param(2000, doc="sign flips of the paired permutation test of a mean (inversion, structure)",
                            ge=1)
    auc_bootstrap: int = param(500, doc="stratified-bootstrap resamples of AUC CIs (linking, distinguishing, "
                                        "membership)", ge=0)
    gap_null: int = param(99, doc="i.i.d. Gaussian traffic spectra in the null of the intrinsic-dimension gap "
                                  "(structure)", ge=1)
    # one leakage test each
    cluster_permutations: int = param(doc="permutations of the cluster ids in the clustering null", ge=1)
    nmi_bootstrap: int = param(200, doc="bootstrap resamples of the NMI's basic interval (clustering)", ge=1)
    mantel_permutations: int = param(doc="Mantel permutations (distance preservation)", ge=1)
    mantel_bootstrap: int = param(doc="object-bootstrap resamples of the Mantel CI (0: a point)", ge=0)
    tpr_bootstrap: int = param(doc="stratified-bootstrap resamples of the TPR-at-FPR CIs (membership)", ge=0)
    membership_fprs: tuple[float, ...] = param((0.01, 0.001, 0.0), doc="false-positive rates at which the "
                                               "membership TPR is reported", ge=0, lt=1, min_len=1)
    mi_permutations: int = param(doc="permutations of the mutual-information null", ge=1)
    mi_neighbors: int = param(3, doc="neighbours of the kNN mutual-information estimator", ge=1)
    mi_coords: int = param(doc="embedding coordinates whose mutual information is estimated", ge=1)

    @classmethod
    def for_budget(cls, budget: str, **overrides: Any) -> "ScoringConfig":
        """The budget's row of :data:`attacks.budgets.SCORING`, with ``overrides``, validated."""
        if budget not in BUDGETS:
            raise ValueError(f"scoring: budget must be one of {BUDGETS}, got {budget!r}")
        return resolve(cls, {**SCORING[budget], **overrides}, owner="scoring")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


for _b in BUDGETS:  # a bad row fails at import
    ScoringConfig.for_budget(_b)
