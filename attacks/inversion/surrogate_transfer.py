"""Surrogate-key transfer: a decoder trained under the attacker's own keys, applied to the victim's.

Threat model: the attacker knows the public architecture and holds ``aux`` public images
of the same kind as the victim's, but neither the key nor any pair under it.  It scrambles
its images under ``n_keys`` keys of its own (key augmentation, :mod:`.own_keys`; each image
``copies`` times), trains the encoder-decoder on those pairs, and applies it to the
victim's scrambled images.  Success means the scrambling leaks the image whatever the key;
a key-specific scrambler leaves this attack at chance.

Example:
    >>> import warnings
    >>> from attacks.victim import Victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = Victim.build(dataset="digits", preset="linear", seed=0, n_private=40, n_public=100, n_heldout=40)
    >>> r = InversionSurrogateTransfer(aux=100, n_keys=2, copies=1, epochs=2, seed=0, verbose=False)(v)
    >>> r.metrics["n"]
    40.0
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from attacks.base import Attack, RequirementError
from attacks.inversion.common import (NetParams, OwnKeyParams, features_for, scrambled_net, select_targets,
                                      train_kwargs)
from attacks.inversion.decoder import scrambled_features
from attacks.inversion.outputs import Reconstructions
from attacks.inversion.own_keys import attacker_encoder, aux_description, own_keys, scramble_under_own_keys
from attacks.inversion.training import train_inversion
from attacks.registry import register_attack
from attacks.threat import ThreatModel
from attacks.victim import AttackerView

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SurrogateTransferParams(OwnKeyParams, NetParams):
    """Parameters of surrogate transfer: own keys and the inversion network."""


@register_attack
class InversionSurrogateTransfer(Attack):
    """Train on public images scrambled under many own keys; invert the victim's images."""

    name = "inversion-surrogate-transfer"
    family = "inversion"
    Params = SurrogateTransferParams

    def threat_model(self) -> ThreatModel:
        p = self.params
        return ThreatModel(knows_architecture=True, knows_encoder=p["knows_encoder"], sees_scrambled=True,
                           auxiliary=aux_description(p), auxiliary_size=p["aux"],
                           auxiliary_closeness="same-distribution")

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> Reconstructions:
        p = self.params
        if view.spec is None:
            raise RequirementError(f"{self.name} needs the public scrambler spec (an OWSD-style target)")
        aux = view.auxiliary.images
        enc = attacker_encoder(aux, view.spec, known=view.encoder if p["knows_encoder"] else None)
        keys = own_keys(view.spec, p["n_keys"], rng, source=p["key_source"])
        norm, gain = view.spec.normalization, float(view.spec.gain)
        xs, ys = [], []
        for idx, scr in scramble_under_own_keys(aux, enc, keys, copies=p["copies"], rng=rng, device=self.device):
            xs.append(scrambled_features(scr, pool=p["pool"], normalization=norm, gain=gain))
            ys.append(aux[idx])
        del keys
        x = torch.cat(xs)
        y = torch.from_numpy(np.concatenate(ys).astype(np.float32) / 255.0)
        net = scrambled_net(p, tuple(x.shape[1:]), tuple(y.shape[1:]), generator)
        curves = train_inversion(net, x, y, **train_kwargs(p), generator=generator, device=self.device,
                                 verbose=self.verbose)
        tidx = select_targets(view, max_targets=p["max_targets"], rng=rng)
        recon = net.reconstruct(features_for(view, view.targets[tidx], p["pool"]))
        return Reconstructions(recon, tidx, curves=curves)
