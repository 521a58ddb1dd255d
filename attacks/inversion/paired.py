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

import numpy as np
import torch

from attacks.base import Attack
from attacks.inversion.common import (NET_PARAMS, features_for, scrambled_net, select_targets, train_kwargs,
                                      unit_images, validate_net_params)
from attacks.inversion.outputs import Reconstructions
from attacks.inversion.training import train_inversion
from attacks.registry import register_attack
from attacks.threat import ThreatModel
from attacks.victim import AttackerView

log = logging.getLogger(__name__)

_NET_SMOKE = dict(epochs=40, batch_size=32, lr=2e-3, pool=16, latent=128, hidden=256, conv_width=0, width=16,
                  max_seconds=0.0, max_targets=0, patience=0, val_fraction=0.1)
_NET_STANDARD = dict(epochs=60, batch_size=64, lr=2e-3, pool=16, latent=256, hidden=512, conv_width=0, width=32,
                     max_seconds=0.0, max_targets=1000, patience=0, val_fraction=0.1)
_NET_FULL = dict(_NET_STANDARD, epochs=100, max_targets=2000)


@register_attack
class InversionPaired(Attack):
    """Train a decoder on (scrambled, original) pairs under the victim's key; invert the targets."""

    name = "inversion-paired"
    family = "inversion"
    PARAMS = {"pairs": int, **NET_PARAMS}
    BUDGETS = {"smoke": {"pairs": 300, **_NET_SMOKE},
               "standard": {"pairs": 2000, **_NET_STANDARD},
               "full": {"pairs": 8000, **_NET_FULL}}
    VICTIM_SIZES = {"smoke": {"n_private": 500, "n_public": 300, "n_heldout": 128},
                    "standard": {"n_private": 3000, "n_public": 1000, "n_heldout": 500},
                    "full": {"n_private": 10000, "n_public": 2000, "n_heldout": 1000}}

    def validate_params(self) -> None:
        if self.params["pairs"] < 2:
            raise ValueError(f"{self.name}: pairs must be at least 2, got {self.params['pairs']}")
        validate_net_params(self.name, self.params)

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
