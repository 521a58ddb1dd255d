"""Exact key recovery for linear, per-image standardized specs on a carrier (the ``default`` preset).

Such a scrambler sends ``y_i = clip(c + g (A h_i - mean(A h_i)) / std(A h_i), 0, 1)``: ``c`` the
secret carrier image, ``A`` the secret linear map ``(P, k)`` of the stack, ``g`` the public gain,
``h_i`` the embedding.  With ``Ã`` the map with its pixel mean removed per column and
``λ_i = g / std(A h_i)``, the unclipped pixels obey the affine model

    y_i = c + Ã (λ_i h_i),

linear in ``(c, Ã)`` once the per-image scales ``λ_i`` are known.  The scales follow exactly
from the pairs: every ``y_i - c`` lies in the 64-dim column space of ``Ã``.  In coordinates
``w_i`` of that subspace (PCA of the scrambled images), ``L w_i - q = λ_i h_i`` for an unknown
``(L, q)``; eliminating them leaves ``λ`` as the null vector of the ``N x N`` matrix

    Q = (I - Π[W, 1]) ∘ (H H^T)

(``Π`` the projection onto the columns of ``[W, 1]``, ``∘`` the elementwise product), which is
unique up to scale from ``N >= 67`` pairs for 64-dim embeddings (``64 N`` equations,
``64 * 65 + N - 1`` unknowns).  Then one least-squares solve with 65 unknowns per pixel
(``[λ_i h_i, 1]``, the intercept being the carrier) gives ``Ã`` and ``c``; the global scale of
``λ`` is a symmetry (the standardization forgets it) and is fixed so that the fitted signal
has pixel std ``g``.

* **Fewer pairs** (``N < 67``), or image inputs (the attacker's own PCA coordinates plus an
  offset, which do not satisfy the inverse relation exactly): alternating least squares,
  starting from ``λ_i ∝ 1 / ||h_i||`` (or from the null vector), alternating the affine fit
  and the per-image scale ``λ_i = <K h_i, w_i - w_c> / ||K h_i||^2`` in the subspace.
* **Clipping.** Pixels whose carrier sits within a few signal std of 0 or 1 are sometimes clipped
  (about 150 of 150,528 for the ``default`` key of seed 0, at 100-200 pairs).  They are left out
  of the subspace and scale steps; their affine fit treats clipped values as censored (iterative
  imputation: a clipped target is replaced by the prediction where it lies beyond the bound).

Example:
    >>> import numpy as np, torch, warnings
    >>> from owsd.presets import get_preset
    >>> from owsd.keys import generate_key
    >>> from owsd.scrambler import Scrambler
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     s = Scrambler(generate_key(get_preset("default"), seed=1))
    >>> e = np.random.default_rng(0).standard_normal((80, 64)).astype(np.float32)
    >>> y = s.scramble(e, verbose=False, out_dtype=torch.float32)
    >>> fit = fit_standardized(e[:72], y[:72], gain=0.002)
    >>> pred = predict_standardized(fit["matrix"], e[72:], gain=0.002)
    >>> t = y[72:].reshape(8, -1)
    >>> bool(((pred - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum() < 1e-2)
    True
"""

from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger(__name__)

SUBSPACE_ROWS = 256  # scrambled images used to find the signal subspace (any >= 65 span it)
ALS_ITERS = 200
IMPUTE_ITERS = 100


