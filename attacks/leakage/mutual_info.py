"""Mutual information between what the cloud sees and labels / embedding coordinates.

``leak-mutual-info`` hands the scorer the top-``k`` principal components of the scrambled
images (or of the log cloud outputs).  The scorer estimates, with scikit-learn's kNN
estimators (``mutual_info_classif`` / ``mutual_info_regression``, ``random_state=0``):

* ``mi_label`` (primary): the largest MI between one component and the label;
* ``mi_embedding``: over the first ``mi_coords`` embedding coordinates (PCA scores of the
  originals for channels without an embedding), the mean of the largest MI with one component;

each against a permutation null (its mean is the chance level: the estimator's bias at zero
MI), with a permutation p-value, and the estimator's bias on bivariate Gaussians of known MI
at the same sample size (``curves["estimator_known_case"]``).  Units: nats.  The estimator's
neighbours, ``mi_coords`` and the permutations are scoring settings chosen by the runner
(:class:`attacks.scoring.ScoringConfig`), not parameters of the attack.

Example:
    >>> import warnings
    >>> from attacks.controls import identity_victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = identity_victim(dataset="digits", n_private=100, n_public=8, n_heldout=8)
    >>> from attacks.scoring import ScoringConfig
    >>> scoring = ScoringConfig.for_budget("smoke", mi_permutations=19)
    >>> r = MutualInfo(budget="smoke", seed=0, verbose=False)(v, scoring=scoring)
    >>> r.p_values["mi_label"] <= 0.05
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from attacks.leakage.common import LeakageAttack, SourceParams
from attacks.leakage.features import view_features
from attacks.leakage.outputs import AttackerFeatures
from attacks.params import param
from attacks.registry import register_attack
from attacks.threat import ThreatModel
from attacks.victim import AttackerView


@dataclass(frozen=True, kw_only=True)
class MutualInfoParams(SourceParams):
    """Parameters of the kNN mutual-information estimates."""

    k: int = param(doc="principal components of the observations", ge=1)


@register_attack
class MutualInfo(LeakageAttack):
    """Principal components of what the cloud sees, for kNN mutual-information estimates."""

    name = "leak-mutual-info"
    Params: ClassVar[type] = MutualInfoParams

    def threat_model(self) -> ThreatModel:
        return ThreatModel(cloud_outputs=self.source == "outputs")

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> AttackerFeatures:
        f = view_features(view, self.source, k=self.params["k"])
        return AttackerFeatures(f, np.arange(view.num_targets), source=self.source)
