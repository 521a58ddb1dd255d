"""``structure-ciphertext-only``: re-identify and reconstruct from scrambled images alone.

Threat model: a passive observer of the traffic (the cloud, or anyone on the wire) that sees
``n_traffic`` scrambled images, knows the public spec (it also runs without one: dimension and
geometry are then measured), and holds ``n_aux`` public images of the same kind, unpaired.
No known pairs, no chosen queries, no cloud outputs, no knowledge of the victim's encoder.
It fits the traffic's affine hull, recovers every image's embedding direction up to one
rotation, finds the rotation against its own PCA of the public images
(:func:`~attacks.structure.pipeline.recover`), then the scorer challenges it to
re-identify targets among held-out distractors and grades its reconstructions against the
encoder's own bound.  ``traffic_curve`` re-runs the recovery on prefixes of the traffic (and
``aux_curve`` with fewer public images) so the result states the traffic at which the kernel falls.

Example (a tiny run on the built-in digits, to show the contract; at this size the attack is
near chance: on MNIST's standard budget it re-identifies every target, see tests/security):
    >>> from attacks.key_estimation.victims import small_victim
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = small_victim(dataset="digits", preset="linear", seed=0, n_private=200, n_public=300, n_heldout=16)
    >>> r = StructureCiphertextOnly(seed=0, verbose=False, n_traffic=200, n_aux=300, n_basis=32, restarts=1,
    ...                             pool_sizes=(16,), n_targets=64, n_reconstruct=32)(v)
    >>> r.threat_model["known_pairs"], r.threat_model["cloud_outputs"], r.chance["reid_accuracy@16"]
    (0, False, 0.0625)
    >>> 0.0 <= r.metrics["reid_accuracy@16"] <= 1.0 and "ssim_bound" in r.metrics
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from attacks.base import Attack
from attacks.params import param
from attacks.registry import register_attack
from attacks.structure.outputs import StructureRecovery
from attacks.structure.pipeline import recover
from attacks.threat import ThreatModel
from attacks.victim import AttackerView

log = logging.getLogger(__name__)

@dataclass(frozen=True, kw_only=True)
class StructureParams:
    """Parameters of the structure attacks (victim sizes follow from them)."""

    n_traffic: int = param(doc="observed images (scrambled, or cloud outputs) the structure is learned from", ge=3)
    n_aux: int = param(doc="public images of the same kind, unpaired", ge=1)
    n_basis: int = param(doc="basis points of the hull", ge=3)
    max_dim: int = param(doc="principal directions aligned at most", ge=1)
    clusters: int = param(doc="clusters of the matcher (0: chosen from the data)", ge=0)
    restarts: int = param(doc="restarts of the alignment", ge=1)
    n_ref: int = param(doc="reference points of the alignment (0: all)", ge=0)
    pool_sizes: tuple[int, ...] = param(doc="candidate-pool sizes of the re-identification games", ge=2,
                                        min_len=1)
    n_targets: int = param(doc="targets of the re-identification games", ge=1)
    n_reconstruct: int = param(doc="targets reconstructed", ge=1)
    traffic_curve: tuple[int, ...] = param(doc="smaller traffic sizes of the learning curve", ge=3)
    aux_curve: tuple[int, ...] = param(doc="smaller public-set sizes of the learning curve", ge=3)


class StructureAttack(Attack):
    """Shared parameters, budgets checks and curve loop of the structure attacks."""

    family = "inversion"
    Params = StructureParams
    kind = "scrambled"

    def victim_sizes(self) -> dict:
        p = self.params
        return {"n_private": p["n_traffic"], "n_public": p["n_aux"], "n_heldout": max(p["pool_sizes"]) - 1}

    def threat_model(self) -> ThreatModel:
        p = self.params
        sees = self.kind == "scrambled"
        return ThreatModel(sees_scrambled=sees, cloud_outputs=not sees,
                           auxiliary="public images of the same kind, unpaired", auxiliary_size=p["n_aux"],
                           auxiliary_closeness="same-distribution", candidate_pool=max(p["pool_sizes"]))

    def observed(self, view: AttackerView) -> np.ndarray:
        return view.targets

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> StructureRecovery:
        p = self.params
        data = self.observed(view)
        if data is None:
            raise ValueError(f"{self.name}: the view holds no traffic ({self.kind})")
        n = min(p["n_traffic"], len(data))
        public = view.auxiliary.images[: p["n_aux"]]
        opts = dict(spec=view.spec, kind=self.kind, max_dim=p["max_dim"], clusters=p.get("clusters") or None,
                    restarts=p["restarts"], n_ref=p.get("n_ref") or None)
        points = [(t, len(public)) for t in p["traffic_curve"] if t < n]
        points += [(n, a) for a in p["aux_curve"] if a < len(public)]
        main_rng, *point_rngs = rng.spawn(1 + len(points))  # the main result does not depend on the curve
        curve = []
        for (t, a), r_pt in tqdm(list(zip(points, point_rngs)), desc="traffic curve",
                                 disable=not self.verbose or not points):
            r = recover(data[:t], public=public[:a], n_basis=min(p["n_basis"], t), rng=r_pt, **opts)
            curve.append({"n_traffic": t, "n_public": a, "matcher": r["matcher"], "seconds": r["seconds"],
                          "intrinsic_dim": r["structure"]["intrinsic_dim"],
                          "alignment_objective": r["structure"]["alignment_objective"]})
        main = recover(data[:n], public=public, n_basis=min(p["n_basis"], n), rng=main_rng, **opts)
        info = {"n_traffic": n, "n_public": len(public), "seconds_main": main["seconds"],
                "seconds_curve": float(sum(c["seconds"] for c in curve))}
        return StructureRecovery(matcher=main["matcher"], n_traffic=n, n_public=len(public),
                                 structure=main["structure"], spectrum=main["spectrum"],
                                 heldout_residual=main["heldout_residual"], pool_sizes=tuple(p["pool_sizes"]),
                                 n_targets=p["n_targets"], n_reconstruct=p["n_reconstruct"], target_kind=self.kind,
                                 curve=curve, info=info)


@register_attack
class StructureCiphertextOnly(StructureAttack):
    """Hull, rays and alignment from scrambled images alone (see the module doc)."""

    name = "structure-ciphertext-only"
