"""Known-plaintext key estimation: the attacker holds N (input, scrambled) pairs under the key.

Inputs are embeddings (``pair_input="embedding"``) or the original images (``"image"``).
Linear scramblers are recovered exactly by least squares; others by fitting a surrogate of
the public spec (see :mod:`.fitting`).  Graded by :func:`.scoring.score_key_estimate`.

Example:
    >>> import warnings
    >>> from attacks.victim import Victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = Victim.build(dataset="digits", preset="linear", seed=0, n_private=64, n_public=8, n_heldout=16)
    >>> r = KnownPlaintextKeyEstimation(n_pairs=32, seed=0, verbose=False)(v)
    >>> r.metrics["functional_error"] < 1e-3
    True
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from attacks.base import Attack
from attacks.key_estimation.fitting import METHODS, STRUCTURES, estimate_from_pairs
from attacks.key_estimation.outputs import KeyEstimate
from attacks.registry import register_attack
from attacks.threat import PAIR_INPUTS, ThreatModel
from attacks.victim import AttackerView

log = logging.getLogger(__name__)

FIT_PARAMS = {"method": str, "structure": str, "ridge": float, "steps": int, "restarts": int, "batch_size": int,
              "lr": float, "n_invert": int, "invert_steps": int}


def validate_fit_params(name: str, p: dict) -> None:
    """Shared checks of the fitting parameters (clear errors)."""
    if p.get("method", "auto") not in METHODS:
        raise ValueError(f"{name}: method must be one of {METHODS}, got {p['method']!r}")
    if p.get("structure", "spec") not in STRUCTURES:
        raise ValueError(f"{name}: structure must be one of {STRUCTURES}, got {p['structure']!r}")
    for k in ("steps", "n_invert", "invert_steps"):
        if p.get(k, 0) < 0:
            raise ValueError(f"{name}: {k} must be >= 0, got {p[k]}")
    for k in ("restarts", "batch_size"):
        if p.get(k, 1) < 1:
            raise ValueError(f"{name}: {k} must be >= 1, got {p[k]}")
    if p.get("lr", 1.0) <= 0:
        raise ValueError(f"{name}: lr must be > 0, got {p['lr']}")


def fit_kwargs(p: dict, verbose: bool) -> dict:
    return dict(method=p["method"], structure=p["structure"], ridge=p["ridge"], steps=p["steps"],
                restarts=p["restarts"], batch_size=p["batch_size"], lr=p["lr"], verbose=verbose,
                score_options={"n_invert": p["n_invert"], "invert_steps": p["invert_steps"]})


_FIT_DEFAULTS = {"method": "auto", "structure": "spec", "ridge": -1.0, "lr": 0.1}


@register_attack
class KnownPlaintextKeyEstimation(Attack):
    """Estimate the key from ``n_pairs`` known (input, scrambled) pairs.

    Parameters: ``n_pairs``, ``pair_input`` (embedding|image), ``method`` (auto|linear|surrogate),
    ``structure`` (spec: receptive fields from the spec; dense: every coordinate plus an offset),
    ``ridge`` (< 0: the MAP ridge of the spec's weight prior), and for surrogates ``steps``,
    ``restarts``, ``batch_size``, ``lr`` (Adam step relative to each layer's weight scale, see
    :func:`~.surrogate.fit_surrogate`); ``n_invert`` and ``invert_steps`` bound the scorer's
    inversion work.
    """

    name = "key-known-plaintext"
    family = "key-estimation"
    PARAMS = {"n_pairs": int, "pair_input": str, **FIT_PARAMS}
    BUDGETS = {
        "smoke": {**_FIT_DEFAULTS, "n_pairs": 24, "pair_input": "embedding", "steps": 4, "restarts": 1,
                  "batch_size": 8, "n_invert": 8, "invert_steps": 3},
        "standard": {**_FIT_DEFAULTS, "n_pairs": 128, "pair_input": "embedding", "steps": 150, "restarts": 2,
                     "batch_size": 32, "n_invert": 32, "invert_steps": 40},
        "full": {**_FIT_DEFAULTS, "n_pairs": 512, "pair_input": "embedding", "steps": 600, "restarts": 4,
                 "batch_size": 32, "n_invert": 64, "invert_steps": 100},
    }
    VICTIM_SIZES = {"smoke": {"n_private": 64, "n_public": 16, "n_heldout": 32},
                    "standard": {"n_private": 256, "n_public": 16, "n_heldout": 64},
                    "full": {"n_private": 1024, "n_public": 16, "n_heldout": 128}}

    def validate_params(self) -> None:
        p = self.params
        if p["n_pairs"] < 1:
            raise ValueError(f"{self.name}: n_pairs must be >= 1, got {p['n_pairs']}")
        if p["pair_input"] not in PAIR_INPUTS:
            raise ValueError(f"{self.name}: pair_input must be one of {PAIR_INPUTS}, got {p['pair_input']!r}")
        validate_fit_params(self.name, p)

    def victim_sizes(self) -> dict:
        sizes = super().victim_sizes()
        sizes["n_private"] = max(sizes.get("n_private", 0), self.params["n_pairs"])
        return sizes

    def threat_model(self) -> ThreatModel:
        return ThreatModel(known_pairs=self.params["n_pairs"], pair_input=self.params["pair_input"],
                           sees_scrambled=False)

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> KeyEstimate:
        p = self.params
        return estimate_from_pairs(view.spec, view.pairs_inputs, view.pairs_scrambled, input_kind=p["pair_input"],
                                   generator=generator, **fit_kwargs(p, self.verbose))
