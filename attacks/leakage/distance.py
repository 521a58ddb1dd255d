"""Distance preservation and linkability of near-duplicates.

* ``leak-distance-mantel``: the attacker's pairwise distances between targets (scrambled
  pixels, or log cloud outputs) against the distances between the originals (and between
  the embeddings): Spearman correlation, Mantel permutation p-value, object bootstrap CI;
* ``leak-near-duplicate``: a linking rule (nearest target in the attacker's space); the
  challenger later sends augmented copies of some private images (pixel noise, brightness,
  a one-pixel shift) among never-sent images; scored by top-1 retrieval accuracy against
  1/n chance and by the AUC of telling re-sends from new images.

Example:
    >>> import warnings
    >>> from attacks.controls import noise_victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = noise_victim(dataset="digits", n_private=60, n_public=8, n_heldout=8)
    >>> from attacks.scoring import ScoringConfig
    >>> r = DistanceMantel(budget="smoke", seed=0, verbose=False, n_pairs_items=40)(
    ...     v, scoring=ScoringConfig.for_budget("smoke", mantel_permutations=199))
    >>> r.p_values["spearman"] > 0.01
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np
import torch

from attacks.leakage.common import LeakageAttack, SourceParams, sub_seed
from attacks.leakage.features import cloud_features, pairwise_sq_dists
from attacks.leakage.outputs import Linker, PairwiseDistances
from attacks.params import param
from attacks.registry import register_attack
from attacks.threat import ThreatModel
from attacks.victim import AttackerView

log = logging.getLogger(__name__)


def _observed(view: AttackerView, source: str) -> np.ndarray:
    if source == "outputs":
        if view.target_outputs is None:
            raise ValueError("source='outputs' needs cloud outputs in the view")
        return cloud_features(view.target_outputs)
    return view.targets


@dataclass(frozen=True, kw_only=True)
class MantelParams(SourceParams):
    """Parameters of the distance-preservation test."""

    n_pairs_items: int = param(doc="targets whose pairwise distances are compared", ge=4)


@dataclass(frozen=True, kw_only=True)
class LinkingParams(SourceParams):
    """Parameters of the linking games (re-sends among new images)."""

    n_resend: int = param(doc="private images the victim sends again", ge=1)
    n_new: int = param(doc="never-sent images mixed with them", ge=1)


@register_attack
class DistanceMantel(LeakageAttack):
    """Euclidean distances between a random subset of targets, in what the cloud sees."""

    name = "leak-distance-mantel"
    Params: ClassVar[type] = MantelParams

    def threat_model(self) -> ThreatModel:
        return ThreatModel(cloud_outputs=self.source == "outputs")

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> PairwiseDistances:
        m = min(self.params["n_pairs_items"], view.num_targets)
        idx = np.sort(rng.choice(view.num_targets, m, replace=False))
        d = np.sqrt(pairwise_sq_dists(_observed(view, self.source)[idx]))
        return PairwiseDistances(d, idx, source=self.source)


class LinkingAttack(LeakageAttack):
    """Nearest-target linking of new traffic (the rule is applied by the challenger)."""

    resend: ClassVar[str] = "exact"
    Params: ClassVar[type] = LinkingParams

    def threat_model(self) -> ThreatModel:
        return ThreatModel(cloud_outputs=self.source == "outputs")

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> Linker:
        seen = _observed(view, self.source)
        source = self.source

        def link(scrambled: np.ndarray, outputs: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            new = cloud_features(outputs) if source == "outputs" else scrambled
            d = pairwise_sq_dists(new, seen)
            best = d.argmin(1)
            return best, d[np.arange(len(d)), best]

        return Linker(link=link, resend=self.resend, n_resend=self.params["n_resend"], n_new=self.params["n_new"],
                      source=source, needs_outputs=source == "outputs", challenge_seed=sub_seed(rng))


@register_attack
class NearDuplicate(LinkingAttack):
    """Links augmented copies of images to the originals it saw (top-1 nearest neighbour)."""

    name = "leak-near-duplicate"
    resend = "augment"
