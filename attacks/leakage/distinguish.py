"""Distinguishing games: does the victim's traffic carry a recognisable signature?

The attack fits a one-class model of the traffic it has seen (a probabilistic PCA of the
scrambled targets: Mahalanobis distance in the top-``k`` principal subspace plus the scaled
residual off it) and returns its log-likelihood score.  The challenger (scorer) then draws
``n_challenge`` never-sent images, scrambles them with the victim's channel, and as many
*references*:

* ``leak-key-distinguish``: the same images under another key of the same scheme (another
  organization using the same public architecture; for the controls, another permutation /
  noise stream; the identity has no key and must not be flagged);
* ``leak-noise-distinguish``: uniform random images (is scrambled traffic noise-like?).

Scored by the AUC of victim-vs-reference (chance 0.5, stratified bootstrap CI, one-sided
Mann-Whitney p-value).

Example:
    >>> import warnings
    >>> from attacks.controls import permutation_victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = permutation_victim(dataset="digits", n_private=60, n_public=8, n_heldout=30)
    >>> r = KeyDistinguish(budget="smoke", seed=0, verbose=False, n_challenge=30)(v)
    >>> r.metrics["auc"] > 0.9
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np
import torch

from attacks.leakage.common import LeakageAttack, sub_seed
from attacks.leakage.features import GramPCA
from attacks.leakage.groundtruth import no_other_key
from attacks.leakage.outputs import Distinguisher
from attacks.params import param
from attacks.registry import register_attack
from attacks.threat import ThreatModel
from attacks.victim import AttackerView, Victim


class OneClassPPCA:
    """Probabilistic-PCA log-likelihood (up to constants) of images, fitted on one class."""

    def __init__(self, k: int) -> None:
        self.k = k

    def fit(self, x: np.ndarray) -> "OneClassPPCA":
        self.pca = GramPCA(k=self.k).fit(x)
        lam = self.pca.eigvals
        rest = max(self.pca.dim - len(lam), 1)
        self.sigma2 = max((self.pca.total_var - lam.sum()) / rest, 1e-12)
        self.lam = np.maximum(lam, self.sigma2)
        return self

    def score(self, x: np.ndarray, _outputs: Optional[np.ndarray] = None) -> np.ndarray:
        z, r = self.pca.residual(x)
        return -((z.astype(np.float64) ** 2 / self.lam).sum(1) + r / self.sigma2)


@dataclass(frozen=True, kw_only=True)
class DistinguishParams:
    """Parameters of the distinguishing games."""

    k: int = param(doc="principal components of the one-class PPCA model", ge=1)
    n_challenge: int = param(doc="challenge images per class in the game", ge=1)


class _Distinguish(LeakageAttack):
    reference: ClassVar[str] = "other-key"
    Params: ClassVar[type] = DistinguishParams

    def threat_model(self) -> ThreatModel:
        return ThreatModel()

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> Distinguisher:
        model = OneClassPPCA(self.params["k"]).fit(view.targets)
        return Distinguisher(score=model.score, reference=self.reference, n_challenge=self.params["n_challenge"],
                             challenge_seed=sub_seed(rng))


@register_attack
class KeyDistinguish(_Distinguish):
    """Tells the victim's key from another key of the same architecture.

    Needs a target with a notion of another key (:func:`~attacks.leakage.groundtruth.other_key_channel`);
    on a callable without one it is not applicable (:meth:`unmet`).
    """

    name = "leak-key-distinguish"
    reference = "other-key"

    def unmet(self, victim: Victim) -> Optional[str]:
        why = no_other_key(victim)
        return None if why is None else f"{self.name} needs the same scheme under another key: {why}"


@register_attack
class NoiseDistinguish(_Distinguish):
    """Tells the victim's scrambled images from uniform random noise."""

    name = "leak-noise-distinguish"
    reference = "noise"
