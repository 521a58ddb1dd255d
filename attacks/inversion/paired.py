"""Paired inversion: learn scrambled image -> original from pairs under the victim's key.

Threat model: the attacker holds ``pairs`` (original image, scrambled image) pairs made
under the victim's key (leaked pairs, or query access), knows the public architecture
(so the stem can undo its elementwise output map), and sees the victim's other scrambled
images.  It trains an encoder-decoder (:mod:`attacks.inversion.decoder`) from scrambled
image to original, never estimating the key (He, Zhang, Lee 2019; the inverse-
transformation networks against learnable image encryption), and reconstructs every
target it does not already hold a pair for.

Example:
    >>> import warnings
    >>> from attacks.victim import Victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = Victim.build(dataset="digits", preset="linear", seed=0, n_private=120, n_public=60, n_heldout=40)
    >>> r = InversionPaired(pairs=80, epochs=3, seed=0, verbose=False)(v)
    >>> r.metrics["n"], "ssim_mean" in r.chance
    (40.0, True)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from attacks.base import Attack
from attacks.inversion.common import (NetParams, features_for, scrambled_net, select_targets, train_kwargs,
                                      unit_images)
from attacks.inversion.outputs import Reconstructions
from attacks.inversion.training import train_inversion
from attacks.params import param
from attacks.registry import register_attack
from attacks.threat import ThreatModel
from attacks.victim import AttackerView

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PairedParams(NetParams):
    """Parameters of paired inversion."""

    pairs: int = param(doc="known (image, scrambled) pairs under the victim's key", ge=2)


@register_attack
class InversionPaired(Attack):
    """Train a decoder on (scrambled, original) pairs under the victim's key; invert the targets."""

    name = "inversion-paired"
    family = "inversion"
    Params = PairedParams

    def threat_model(self) -> ThreatModel:
        return ThreatModel(known_pairs=self.params["pairs"], pair_input="image", sees_scrambled=True)

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> Reconstructions:
        p = self.params
        x = features_for(view, view.pairs_scrambled, p["pool"])
        y = unit_images(view.pairs_inputs)
        net = scrambled_net(p, tuple(x.shape[1:]), tuple(y.shape[1:]), generator)
        curves = train_inversion(net, x, y, **train_kwargs(p), generator=generator, device=self.device,
                                 verbose=self.verbose)
        idx = select_targets(view, max_targets=p["max_targets"], rng=rng)
        recon = net.reconstruct(features_for(view, view.targets[idx], p["pool"]))
        return Reconstructions(recon, idx, curves=curves)
