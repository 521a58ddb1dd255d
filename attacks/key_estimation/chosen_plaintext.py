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
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from attacks.base import Attack
from attacks.key_estimation.fitting import choose_method, estimate_from_pairs
from attacks.key_estimation.known_plaintext import FitParams, fit_kwargs
from attacks.key_estimation.linear_fit import hadamard_design, has_structural_offset
from attacks.key_estimation.outputs import KeyEstimate
from attacks.params import param
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


@dataclass(frozen=True, kw_only=True)
class ChosenPlaintextParams(FitParams):
    """Parameters of chosen-plaintext key estimation."""

    n_queries: int = param(doc="chosen inputs the victim's oracle scrambles", ge=1)
    query_input: str = param(doc="what the queries are", choices=PAIR_INPUTS)
    query_scale: float = param(doc="amplitude of the embedding design, or intensity of image patterns (<= 1)",
                               gt=0)
    input_shape: Optional[tuple[int, ...]] = param(None, doc="(C, H, W) of the victim's images (image queries)",
                                                   ge=1)

    def check(self) -> Optional[str]:
        if self.query_input == "image" and self.query_scale > 1:
            return "image query intensity (query_scale) must be in (0, 1]"
        return None


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
    Params = ChosenPlaintextParams

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
