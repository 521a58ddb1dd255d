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

import numpy as np
import torch

from attacks.base import Attack, RequirementError
from attacks.inversion.common import (EARLY_STOP, NET_PARAMS, select_targets, train_kwargs, unit_images, validate_net_params,
                                      vector_net)
from attacks.inversion.decoder import vector_features
from attacks.inversion.outputs import Reconstructions
from attacks.inversion.own_keys import (KEY_SOURCES, attacker_encoder, aux_description, own_keys,
                                        scramble_under_own_keys)
from attacks.inversion.training import train_inversion
from attacks.registry import register_attack
from attacks.threat import Requirements, ThreatModel
from attacks.victim import AttackerView
from owsd.cloud import truncate_topk

log = logging.getLogger(__name__)

MODES = ("own-keys", "victim-pairs")

_SMOKE = dict(mode="own-keys", top_k=0, aux=300, n_keys=16, key_source="random", copies=2, knows_encoder=False,
              pairs=300, epochs=30, batch_size=32, lr=2e-3, pool=16, latent=128, hidden=256, conv_width=0, width=16,
              max_seconds=0.0, max_targets=300, patience=0, val_fraction=0.1)
_STANDARD = dict(_SMOKE, aux=1000, n_keys=64, copies=3, pairs=2000, epochs=40, batch_size=64, latent=256,
                 hidden=512, width=32, max_targets=1000, **EARLY_STOP)
_FULL = dict(_STANDARD, aux=2000, n_keys=256, copies=4, pairs=8000, epochs=60, max_targets=2000)


@register_attack
class InversionFromOutputs(Attack):
    """Train a decoder from (truncated) cloud output vectors to images; invert the victim's outputs."""

    name = "inversion-from-outputs"
    family = "inversion"
    requirements = Requirements(cloud=True)
    PARAMS = {"mode": str, "top_k": int, "aux": int, "n_keys": int, "key_source": str, "copies": int,
              "knows_encoder": bool, "pairs": int, **NET_PARAMS}
    BUDGETS = {"smoke": _SMOKE, "standard": _STANDARD, "full": _FULL}
    VICTIM_SIZES = {"smoke": {"n_private": 600, "n_public": 300, "n_heldout": 128},
                    "standard": {"n_private": 3000, "n_public": 1000, "n_heldout": 500},
                    "full": {"n_private": 10000, "n_public": 2000, "n_heldout": 1000}}

    def validate_params(self) -> None:
        p = self.params
        if p["key_source"] not in KEY_SOURCES:
            raise ValueError(f"{self.name}: key_source must be one of {KEY_SOURCES}, got {p['key_source']!r}")
        if p["mode"] not in MODES:
            raise ValueError(f"{self.name}: mode must be one of {MODES}, got {p['mode']!r}")
        if p["top_k"] < 0:
            raise ValueError(f"{self.name}: top_k must be >= 0 (0: the full vector), got {p['top_k']}")
        for k in ("aux", "n_keys", "copies", "pairs"):
            if p[k] < 1:
                raise ValueError(f"{self.name}: {k} must be at least 1, got {p[k]}")
        validate_net_params(self.name, p)

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
