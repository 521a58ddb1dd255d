"""From (input, scrambled) pairs to a :class:`~.outputs.KeyEstimate` (shared by the attacks).

* Embedding inputs, link-linear spec (``linear``): least squares per receptive-field group in
  the logit domain (exact up to the precision of what is sent: float32, or uint8 where a
  channel quantizes).
* Linear spec with per-image standardization (the ``default`` preset, on a carrier): the exact
  scale-and-carrier estimator of :mod:`.standardized` (per-image scales from a null vector, then
  least squares with 65 unknowns per pixel, the intercept being the carrier); image inputs enter
  through the attacker's own whitened PCA of the pair images, plus an offset.
* Image inputs, or no spec (controls): reduced-rank least squares ``link(y) ≈ mean + (x - m) B V^T``
  with rank the public embedding dimension (the map factors through the embedding).
* Otherwise: a surrogate of the public spec fitted by gradient descent with restarts (in the
  logit domain for sigmoid specs, see :func:`~.surrogate.fit_surrogate`); image
  inputs enter through the attacker's own whitened PCA of the pair images (the first layer
  absorbs the unknown linear change of coordinates when the input is ``(D, 1, 1)``).

Example:
    >>> import numpy as np, warnings
    >>> from owsd.presets import get_preset
    >>> from owsd.keys import generate_key
    >>> from owsd.scrambler import Scrambler
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     s = Scrambler(generate_key(get_preset("linear"), seed=1))
    >>> e = np.random.default_rng(0).standard_normal((40, 64)).astype(np.float32)
    >>> est = estimate_from_pairs(get_preset("linear"), e, s.scramble(e, verbose=False, out_dtype=__import__("torch").uint8),
    ...                           input_kind="embedding")
    >>> f = s.scramble(e[:4], verbose=False, out_dtype=__import__("torch").float32)
    >>> bool(np.abs(est.predict(e[:4]) - f).mean() < 2e-3)
    True
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch

from attacks.key_estimation.linear_fit import (as_unit_float, fit_affine, has_structural_offset, link_for,
                                               prior_ridge, support_groups, to_link)
from attacks.key_estimation.outputs import KeyEstimate
from attacks.key_estimation.standardized import fit_standardized
from attacks.key_estimation.surrogate import fit_surrogate
from owsd.spec import ScramblerSpec

log = logging.getLogger(__name__)

METHODS = ("auto", "linear", "standardized", "surrogate")
STRUCTURES = ("spec", "dense")


def choose_method(spec: Optional[ScramblerSpec], method: str = "auto") -> str:
    """``linear`` for unknown or link-linear specs (no activation, sigmoid or no normalization),
    ``standardized`` for linear specs with per-image standardization (with or without a carrier),
    else ``surrogate``."""
    if method != "auto":
        return method
    if spec is None or (spec.is_linear() and spec.normalization in ("sigmoid", "none")):
        return "linear"
    if spec.is_linear() and spec.normalization == "standardize" and not any(l.bias for l in spec.layers):
        return "standardized"
    return "surrogate"


IMAGE_RANK_FRACTION = 0.5


def image_rank(spec: ScramblerSpec, n: int) -> int:
    """PCA dimensions of the attacker's image coordinates for the standardized estimator: half the
    pairs, at least the embedding dimension (its PCA differs from the victim's encoder, so 64 of
    its own dimensions do not hold the victim's 64; measured on MNIST, default, 256 pairs:
    functional error 1.5 with 64 dimensions, 0.023 with 128)."""
    return max(spec.embedding_dim, min(int(IMAGE_RANK_FRACTION * n), n - 2))


def _flat_images(images: np.ndarray) -> np.ndarray:
    return as_unit_float(images).reshape(len(images), -1)


def pca_coordinates(x: np.ndarray, dim: int, *, whiten: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The attacker's own PCA of flattened images: ``(mean, encode (k, d), decode (k, d))``."""
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    keep = s > 1e-6 * max(s[0], 1e-300)
    k = int(min(dim, keep.sum()))
    comp = vt[:k]
    if not whiten:
        return mean, comp, comp
    std = s[:k] / np.sqrt(max(len(x) - 1, 1))
    return mean, comp / std[:, None], comp * std[:, None]


def _reduced_rank(x: np.ndarray, t: np.ndarray, rank: int, ridge: float) -> tuple:
    """``t ≈ t_mean + (x - x_mean) B V^T`` with ``V`` the top ``rank`` right singular vectors of ``t``."""
    xm, tm = x.mean(0), t.mean(0)
    xc, tc = x - xm, t - tm
    g = tc @ tc.T  # (N, N): the SVD of tc through its Gram matrix
    w, u = np.linalg.eigh(g)
    order = np.argsort(w)[::-1]
    w, u = w[order], u[:, order]
    k = int(min(rank, (w > 1e-9 * max(w[0], 1e-300)).sum()))
    v = (tc.T @ u[:, :k]) / np.sqrt(w[:k])  # (P, k)
    z = tc @ v  # (N, k)
    if ridge > 0 or len(x) <= x.shape[1]:
        # min-norm (or ridge) solution through the N x N Gram of the inputs
        gx = xc @ xc.T + max(ridge, 1e-8 * np.trace(xc @ xc.T) / len(x)) * np.eye(len(x))
        b = xc.T @ np.linalg.solve(gx, z)
    else:
        b, *_ = np.linalg.lstsq(xc, z, rcond=None)
    return xm, tm, b, v


