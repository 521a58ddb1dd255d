"""Mutual information between what the cloud sees and labels / embedding coordinates.

``leak-mutual-info`` hands the scorer the top-``k`` principal components of the scrambled
images (or of the log cloud outputs).  The scorer estimates, with scikit-learn's kNN
estimators (``mutual_info_classif`` / ``mutual_info_regression``, ``random_state=0``):

* ``mi_label`` (primary): the largest MI between one component and the label;
* ``mi_embedding``: over the first ``n_coords`` embedding coordinates (PCA scores of the
  originals for channels without an embedding), the mean of the largest MI with one component;

each against a permutation null (its mean is the chance level: the estimator's bias at zero
MI), with a permutation p-value, and the estimator's bias on bivariate Gaussians of known MI
at the same sample size (``curves["estimator_known_case"]``).  Units: nats.

Example:
    >>> import warnings
    >>> from attacks.controls import identity_victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = identity_victim(dataset="digits", n_private=100, n_public=8, n_heldout=8)
    >>> r = MutualInfo(budget="smoke", seed=0, verbose=False, n_perm=19)(v)
    >>> r.p_values["mi_label"] <= 0.05
    True
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from attacks.leakage.common import LeakageAttack
from attacks.leakage.features import view_features
from attacks.leakage.outputs import AttackerFeatures
from attacks.registry import register_attack
from attacks.threat import ThreatModel
from attacks.victim import AttackerView


@register_attack
class MutualInfo(LeakageAttack):
    """Principal components of what the cloud sees, for kNN mutual-information estimates."""

    name = "leak-mutual-info"
    PARAMS: ClassVar[dict] = {"source": str, "k": int, "n_perm": int, "n_neighbors": int, "n_coords": int}
    BUDGETS: ClassVar[dict] = {
        "smoke": {"source": "scrambled", "k": 8, "n_perm": 50, "n_neighbors": 3, "n_coords": 4},
        "standard": {"source": "scrambled", "k": 8, "n_perm": 200, "n_neighbors": 3, "n_coords": 8},
        "full": {"source": "scrambled", "k": 16, "n_perm": 500, "n_neighbors": 3, "n_coords": 16}}

    def validate_params(self) -> None:
        super().validate_params()
        self._positive("k", "n_perm", "n_neighbors", "n_coords")

    def threat_model(self) -> ThreatModel:
        return ThreatModel(cloud_outputs=self.source == "outputs")

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> AttackerFeatures:
        f = view_features(view, self.source, k=self.params["k"])
        return AttackerFeatures(f, np.arange(view.num_targets), source=self.source, n_perm=self.params["n_perm"],
                                n_neighbors=self.params["n_neighbors"], n_coords=self.params["n_coords"])
