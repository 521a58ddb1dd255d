"""Shared pieces of the leakage attacks: budgets, victim sizes, the ``source`` parameter.

Example:
    >>> LEAKAGE_VICTIM_SIZES["smoke"]["n_private"]
    200
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from attacks.base import Attack
from attacks.leakage.features import SOURCES
from attacks.threat import Requirements

#: the victim's internal-model training recipe (public: an attacker may know it)
INTERNAL_RECIPE: dict = {"kind": "mlp", "hidden": 256, "epochs": 30, "batch_size": 32, "lr": 1e-3, "dropout": 0.1}

#: victim sizes shared by every leakage test (one victim serves the whole suite)
LEAKAGE_VICTIM_SIZES: dict[str, dict] = {
    "smoke": {"n_private": 200, "n_public": 16, "n_heldout": 100},
    "standard": {"n_private": 600, "n_public": 16, "n_heldout": 200},
    "full": {"n_private": 1000, "n_public": 16, "n_heldout": 250},
}


class LeakageAttack(Attack):
    """Base of the leakage tests: family, sizes, and the optional ``source`` parameter.

    ``source="scrambled"`` works on the scrambled images; ``"outputs"`` on the cloud's output
    vectors (and then needs a cloud: the requirement is set per instance).
    """

    family: ClassVar[str] = "leakage"
    VICTIM_SIZES: ClassVar[dict[str, dict]] = LEAKAGE_VICTIM_SIZES

    def validate_params(self) -> None:
        src = self.params.get("source")
        if src is not None:
            if src not in SOURCES:
                raise ValueError(f"{self.name}: source must be one of {SOURCES}, got {src!r}")
            if src == "outputs" and not type(self).requirements.cloud:
                self.requirements = Requirements(cloud=True)
        for k, v in self.params.items():
            if isinstance(v, int) and not isinstance(v, bool) and v < 0:
                raise ValueError(f"{self.name}: parameter {k} must be non-negative, got {v}")

    def _positive(self, *names: str) -> None:
        for k in names:
            if self.params.get(k, 1) < 1:
                raise ValueError(f"{self.name}: parameter {k} must be at least 1, got {self.params[k]}")

    @property
    def source(self) -> str:
        return self.params.get("source", "scrambled")


def standardize(f: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column (constant columns left at zero)."""
    f = np.asarray(f, np.float64)
    return (f - f.mean(0)) / np.maximum(f.std(0), 1e-12)


def sub_seed(rng: np.random.Generator) -> int:
    """A 31-bit seed drawn from ``rng`` (for scikit-learn's ``random_state``)."""
    return int(rng.integers(0, 2 ** 31 - 1))


def classifier_validation_positions(n: int, seed: int) -> np.ndarray:
    """Training positions :class:`owsd.internal.Classifier` holds out for model selection.

    Mirrors its split (``torch.randperm`` on a generator seeded with ``seed``, the first 10%,
    none below 20 examples); those examples are seen only through early stopping.
    """
    from owsd.internal import Classifier

    return Classifier.validation_positions(n, seed)
