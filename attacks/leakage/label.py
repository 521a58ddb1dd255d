"""Label leakage: what a curious cloud learns about labels with few or no labelled examples.

* ``leak-label-probe``: a linear probe (logistic regression) on principal components of the
  scrambled images (or of the log cloud outputs), trained on a few labelled targets;
* ``leak-label-mlp``: the same with a small network (one hidden layer, L-BFGS);
* ``leak-clustering``: k-means on the cloud outputs (no labels at all), scored by
  Hungarian-matched accuracy and NMI against a permutation null.

Probes are scored on the unlabelled targets (majority-class chance, Wilson interval,
binomial p-value).

Example:
    >>> import warnings
    >>> from attacks.controls import identity_victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = identity_victim(dataset="digits", n_private=120, n_public=8, n_heldout=8)
    >>> r = LabelProbe(budget="smoke", seed=0, verbose=False, n_labelled=60)(v)
    >>> r.metrics["accuracy"] > r.chance["accuracy"], r.p_values["accuracy"] < 0.05
    (True, True)
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from attacks.base import LabelPredictions
from attacks.leakage.common import LeakageAttack, SourceParams, standardize, sub_seed
from attacks.leakage.features import view_features
from attacks.leakage.outputs import ClusterAssignments
from attacks.params import param
from attacks.registry import register_attack
from attacks.threat import ThreatModel
from attacks.victim import AttackerView

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ProbeParams(SourceParams):
    """Parameters of the label probes."""

    n_labelled: int = param(doc="targets whose labels the attacker knows (its training set)", ge=2)
    k: int = param(doc="principal components of the observations the probe sees", ge=1)


@dataclass(frozen=True, kw_only=True)
class ClusteringParams(SourceParams):
    """Parameters of k-means clustering."""

    n_clusters: int = param(doc="the attacker's guess of the number of classes", ge=2)
    k: int = param(doc="principal components clustered", ge=1)
    n_init: int = param(doc="k-means restarts", ge=1)


class _Probe(LeakageAttack):
    Params: ClassVar[type] = ProbeParams

    def threat_model(self) -> ThreatModel:
        return ThreatModel(cloud_outputs=self.source == "outputs", labelled_examples=self.params["n_labelled"])

    def _model(self, seed: int):
        raise NotImplementedError

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> LabelPredictions:
        f = standardize(view_features(view, self.source, k=self.params["k"]))
        lab_idx, lab = view.labelled_indices, view.labelled_labels
        if len(np.unique(lab)) < 2:
            pred = np.full(view.num_targets, lab[0])
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence warnings on tiny training sets
                pred = self._model(sub_seed(rng)).fit(f[lab_idx], lab).predict(f)
        return LabelPredictions(np.asarray(pred), np.arange(view.num_targets))


@register_attack
class LabelProbe(_Probe):
    """Linear probe (logistic regression) on what the cloud sees, from a few labels."""

    name = "leak-label-probe"

    def _model(self, seed: int):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1.0, max_iter=2000, random_state=seed)


@register_attack
class LabelMLP(_Probe):
    """A small network (one hidden layer of 64, L-BFGS, weight decay) from a few labels."""

    name = "leak-label-mlp"

    def _model(self, seed: int):
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-2, solver="lbfgs", max_iter=500, random_state=seed)


@register_attack
class Clustering(LeakageAttack):
    """k-means on principal components of the cloud outputs (or scrambled images); no labels.

    The attacker's guess of the number of classes is ``n_clusters``.
    """

    name = "leak-clustering"
    Params: ClassVar[type] = ClusteringParams

    def threat_model(self) -> ThreatModel:
        return ThreatModel(cloud_outputs=self.source == "outputs")

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> ClusterAssignments:
        from sklearn.cluster import KMeans

        f = view_features(view, self.source, k=self.params["k"])
        km = KMeans(n_clusters=self.params["n_clusters"], n_init=self.params["n_init"], random_state=sub_seed(rng))
        return ClusterAssignments(km.fit_predict(f), np.arange(view.num_targets), source=self.source)
