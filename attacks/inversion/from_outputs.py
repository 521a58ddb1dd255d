"""Inversion from the cloud's output vectors (Yang et al. 2019, with top-k truncation).

Threat model: the attacker is the cloud.  It keeps only the output vectors of the victim's
images (top-``top_k`` truncated, as in the scheme's output-size setting; 0 keeps all),
never the scrambled images, and has its own model.  It trains a decoder from output vector
to image on either

* ``mode="own-keys"``: ``aux`` public images of the victim's kind, scrambled under keys of
  its own (:mod:`.own_keys`) and passed through its model (needs the public spec;
  ``knows_encoder`` uses the victim's encoder instead of a PCA of its own); or
* ``mode="victim-pairs"`` (stronger): ``pairs`` (image, scrambled) pairs under the victim's
  key, whose scrambled images it passes through its model.

Example:
    >>> import warnings
    >>> from attacks.victim import Victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = Victim.build(dataset="digits", preset="linear", seed=0, n_private=60, n_public=20, n_heldout=40,
    ...                      cloud="tiny")
    >>> r = InversionFromOutputs(mode="victim-pairs", pairs=30, epochs=2, seed=0, verbose=False)(v)
    >>> r.metrics["n"]
    30.0
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from attacks.base import Attack, RequirementError
from attacks.inversion.common import (NetParams, OwnKeyParams, select_targets, train_kwargs, unit_images,
                                      vector_net)
from attacks.inversion.decoder import vector_features
from attacks.inversion.outputs import Reconstructions
from attacks.inversion.own_keys import attacker_encoder, aux_description, own_keys, scramble_under_own_keys
from attacks.inversion.training import train_inversion
from attacks.params import param
from attacks.registry import register_attack
from attacks.threat import Requirements, ThreatModel
from attacks.victim import AttackerView
from owsd.cloud import truncate_topk

log = logging.getLogger(__name__)

MODES = ("own-keys", "victim-pairs")


@dataclass(frozen=True, kw_only=True)
class FromOutputsParams(OwnKeyParams, NetParams):
    """Parameters of inversion from cloud outputs."""

    mode: str = param(doc="where the training pairs come from: own keys or victim pairs", choices=MODES)
    top_k: int = param(doc="output entries the cloud returns (0: the full vector)", ge=0)
    pairs: int = param(doc="victim pairs (victim-pairs mode)", ge=1)


@register_attack
class InversionFromOutputs(Attack):
    """Train a decoder from (truncated) cloud output vectors to images; invert the victim's outputs."""

    name = "inversion-from-outputs"
    family = "inversion"
    Params = FromOutputsParams

    @property
    def requirements(self) -> Requirements:
        return Requirements(cloud=True)

    def victim_sizes(self) -> dict:
        """Own-keys mode reconstructs at most ``max_targets`` targets and needs no victim pairs, so it
        asks for no more private images (each one costs a cloud query when the victim is built)."""
        sizes = super().victim_sizes()
        p = self.params
        if p["mode"] == "own-keys" and p["max_targets"] and "n_private" in sizes:
            sizes["n_private"] = min(sizes["n_private"], p["max_targets"])
        return sizes

    def threat_model(self) -> ThreatModel:
        """Both modes send images of the attacker's choosing to the cloud model (charged per image):
        the scrambled pairs (``victim-pairs``), or ``aux * copies`` own-key scrambles (``own-keys``)."""
        p = self.params
        if p["mode"] == "victim-pairs":
            return ThreatModel(known_pairs=p["pairs"], pair_input="image", sees_scrambled=False, cloud_outputs=True,
                               model_queries=p["pairs"], queried_model="cloud")
        return ThreatModel(knows_architecture=True, knows_encoder=p["knows_encoder"], sees_scrambled=False,
                           cloud_outputs=True,
                           auxiliary=aux_description(p), auxiliary_size=p["aux"],
                           auxiliary_closeness="same-distribution",
                           model_queries=p["aux"] * p["copies"], queried_model="cloud")

    def _truncate(self, probs: np.ndarray) -> np.ndarray:
        k = self.params["top_k"]
        return truncate_topk(probs, k) if k else probs

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> Reconstructions:
        p = self.params
        cloud = view.cloud
        if p["mode"] == "victim-pairs":
            outs = cloud.predict(view.pairs_scrambled, verbose=False)
            images = view.pairs_inputs
        else:
            if view.spec is None:
                raise RequirementError(f"{self.name} (own-keys) needs the public scrambler spec")
            aux = view.auxiliary.images
            enc = attacker_encoder(aux, view.spec, known=view.encoder if p["knows_encoder"] else None)
            keys = own_keys(view.spec, p["n_keys"], rng, source=p["key_source"])
            chunks, ys = [], []
            for idx, scr in scramble_under_own_keys(aux, enc, keys, copies=p["copies"], rng=rng, device=self.device):
                chunks.append(cloud.predict(scr, verbose=False))
                ys.append(aux[idx])
            del keys
            outs, images = np.concatenate(chunks), np.concatenate(ys)
        x = vector_features(self._truncate(outs))
        y = unit_images(images)
        net = vector_net(p, x.shape[1], tuple(y.shape[1:]), generator)
        curves = train_inversion(net, x, y, **train_kwargs(p), generator=generator, device=self.device,
                                 verbose=self.verbose)
        tidx = select_targets(view, max_targets=p["max_targets"], rng=rng)  # no targets seen: all indices
        recon = net.reconstruct(vector_features(self._truncate(view.target_outputs[tidx])))
        return Reconstructions(recon, tidx, curves=curves)
