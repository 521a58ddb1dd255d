"""Ciphertext-only key estimation with public data (the NeuraCrypt attack, adapted).

The attacker holds the victim's scrambled images and a pool of public images of the same
kind, unpaired, and knows the spec but not the key.  It (1) fits its own whitened PCA on the
public images (the victim's encoder is unknown), (2) samples ``n_keys`` random keys of the
public spec, scrambles public images under each, and learns key-invariant statistics
(:class:`~.matching.InvariantModel`), (3) when challenged with candidate originals, matches
scrambled targets to candidates by graph matching plus a unary term (Hungarian projection),
then (4) fits a linear surrogate key on the matched pairs and re-assigns, ``refine`` times.

Specs with a carrier (the ``default`` preset: a secret image common to every scrambled image,
plus a faint signal linear in the embedding up to a per-image scale): the carrier dominates
every image and would make all of them look alike, so it is estimated by the mean of the
scrambled images and subtracted first (the targets' mean for the victim; each random key's
own mean while learning), and the refinement fits directions (unit-norm residuals against
unit-norm embeddings), as the per-image standardization forgets the norm.

The re-identification challenge (targets against their shuffled originals, pool size K,
chance 1/K) is set by the scorer (:func:`~.scoring.score_matching`): the attacker's view only
holds a disjoint public pool, so the candidates are handed to :meth:`Reidentifier.match`.

Example:
    >>> import warnings
    >>> from attacks.key_estimation.victims import small_victim
    >>> v = small_victim(dataset="digits", preset="linear", seed=0, n_private=32, n_public=256, n_heldout=8)
    >>> r = CiphertextOnlyKeyEstimation(seed=0, verbose=False, pool_sizes=(16,), n_keys=2)(v)
    >>> r.metrics["reid_accuracy"] > 3 / 16
    True
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from attacks.base import Attack
from attacks.key_estimation.fitting import pca_coordinates
from attacks.key_estimation.linear_fit import as_unit_float, link_for, to_link
from attacks.key_estimation.matching import (InvariantModel, candidate_features, graph_match, refine_linear,
                                             region_pixels, target_stats)
from attacks.key_estimation.outputs import Matching
from attacks.params import param
from attacks.registry import register_attack
from attacks.threat import ThreatModel
from attacks.victim import AttackerView
from owsd.keys import SECRET_BYTES, Key
from owsd.scrambler import LossyOutputWarning, Scrambler
from owsd.spec import ScramblerSpec

log = logging.getLogger(__name__)


def _carrier_estimate(images: np.ndarray) -> np.ndarray:
    """The carrier common to all images of one key: their mean (float64)."""
    return as_unit_float(images).mean(0)


@dataclass
class Reidentifier:
    """The attacker's state after learning: its PCA, the invariant model, the targets' statistics."""

    spec: ScramblerSpec
    targets: np.ndarray
    mean: np.ndarray
    enc: np.ndarray
    model: InvariantModel
    regions: list
    link: str
    refine: int
    restarts: int
    refine_pixels: np.ndarray
    info: dict = field(default_factory=dict)
    carrier: Optional[np.ndarray] = None

    def residuals(self, y: np.ndarray) -> np.ndarray:
        """Scrambled images minus the estimated carrier (unchanged when the spec has none)."""
        if self.carrier is None:
            return y
        return as_unit_float(y) - self.carrier

    def embed(self, images: np.ndarray) -> np.ndarray:
        x = as_unit_float(images).reshape(len(images), -1)
        e = (x - self.mean) @ self.enc.T
        d = self.spec.embedding_dim
        return np.pad(e, ((0, 0), (0, d - e.shape[1]))) if e.shape[1] < d else e

    def match(self, target_indices: np.ndarray, candidates: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
        """For each target index, the index of the candidate original it is matched to."""
        y = self.residuals(self.targets[np.asarray(target_indices)])
        su, sp = target_stats(y, self.link, self.regions)
        e = self.embed(candidates)
        pu, pp = self.model.predict(*candidate_features(e, self.spec.input_shape))
        w = 1.0 / (2 * self.model.pair_sigma ** 2)
        u = -(((su[:, None, :] - pu[None, :, :]) / self.model.unary_sigma) ** 2).sum(2) / 2
        perm = graph_match(list(sp), list(pp), list(w), u, rng=rng, restarts=self.restarts)
        if self.refine and len(y) > 2 * (e.shape[1] + 1):
            t = to_link(y, self.link)[:, self.refine_pixels]
            if self.carrier is not None:  # standardized: directions only
                t = t - t.mean(1, keepdims=True)
                t = t / (np.linalg.norm(t, axis=1, keepdims=True) + 1e-300)
                e = e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-300)
            perm = refine_linear(t, e, perm, iters=self.refine)
        return perm


@dataclass(frozen=True, kw_only=True)
class CiphertextOnlyParams:
    """Parameters of ciphertext-only re-identification."""

    n_aux: int = param(doc="public images (PCA and invariant learning)", ge=4)
    n_keys: int = param(doc="random keys the invariants are learned under", ge=1)
    n_train: int = param(doc="public images scrambled per key", ge=4)
    grid: int = param(doc="regions per side of the image", ge=1)
    pixels_per_region: int = param(doc="scrambled pixels sampled per region", ge=1)
    restarts: int = param(doc="restarts of graph matching", ge=1)
    refine: int = param(doc="alternations of linear-surrogate refinement", ge=0)
    pool_sizes: tuple[int, ...] = param(doc="candidate-pool sizes of the scorer's challenges", ge=2, min_len=1)
    trials: int = param(doc="challenges per pool size", ge=1)


@register_attack
class CiphertextOnlyKeyEstimation(Attack):
    """Re-identify scrambled images among public candidates with key-invariant statistics.

    Parameters: ``n_aux`` public images (PCA and invariant learning), ``n_keys`` random keys,
    ``n_train`` public images scrambled per key, ``grid`` (regions per side), ``pixels_per_region``,
    ``restarts`` of graph matching, ``refine`` alternations of linear-surrogate fitting,
    ``pool_sizes`` and ``trials`` of the scorer's challenges.
    """

    name = "key-ciphertext-only"
    family = "key-estimation"
    Params = CiphertextOnlyParams

    def victim_sizes(self) -> dict:
        sizes = super().victim_sizes()
        sizes["n_private"] = max(sizes.get("n_private", 0), max(self.params["pool_sizes"]))
        sizes["n_public"] = max(sizes.get("n_public", 0), self.params["n_aux"])
        return sizes

    def threat_model(self) -> ThreatModel:
        return ThreatModel(sees_scrambled=True, auxiliary="public images of the same kind, unpaired",
                           auxiliary_size=self.params["n_aux"], auxiliary_closeness="same-distribution")

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> Matching:
        p, spec = self.params, view.spec
        if spec is None:
            raise ValueError(f"{self.name} needs the public spec")
        aux = view.auxiliary.images
        x = as_unit_float(aux).reshape(len(aux), -1)
        mean, enc, _ = pca_coordinates(x, spec.embedding_dim)
        link = link_for(spec)
        regions = region_pixels(view.image_shape, p["grid"], p["pixels_per_region"], rng)
        reid = Reidentifier(spec=spec, targets=view.targets, mean=mean, enc=enc, model=None, regions=regions,
                            link=link, refine=p["refine"], restarts=p["restarts"],
                            refine_pixels=np.sort(rng.choice(int(np.prod(view.image_shape)),
                                                             min(8192, int(np.prod(view.image_shape))),
                                                             replace=False)),
                            carrier=_carrier_estimate(view.targets) if spec.carrier != "none" else None)
        feats, stats = [], []
        for _ in tqdm(range(p["n_keys"]), desc="random keys", disable=not self.verbose):
            idx = rng.choice(len(aux), min(p["n_train"], len(aux)), replace=False)
            e = reid.embed(aux[idx]).astype(np.float32)
            with warnings.catch_warnings():  # uint8, as before Scrambler.scramble's default became float32
                warnings.simplefilter("ignore", LossyOutputWarning)
                y = Scrambler(Key(spec=spec, secret=rng.bytes(SECRET_BYTES)), collapse="never").scramble(
                    e, verbose=False, out_dtype=torch.uint8)
            if spec.carrier != "none":  # the key's own carrier, estimated as for the targets
                y = as_unit_float(y) - _carrier_estimate(y)
            feats.append(candidate_features(e, spec.input_shape))
            stats.append(target_stats(y, link, regions))
        reid.model = InvariantModel.fit(feats, stats)
        info = {"pca_dims": int(enc.shape[0]), "n_keys": p["n_keys"], "n_train": p["n_train"],
                "pair_r2_mean": float(np.mean(reid.model.pair_r2)), "unary_r2_mean": float(np.mean(reid.model.unary_r2)),
                "pair_r2": reid.model.pair_r2.tolist(), "unary_r2": reid.model.unary_r2.tolist()}
        log.info("invariant statistics: pairwise R^2 %s, unary R^2 %s", np.round(reid.model.pair_r2, 3),
                 np.round(reid.model.unary_r2, 3))
        reid.info = info
        return Matching(reidentifier=reid, pool_sizes=tuple(p["pool_sizes"]), trials=p["trials"], info=info)
