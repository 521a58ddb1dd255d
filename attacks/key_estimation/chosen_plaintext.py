"""Chosen-plaintext key estimation: the attacker has inputs of its choice scrambled.

Embedding queries follow an orthogonal ±1 design (Hadamard rows times ``query_scale``; a zero
query is added when the spec allows an offset), so a link-linear key is recovered from
exactly ``embedding_dim`` queries.  Image queries are sparse random patterns of intensity
``query_scale`` on black.  The pairs are then fitted as in :mod:`.fitting`.

Example:
    >>> import warnings
    >>> from attacks.victim import Victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = Victim.build(dataset="digits", preset="linear", seed=0, n_private=8, n_public=8, n_heldout=16)
    >>> r = ChosenPlaintextKeyEstimation(n_queries=64, seed=0, verbose=False)(v)
    >>> r.cost["queries"], r.metrics["functional_error"] < 1e-4
    (64, True)
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from attacks.base import Attack
from attacks.key_estimation.fitting import choose_method, estimate_from_pairs
from attacks.key_estimation.known_plaintext import _FIT_DEFAULTS, FIT_PARAMS, fit_kwargs, validate_fit_params
from attacks.key_estimation.linear_fit import hadamard_design, has_structural_offset
from attacks.key_estimation.outputs import KeyEstimate
from attacks.registry import register_attack
from attacks.threat import PAIR_INPUTS, ThreatModel
from attacks.victim import AttackerView

log = logging.getLogger(__name__)


def embedding_queries(d: int, n: int, *, scale: float, offset: bool, rng: np.random.Generator) -> np.ndarray:
    """``n`` chosen embeddings: a zero query if ``offset``, then orthogonal ±``scale`` rows, then random signs."""
    rows = [np.zeros((1, d))] if offset else []
    m = n - len(rows)
    h = hadamard_design(d, rng=rng)
    rows.append(h[:min(m, d)])
    if m > d:
        rows.append(rng.choice([-1.0, 1.0], size=(m - d, d)))
    q = np.concatenate(rows)[:n]
    q[1 if offset else 0:] *= scale
    return q.astype(np.float32)


def image_queries(shape: tuple, n: int, *, scale: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` uint8 images: random half-on patterns of intensity ``scale`` on black."""
    on = rng.random((n, *shape)) < 0.5
    return np.round(on * scale * 255).astype(np.uint8)


@register_attack
class ChosenPlaintextKeyEstimation(Attack):
    """Estimate the key from ``n_queries`` chosen inputs scrambled by the victim's oracle.

    Parameters: ``n_queries``, ``query_input`` (embedding|image), ``query_scale`` (amplitude of the
    ±1 embedding design, or the intensity of image patterns), ``image_shape`` is taken from the
    victim's dataset (the attacker knows the image format), and the fitting parameters of
    :class:`~.known_plaintext.KnownPlaintextKeyEstimation`.
    """

    name = "key-chosen-plaintext"
    family = "key-estimation"
    PARAMS = {"n_queries": int, "query_input": str, "query_scale": float, "input_shape": tuple, **FIT_PARAMS}
    BUDGETS = {
        "smoke": {**_FIT_DEFAULTS, "n_queries": 64, "query_input": "embedding", "query_scale": 1.0, "steps": 4,
                  "restarts": 1, "batch_size": 8, "n_invert": 8, "invert_steps": 3},
        "standard": {**_FIT_DEFAULTS, "n_queries": 64, "query_input": "embedding", "query_scale": 1.0,
                     "steps": 150, "restarts": 2, "batch_size": 32, "n_invert": 32, "invert_steps": 40},
        "full": {**_FIT_DEFAULTS, "n_queries": 512, "query_input": "embedding", "query_scale": 1.0,
                 "steps": 600, "restarts": 4, "batch_size": 32, "n_invert": 64, "invert_steps": 100},
    }
    VICTIM_SIZES = {"smoke": {"n_private": 16, "n_public": 16, "n_heldout": 32},
                    "standard": {"n_private": 16, "n_public": 16, "n_heldout": 64},
                    "full": {"n_private": 16, "n_public": 16, "n_heldout": 128}}

    def validate_params(self) -> None:
        p = self.params
        if p["n_queries"] < 1:
            raise ValueError(f"{self.name}: n_queries must be >= 1, got {p['n_queries']}")
        if p["query_input"] not in PAIR_INPUTS:
            raise ValueError(f"{self.name}: query_input must be one of {PAIR_INPUTS}, got {p['query_input']!r}")
        if p["query_scale"] <= 0:
            raise ValueError(f"{self.name}: query_scale must be > 0, got {p['query_scale']}")
        if p["query_input"] == "image" and p["query_scale"] > 1:
            raise ValueError(f"{self.name}: image query intensity (query_scale) must be in (0, 1]")
        validate_fit_params(self.name, p)

    def threat_model(self) -> ThreatModel:
        return ThreatModel(chosen_queries=self.params["n_queries"], pair_input=self.params["query_input"],
                           sees_scrambled=False)

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> KeyEstimate:
        p = self.params
        n = p["n_queries"]
        if p["query_input"] == "embedding":
            if view.embedding_dim is None:
                raise ValueError(f"{self.name}: embedding queries need the public embedding dimension")
            offset = choose_method(view.spec, p["method"]) != "linear" or has_structural_offset(view.spec)
            q = embedding_queries(view.embedding_dim, n, scale=p["query_scale"], offset=offset and n > 1, rng=rng)
        else:
            shape = p.get("input_shape")
            if shape is None:
                raise ValueError(f"{self.name}: image queries need input_shape=(C, H, W) of the victim's images")
            q = image_queries(tuple(shape), n, scale=p["query_scale"], rng=rng)
        y = view.oracle(q)
        return estimate_from_pairs(view.spec, q, y, input_kind=p["query_input"], generator=generator,
                                   info={"n_queries": n, "query_scale": p["query_scale"]}, **fit_kwargs(p, self.verbose))