def _signal_subspace(y: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(P,)`` and orthonormal basis ``(P, r)`` of the affine span of the rows of ``y``."""
    m = y.mean(0)
    sub = y[:SUBSPACE_ROWS] - m
    w, u = np.linalg.eigh(sub @ sub.T)
    order = np.argsort(w)[::-1]
    keep = order[: min(rank, int((w > 1e-12 * max(w.max(), 1e-300)).sum()))]
    return m, (sub.T @ u[:, keep]) / np.sqrt(w[keep])


def null_vector_scales(w: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-image scales ``λ`` (``N``, mean 1) such that ``λ_i h_i`` is affine in ``w_i``, and the
    gap ``(second smallest eigenvalue) / (largest)`` of ``Q`` (near 0: not identified)."""
    n = len(w)
    nz = np.linalg.norm(h, axis=1) > 0  # a zero input pins the carrier; its scale is free
    qb, _ = np.linalg.qr(np.concatenate([w, np.ones((n, 1))], axis=1))
    q = (np.eye(n) - qb @ qb.T) * (h @ h.T)
    ev, vec = np.linalg.eigh(q[np.ix_(nz, nz)])
    lam = np.zeros(n)
    lam[nz] = vec[:, 0] * np.sign(vec[:, 0].sum())
    gap = float(ev[1] / max(ev[-1], 1e-300)) if len(ev) > 1 else 0.0
    return lam / max(lam[nz].mean(), 1e-300), gap


def als_scales(w: np.ndarray, h: np.ndarray, lam: np.ndarray, *, iters: int = ALS_ITERS,
               tol: float = 1e-12) -> tuple[np.ndarray, int]:
    """Alternating least squares in the subspace: ``w_i ≈ w_c + λ_i K h_i``."""
    nz = np.linalg.norm(h, axis=1) > 0
    prev = np.inf
    for it in range(iters):
        sol = _AffineSolver(lam[:, None] * h)(w)
        k, wc = sol[:-1], sol[-1]
        kh = h @ k
        r = w - wc
        lam = np.where(nz, (kh * r).sum(1) / np.maximum((kh ** 2).sum(1), 1e-300), 0.0)
        lam = lam / max(np.abs(lam[nz]).mean(), 1e-300)
        loss = float(((r - lam[:, None] * kh) ** 2).sum())
        if abs(prev - loss) <= tol * max(loss, 1e-300) or loss < 1e-300:
            return lam, it + 1
        prev = loss
    return lam, iters


class _AffineSolver:
    """Least squares ``y ≈ x @ a + c`` with the intercept unpenalized: minimum-norm ``a`` when the
    pairs do not determine it (fewer pairs than unknowns), so the carrier stays the targets' mean
    rather than being shared with the map."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.xm = x.mean(0)
        self.pinv = np.linalg.pinv(x - self.xm)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        ym = y.mean(0)
        a = self.pinv @ (y - ym)
        return np.concatenate([a, (ym - self.xm @ a)[None]], axis=0)

    def predict(self, sol: np.ndarray) -> np.ndarray:
        return self.x @ sol[:-1] + sol[-1]


def _censored_fit(solver: _AffineSolver, y: np.ndarray, iters: int) -> np.ndarray:
    """Least squares for columns with clipped values (0 or 1) treated as censored."""
    hi, lo = y >= 1.0, y <= 0.0
    sol = solver(y)
    for _ in range(iters):
        pred = solver.predict(sol)
        sol = solver(np.where(hi, np.maximum(1.0, pred), np.where(lo, np.minimum(0.0, pred), y)))
    return sol


def fit_standardized(inputs: np.ndarray, scrambled: np.ndarray, *, gain: float, rank: int = 64,
                     input_offset: bool = False, method: str = "auto") -> dict:
    """Estimate ``(Ã, c)`` from pairs (see the module docstring).

    ``inputs`` ``(N, k)``: embeddings, or the attacker's coordinates of images (then
    ``input_offset=True`` adds a constant feature inside the standardized signal).  ``method``:
    ``auto`` (null vector when identified, then ALS polish), ``als`` (ALS from ``1/||h||``).
    Returns ``matrix`` ``(k' + 1, P)`` (feature rows, then the carrier), the scales and diagnostics.
    """
    t0 = time.perf_counter()
    h = np.asarray(inputs, np.float64)
    if input_offset:
        h = np.concatenate([h, np.ones((len(h), 1))], axis=1)
    y = np.asarray(scrambled).reshape(len(h), -1)
    if y.dtype == np.uint8:
        y = y.astype(np.float64) / 255.0
    y = y.astype(np.float64)
    n = len(h)
    clipped = (y <= 0.0) | (y >= 1.0)
    bad = np.flatnonzero(clipped.any(0))
    clean = np.ones(y.shape[1], bool)
    clean[bad] = False
    m, v = _signal_subspace(y[:, clean], rank)
    w = (y[:, clean] - m) @ v
    norms = np.linalg.norm(h[:, : inputs.shape[1]], axis=1)
    start = "inverse norm"
    gap = None
    if method == "auto" and not input_offset and n >= w.shape[1] + 3 and w.shape[1] == rank:
        lam, gap = null_vector_scales(w, h)
        start = "null vector"
    else:
        lam = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-300), 0.0)
        if input_offset and n >= w.shape[1] + 3 and method == "auto":  # null vector without the offset feature
            lam, gap = null_vector_scales(w, h[:, :-1])
            start = "null vector (no offset)"
    lam, iters = als_scales(w, h, lam / max(np.abs(lam).mean(), 1e-300))
    solver = _AffineSolver(lam[:, None] * h)
    sol = solver(y)
    if len(bad):
        sol[:, bad] = _censored_fit(solver, y[:, bad], IMPUTE_ITERS)
    sol[-1] = np.clip(sol[-1], 0.0, 1.0)  # the carrier is an image in [0, 1]
    a = sol[:-1]
    signal = (lam[:, None] * h) @ a
    scale = float(gain / max(np.sqrt(signal.var(1)).mean(), 1e-300))
    sol[:-1] *= scale
    info = {"scale_start": start, "als_iters": iters, "censored_pixels": int(len(bad)),
            "subspace_rank": int(w.shape[1]), "unknowns_per_pixel": int(h.shape[1] + 1),
            "fit_seconds": time.perf_counter() - t0}
    if gap is not None:
        info["null_vector_gap"] = gap
    return {"matrix": sol, "scales": lam / scale, "info": info,
            "input_norm": float(norms[norms > 0].mean()) if (norms > 0).any() else 1.0}


def predict_standardized(matrix: np.ndarray, features: np.ndarray, *, gain: float, batch_size: int = 64
                         ) -> np.ndarray:
    """Flattened images ``(N, P)`` in [0, 1]: ``clip(c + g * standardize(features @ Ã))``."""
    a, c = matrix[:-1], matrix[-1]
    out = []
    for s in range(0, len(features), batch_size):
        z = np.asarray(features[s:s + batch_size], np.float64) @ a
        z = z - z.mean(1, keepdims=True)
        z = z / (z.std(1, keepdims=True) + 1e-300)
        out.append(np.clip(c + gain * z, 0.0, 1.0))
    return np.concatenate(out) if out else np.zeros((0, matrix.shape[1]))


def invert_standardized(matrix: np.ndarray, scrambled: np.ndarray) -> np.ndarray:
    """Features ``(N, k)`` whose standardized image best matches ``scrambled``, up to a positive
    scale per image (the standardization forgets it; callers fix the norm).  Pixels clipped in
    an image are left out of its solve."""
    a, c = matrix[:-1], matrix[-1]
    y = np.asarray(scrambled).reshape(len(scrambled), -1)
    y = y.astype(np.float64) / 255.0 if y.dtype == np.uint8 else y.astype(np.float64)
    ac = a - a.mean(1, keepdims=True)
    out = np.zeros((len(y), len(a)))
    full = None
    for i in range(len(y)):
        ok = (y[i] > 0) & (y[i] < 1)
        if ok.all():
            if full is None:
                g = ac @ ac.T
                full = np.linalg.solve(g + 1e-12 * np.trace(g) / len(g) * np.eye(len(g)), ac)
            out[i] = full @ (y[i] - c)
        else:
            sub = ac[:, ok]
            g = sub @ sub.T
            out[i] = np.linalg.solve(g + 1e-12 * np.trace(g) / len(g) * np.eye(len(g)), sub @ (y[i, ok] - c[ok]))
    return out
