"""Key-invariant statistics and graph matching for ciphertext-only re-identification.

A random scrambler of a public spec preserves, whatever its key, how similar two inputs are:
the correlation of two scrambled images (per output region, in the link domain) is a
key-independent function of the similarity of their embeddings, and each region's contrast
is a function of the embedding's norms.  :class:`InvariantModel` learns both functions by
regression over many random keys of the spec applied to public images; :func:`graph_match`
then finds the permutation between scrambled targets and candidate originals that makes the
targets' correlation matrices agree with the predicted ones (Frank-Wolfe / FAQ relaxation of
the quadratic assignment problem, projected by the Hungarian algorithm, with restarts).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> b = rng.standard_normal((6, 6)); b = b + b.T; np.fill_diagonal(b, 0)
    >>> p = rng.permutation(6)
    >>> a = b[np.ix_(p, p)]
    >>> bool((graph_match([a], [b], [1.0], np.zeros((6, 6)), rng=rng, restarts=4) == p).all())
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from attacks.key_estimation.linear_fit import to_link

log = logging.getLogger(__name__)


def region_pixels(shape: tuple, grid: int, per_region: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Flat indices of ``per_region`` random pixels in each cell of a ``grid x grid`` split."""
    c, h, w = shape
    idx = np.arange(c * h * w).reshape(c, h, w)
    out = []
    for i in range(grid):
        for j in range(grid):
            cell = idx[:, i * h // grid:(i + 1) * h // grid, j * w // grid:(j + 1) * w // grid].reshape(-1)
            out.append(np.sort(rng.choice(cell, min(per_region, cell.size), replace=False)))
    return out


def target_stats(scrambled: np.ndarray, link: str, regions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-region log-contrast ``(K, R)`` and correlation matrices ``(R, K, K)`` of scrambled images."""
    t = to_link(scrambled, link).astype(np.float32)
    unary, pair = [], []
    for pix in regions:
        v = t[:, pix]
        v = v - v.mean(1, keepdims=True)
        s = np.sqrt((v ** 2).mean(1)) + 1e-6
        unary.append(np.log(s))
        z = v / (s[:, None] * np.sqrt(v.shape[1]))
        c = z @ z.T
        np.fill_diagonal(c, 0.0)
        pair.append(c)
    return np.stack(unary, 1).astype(np.float64), np.stack(pair).astype(np.float64)


def candidate_features(emb: np.ndarray, input_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Unary features ``(K, Fu)`` and pairwise features ``(F, K, K)`` of candidate embeddings.

    Pairwise: cosine of each spatial block of the embedding and of the whole, with squares and
    cubes; unary: log-norms of the same.
    """
    c0, h0, w0 = input_shape
    e = np.asarray(emb, np.float64).reshape(len(emb), c0, h0 * w0)
    blocks = [e[:, :, b] for b in range(h0 * w0)] + ([e.reshape(len(emb), -1)] if h0 * w0 > 1 else [])
    un, pw = [np.ones(len(emb))], []
    for x in blocks:
        n = np.linalg.norm(x, axis=1) + 1e-9
        un.append(np.log(n))
        cos = (x / n[:, None]) @ (x / n[:, None]).T
        pw.extend([cos, cos ** 2, cos ** 3])
    pw.append(np.ones((len(emb), len(emb))))
    return np.stack(un, 1), np.stack(pw)


@dataclass
class InvariantModel:
    """Per-region regressions of target statistics on candidate features (learned on random keys)."""

    pair_coef: np.ndarray   # (R, F)
    pair_sigma: np.ndarray  # (R,)
    unary_coef: np.ndarray  # (R, Fu)
    unary_sigma: np.ndarray  # (R,)
    pair_r2: np.ndarray
    unary_r2: np.ndarray

    @classmethod
    def fit(cls, feats: Sequence[tuple], stats: Sequence[tuple]) -> "InvariantModel":
        """Fit from ``[(unary_feats, pair_feats)]`` and ``[(unary_stats, pair_stats)]`` (one per key)."""
        r = stats[0][1].shape[0]
        xs_p, ys_p, xs_u, ys_u = [], [], [], []
        for (fu, fp), (su, sp) in zip(feats, stats):
            iu = np.triu_indices(fp.shape[1], 1)
            xs_p.append(fp[:, iu[0], iu[1]].T)
            ys_p.append(sp[:, iu[0], iu[1]].T)
            xs_u.append(fu)
            ys_u.append(su)
        xp, yp, xu, yu = map(np.concatenate, (xs_p, ys_p, xs_u, ys_u))

        def ls(x, y):
            coef = np.linalg.solve(x.T @ x + 1e-6 * np.eye(x.shape[1]), x.T @ y)  # (F, R)
            res = y - x @ coef
            r2 = 1 - res.var(0) / (y.var(0) + 1e-12)
            return coef.T, res.std(0) + 1e-6, r2

        pc, ps, pr2 = ls(xp, yp)
        uc, us, ur2 = ls(xu, yu)
        return cls(pc, ps, uc, us, pr2, ur2)

    def predict(self, fu: np.ndarray, fp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted unary ``(K, R)`` and pairwise ``(R, K, K)`` statistics for candidates."""
        pu = fu @ self.unary_coef.T
        pp = np.einsum("rf,fij->rij", self.pair_coef, fp)
        for m in pp:
            np.fill_diagonal(m, 0.0)
        return pu, pp


def _objective(a, b, w, u, perm) -> float:
    return float(sum(wr * (ar * br[np.ix_(perm, perm)]).sum() for ar, br, wr in zip(a, b, w))
                 + u[np.arange(len(perm)), perm].sum())


def graph_match(a: Sequence[np.ndarray], b: Sequence[np.ndarray], w: Sequence[float], u: np.ndarray, *,
                rng: np.random.Generator, restarts: int = 4, iters: int = 30) -> np.ndarray:
    """Permutation ``perm`` (target i -> candidate perm[i]) maximizing
    ``sum_r w_r <A_r, P B_r P^T> + <U, P>`` by Frank-Wolfe on doubly stochastic matrices."""
    k = u.shape[0]
    best, best_val = None, -np.inf
    for r in range(restarts):
        if r == 0:
            d = np.full((k, k), 1.0 / k)
        else:
            d = rng.random((k, k)) + 1.0
            for _ in range(20):  # Sinkhorn to a doubly stochastic start
                d /= d.sum(1, keepdims=True)
                d /= d.sum(0, keepdims=True)
        for _ in range(iters):
            grad = sum(2 * wr * ar @ d @ br for ar, br, wr in zip(a, b, w)) + u
            rows, cols = linear_sum_assignment(-grad)
            q = np.zeros_like(d)
            q[rows, cols] = 1.0
            delta = q - d
            a1 = float((grad * delta).sum())
            a2 = float(sum(wr * (ar * (delta @ br @ delta.T)).sum() for ar, br, wr in zip(a, b, w)))
            if a2 < 0:
                alpha = min(1.0, max(0.0, -a1 / (2 * a2)))
            else:
                alpha = 1.0 if a1 + a2 > 0 else 0.0
            if alpha <= 1e-9:
                break
            d = d + alpha * delta
        rows, cols = linear_sum_assignment(-d)
        perm = cols[np.argsort(rows)]
        val = _objective(a, b, w, u, perm)
        if val > best_val:
            best, best_val = perm, val
    return best


def refine_linear(t: np.ndarray, emb: np.ndarray, perm: np.ndarray, *, iters: int, ridge: float = 0.1) -> np.ndarray:
    """Alternate: fit a linear surrogate ``t_i ≈ [e_perm(i), 1] M`` (ridge), re-assign by Hungarian."""
    k, d = emb.shape
    x = np.concatenate([emb, np.ones((k, 1))], 1)
    for _ in range(iters):
        xp = x[perm]
        g = xp.T @ xp
        m = np.linalg.solve(g + ridge * np.trace(g) / len(g) * np.eye(len(g)), xp.T @ t)
        pred = x @ m  # (K candidates, P)
        cost = (t ** 2).sum(1)[:, None] - 2 * t @ pred.T + (pred ** 2).sum(1)[None, :]
        rows, cols = linear_sum_assignment(cost)
        new = cols[np.argsort(rows)]
        if (new == perm).all():
            break
        perm = new
    return perm