def estimate_from_pairs(spec: Optional[ScramblerSpec], inputs: np.ndarray, scrambled: np.ndarray, *,
                        input_kind: str, method: str = "auto", structure: str = "spec", ridge: float = -1.0,
                        steps: int = 100, restarts: int = 1, batch_size: int = 32, lr: float = 0.1,
                        generator: Optional[torch.Generator] = None, verbose: bool = False,
                        score_options: Optional[dict] = None, info: Optional[dict] = None) -> KeyEstimate:
    """Estimate the key from pairs (see the module docstring for the method per case).

    ``ridge < 0`` picks the MAP ridge of the spec's weight prior (:func:`~.linear_fit.prior_ridge`).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    method = choose_method(spec, method)
    info = {**(info or {}), "method": method, "n_pairs": int(len(inputs)), "input_kind": input_kind}
    shape = tuple(np.asarray(scrambled).shape[1:])
    common = dict(input_kind=input_kind, output_shape=shape, info=info, score_options=dict(score_options or {}))
    generator = generator or torch.Generator().manual_seed(0)
    if method == "standardized":
        if spec is None or spec.normalization != "standardize":
            raise ValueError("the standardized estimator needs a spec with normalization='standardize'")
        if input_kind == "embedding":
            coords, extra = np.asarray(inputs, np.float64), {}
        else:
            x = _flat_images(inputs)
            mean, enc, dec = pca_coordinates(x, image_rank(spec, len(x)))
            coords = (x - mean) @ enc.T
            extra = dict(in_mean=mean, in_basis=enc, in_decode=dec)
        fit = fit_standardized(coords, scrambled, gain=float(spec.gain), rank=spec.embedding_dim,
                               input_offset=input_kind == "image")
        info.update(fit["info"], input_norm=fit["input_norm"])
        return KeyEstimate(kind="standardized", matrix=fit["matrix"], spec=spec, **extra, **common)
    if method == "linear":
        link = link_for(spec)
        t = to_link(scrambled, link)
        if input_kind == "embedding":
            use_groups = structure == "spec" and spec is not None
            groups = support_groups(spec) if use_groups else None
            intercept = structure == "dense" or has_structural_offset(spec)
            unknowns = int((groups[0][0].size if groups else inputs.shape[1]) + intercept)
            quantized = np.asarray(scrambled).dtype == np.uint8
            ridge = prior_ridge(spec, link, unknowns, quantized=quantized) if ridge < 0 else ridge
            info.update(structure=structure if use_groups else "dense", intercept=intercept,
                        unknowns_per_pixel=unknowns, ridge=ridge)
            m = fit_affine(inputs, t, groups=groups, intercept=intercept, ridge=ridge)
            return KeyEstimate(kind="affine", link=link, matrix=m.astype(np.float32), spec=spec, **common)
        x = _flat_images(inputs)
        rank = spec.embedding_dim if spec is not None else min(len(x) - 1, x.shape[1])
        xm, tm, b, v = _reduced_rank(x, t, rank, max(ridge, 0.0))
        info.update(structure="reduced-rank", rank=int(v.shape[1]))
        matrix = np.concatenate([v.T, tm[None]], axis=0).astype(np.float32)
        return KeyEstimate(kind="affine", link=link, matrix=matrix, in_mean=xm, in_basis=b.T,
                           in_decode=np.linalg.pinv(b), spec=spec, **common)
    if spec is None:
        raise ValueError("a surrogate needs the public spec (the threat model must grant the architecture)")
    if input_kind == "embedding":
        coords, extra = np.asarray(inputs, np.float32), {}
    else:
        x = _flat_images(inputs)
        mean, enc, dec = pca_coordinates(x, spec.embedding_dim)
        if enc.shape[0] < spec.embedding_dim:
            raise ValueError(f"{len(x)} image pairs span only {enc.shape[0]} dimensions; the surrogate needs "
                             f"{spec.embedding_dim}")
        coords = ((x - mean) @ enc.T).astype(np.float32)
        extra = dict(in_mean=mean, in_basis=enc, in_decode=dec)
    w, b, fit_info = fit_surrogate(spec, coords, scrambled, steps=steps, restarts=restarts, batch_size=batch_size,
                                   lr=lr, generator=generator, verbose=verbose)
    info.update(check_loss=fit_info["check_loss"], restarts=fit_info["restarts"], steps=steps,
                fit_domain=fit_info["domain"], fit_seconds=fit_info["seconds"])
    return KeyEstimate(kind="surrogate", spec=spec, weights=w, biases=b, **extra, **common)
