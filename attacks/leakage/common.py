"""Shared pieces of the leakage attacks: their base class and the ``source`` parameter.

Example:
    >>> LEAKAGE_VICTIM_SIZES["smoke"]["n_private"]
    200
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from attacks.base import Attack
from attacks.budgets import LEAKAGE_VICTIM_SIZES
from attacks.leakage.features import SOURCES
from attacks.params import param
from attacks.threat import Requirements
from owsd.internal import Classifier

#: the victim's internal-model training recipe (public: an attacker may know it)
INTERNAL_RECIPE: dict = {"kind": "mlp", "hidden": 256, "epochs": 30, "batch_size": 32, "lr": 1e-3, "dropout": 0.1}

__all__ = ["INTERNAL_RECIPE", "LEAKAGE_VICTIM_SIZES", "LeakageAttack", "SourceParams",
           "classifier_validation_positions", "standardize", "sub_seed"]


@dataclass(frozen=True, kw_only=True)
class SourceParams:
    """The ``source`` parameter of the leakage tests that can look at either observation."""

    source: str = param(doc="what the attacker analyses: the scrambled images or the cloud's output vectors",
                        choices=SOURCES)


class LeakageAttack(Attack):
    """Base of the leakage tests: family and the optional ``source`` parameter.

    ``source="scrambled"`` works on the scrambled images; ``"outputs"`` on the cloud's output
    vectors, and then the attack needs a cloud (its requirements follow the parameter).
    """

    family: ClassVar[str] = "leakage"

    @property
    def requirements(self) -> Requirements:
        return Requirements(cloud=self.source == "outputs")

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
    return Classifier.validation_positions(n, seed)
