"""From hull coordinates to embedding directions, up to one unknown rotation.

In hull coordinates a linear scrambler's traffic is ``w_i = c + T e_i / s(e_i)`` (per-image
standardization: ``s(e) = ||A e||`` up to a constant) or ``w_i = c + T e_i`` (no
standardization), with ``T`` an unknown invertible map (the key, in the attacker's basis).

* **Center.** Standardized images all lie at the same distance from the carrier:
  :func:`fit_sphere` (exact in pixel coordinates, one linear solve).  The cloud's outputs
  map that sphere to an ellipsoid: :func:`fit_ellipsoid` (quadric least squares, ridge-shrunk
  towards a sphere when observations are few).  Without standardization the center is the
  mean (the embeddings are centered).
* **Scatter.** The rays ``d_i = (w_i - c) / ||w_i - c||`` follow ``T e_i`` up to positive
  scales.  Tyler's M-estimator of scatter (:func:`tyler_scatter`) is affine equivariant and
  ignores the scales: ``S_w = T S_e T^T`` up to a constant.  Whitening both sides with their
  own Tyler scatter leaves ``normalize(S_w^{-1/2} d_i) = R normalize(S_e^{-1/2} e_i)`` for an
  orthogonal ``R``, the only unknown left (:mod:`.alignment` finds it).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> e = rng.standard_normal((500, 3)); t = rng.standard_normal((3, 3))
    >>> w = 5.0 + 2.0 * normalize(e @ t.T)
    >>> c, r = fit_sphere(w)
    >>> bool(np.allclose(c, 5.0) and r.std() < 1e-9)
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

MODES = ("sphere", "ellipsoid", "affine")


def normalize(a: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (zero rows stay zero)."""
    a = np.asarray(a, np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-300)


def fit_sphere(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Center ``c`` and radii ``||w_i - c||`` of the sphere through the rows (least squares)."""
    w = np.asarray(w, np.float64)
    m = w.mean(0)
    v = w - m
    a = np.concatenate([2 * v, np.ones((len(v), 1))], axis=1)
    sol = np.linalg.lstsq(a, (v ** 2).sum(1), rcond=None)[0]
    c = m + sol[:-1]
    return c, np.linalg.norm(w - c, axis=1)


def fit_ellipsoid(w: np.ndarray, *, ridge: float = 1e-4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Center ``c``, shape ``H`` (``(w-c)^T H (w-c) = 1``) and per-row radii of the ellipsoid.

    Linear least squares on the quadric ``w^T H w + b^T w = 1`` (rows centered and whitened
    first), with a ridge (``ridge`` times the mean diagonal of the normal equations) pulling
    it towards the unit sphere around the mean: useful when rows are few against the
    ``d (d + 3) / 2`` unknowns.
    """
    w = np.asarray(w, np.float64)
    n, d = w.shape
    m = w.mean(0)
    cov = np.cov(w - m, rowvar=False).reshape(d, d)
    pre = inv_sqrt(cov + 1e-12 * np.trace(cov) / d * np.eye(d)) / np.sqrt(d)  # whitened, mean norm^2 = 1
    v = (w - m) @ pre
    iu = np.triu_indices(d)
    quad = v[:, iu[0]] * v[:, iu[1]] * np.where(iu[0] == iu[1], 1.0, 2.0)
    x = np.concatenate([quad, v], axis=1)
    prior = np.concatenate([(iu[0] == iu[1]).astype(float), np.zeros(d)])  # the unit sphere around the mean
    g = x.T @ x
    reg = ridge * np.trace(g) / len(g)
    sol = np.linalg.solve(g + reg * np.eye(len(g)), x.T @ np.ones(n) + reg * prior)
    h = np.zeros((d, d))
    h[iu] = sol[: len(iu[0])]
    h = h + h.T - np.diag(np.diag(h))
    b = sol[len(iu[0]):]
    ev, vec = np.linalg.eigh(h)
    h = (vec * np.maximum(ev, 1e-6 * max(ev.max(), 1e-300))) @ vec.T  # an ellipsoid: positive definite
    cv = -np.linalg.solve(h, b) / 2
    h = h / (1.0 + cv @ h @ cv)
    ev, vec = np.linalg.eigh(h)
    radii = np.linalg.norm((v - cv) @ ((vec * np.sqrt(ev)) @ vec.T), axis=1)
    c = m + np.linalg.solve(pre.T, cv)
    return c, pre @ h @ pre.T, radii


def tyler_scatter(d: np.ndarray, *, iters: int = 500, tol: float = 1e-9) -> np.ndarray:
    """Tyler's M-estimator of scatter of centered rows (trace normalized to the dimension)."""
    d = normalize(d)
    n, p = d.shape
    if n <= p:
        raise ValueError(f"Tyler's scatter in {p} dimensions needs more than {p} observations, got {n}")
    s = np.eye(p)
    for _ in range(iters):
        q = np.einsum("ij,ij->i", d @ np.linalg.inv(s), d)
        new = (p / n) * (d / np.maximum(q, 1e-300)[:, None]).T @ d
        new *= p / np.trace(new)
        done = np.abs(new - s).max() < tol
        s = new
        if done:
            break
    return s


def inv_sqrt(s: np.ndarray) -> np.ndarray:
    """``s^{-1/2}`` of a symmetric positive definite matrix."""
    ev, vec = np.linalg.eigh(s)
    return (vec / np.sqrt(np.maximum(ev, 1e-300))) @ vec.T


@dataclass
class Rays:
    """Whitened unit directions of the traffic (``N, d``), and how they were obtained."""

    directions: np.ndarray
    norms: np.ndarray
    center: np.ndarray
    mode: str
    radius_rel_std: float


def traffic_rays(w: np.ndarray, *, mode: str, ridge: float = 1e-4) -> Rays:
    """Center the hull coordinates ``w`` (see the module doc), whiten with Tyler's scatter.

    ``norms``: the whitened norms where the scrambler keeps them (``affine``), else ones.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "sphere":
        c, radii = fit_sphere(w)
        v = w - c
    elif mode == "ellipsoid":
        c, h, radii = fit_ellipsoid(w, ridge=ridge)
        ev, vec = np.linalg.eigh(h)
        v = (w - c) @ ((vec * np.sqrt(ev)) @ vec.T)
    else:
        c = w.mean(0)
        v = w - c
        radii = np.linalg.norm(v, axis=1)
    whiten = inv_sqrt(tyler_scatter(v))
    u = v @ whiten
    norms = np.linalg.norm(u, axis=1)
    rel = float(radii.std() / max(radii.mean(), 1e-300))
    if mode != "affine":
        norms = np.ones(len(u))
    return Rays(directions=normalize(u), norms=norms, center=c, mode=mode, radius_rel_std=rel)
