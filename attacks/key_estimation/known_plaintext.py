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
from dataclasses import dataclass

import numpy as np
import torch

from attacks.base import Attack
from attacks.key_estimation.fitting import METHODS, STRUCTURES, estimate_from_pairs
from attacks.key_estimation.outputs import KeyEstimate
from attacks.params import param
from attacks.registry import register_attack
from attacks.threat import PAIR_INPUTS, ThreatModel
from attacks.victim import AttackerView

log = logging.getLogger(__name__)

@dataclass(frozen=True, kw_only=True)
class FitParams:
    """The key fit from (input, scrambled) pairs, shared by the plaintext attacks."""

    method: str = param(doc="how the key is fitted (auto: from the spec)", choices=METHODS)
    structure: str = param(doc="spec: receptive fields from the spec; dense: every coordinate plus an offset",
                           choices=STRUCTURES)
    ridge: float = param(doc="ridge of the linear fit (< 0: the MAP ridge of the spec's weight prior)")
    steps: int = param(doc="optimizer steps of a surrogate fit", ge=0)
    restarts: int = param(doc="restarts of a surrogate fit", ge=1)
    batch_size: int = param(doc="batch size of a surrogate fit", ge=1)
    lr: float = param(doc="Adam step relative to each layer's weight scale", gt=0)
    n_invert: int = param(doc="images the scorer inverts with the estimate", ge=0)
    invert_steps: int = param(doc="optimizer steps of each scorer inversion", ge=0)


@dataclass(frozen=True, kw_only=True)
class KnownPlaintextParams(FitParams):
    """Parameters of known-plaintext key estimation."""

    n_pairs: int = param(doc="known (input, scrambled) pairs under the victim's key", ge=1)
    pair_input: str = param(doc="what the pairs' inputs are", choices=PAIR_INPUTS)


def fit_kwargs(p: dict, verbose: bool) -> dict:
    return dict(method=p["method"], structure=p["structure"], ridge=p["ridge"], steps=p["steps"],
                restarts=p["restarts"], batch_size=p["batch_size"], lr=p["lr"], verbose=verbose,
                score_options={"n_invert": p["n_invert"], "invert_steps": p["invert_steps"]})


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
    Params = KnownPlaintextParams

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
