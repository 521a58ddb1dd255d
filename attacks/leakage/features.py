"""What an honest-but-curious cloud can compute from what it receives: feature maps.

* :class:`GramPCA`: principal components of full-resolution scrambled images through the
  ``n x n`` Gram matrix (no pooling, so a pixel permutation loses nothing), computed in
  column chunks so a ``(n, 3*224*224)`` float copy is never held;
* :func:`cloud_features`: log cloud probabilities (what :mod:`owsd.internal` uses);
* :func:`view_features`: either, picked by ``source`` (``"scrambled"`` or ``"outputs"``);
* :func:`pairwise_sq_dists`: chunked squared Euclidean distances between two batches.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).integers(0, 256, (20, 3, 8, 8), dtype=np.uint8)
    >>> p = GramPCA(k=4).fit(x)
    >>> p.scores.shape, p.transform(x[:3]).shape, bool(np.allclose(p.transform(x), p.scores, atol=1e-3))
    ((20, 4), (3, 4), True)
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from owsd.internal import output_features

log = logging.getLogger(__name__)

SOURCES = ("scrambled", "outputs")
CHUNK = 8192


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.reshape(len(x), -1)


def _cols(x: np.ndarray, s: int, e: int) -> np.ndarray:
    """Columns ``s:e`` as float32, uint8 mapped to [0, 1]."""
    c = x[:, s:e]
    return c.astype(np.float32) / 255.0 if c.dtype == np.uint8 else c.astype(np.float32)


class GramPCA:
    """PCA of many-pixel images via the Gram matrix (``n`` small, ``D`` large).

    ``scores`` are the training projections ``(n, k)``; ``eigvals`` the covariance
    eigenvalues; ``transform`` projects new images; ``residual`` is the squared distance of an
    image to the ``k``-dimensional principal subspace.
    """

    def __init__(self, *, k: int = 32) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"GramPCA: k must be a positive integer, got {k!r}")
        self.k = k

    def fit(self, x: np.ndarray) -> "GramPCA":
        X = _flat(x)
        n, d = X.shape
        if n < 2:
            raise ValueError(f"GramPCA needs at least 2 images, got {n}")
        self.mean = np.zeros(d, np.float32)
        for s in range(0, d, CHUNK):
            self.mean[s:s + CHUNK] = _cols(X, s, s + CHUNK).mean(0)
        G = np.zeros((n, n), np.float64)
        for s in range(0, d, CHUNK):
            c = _cols(X, s, s + CHUNK) - self.mean[s:s + CHUNK]
            G += (c @ c.T).astype(np.float64)
        w, U = np.linalg.eigh(G)
        k = min(self.k, n - 1)
        order = np.argsort(w)[::-1][:k]
        w, U = np.maximum(w[order], 1e-12), U[:, order]
        self.total_var = float(np.trace(G) / n)
        self.eigvals = w / n
        self.scores = (U * np.sqrt(w)).astype(np.float32)
        # principal axes V (d, k) = X_c^T U / sqrt(w), built chunk by chunk
        self.components = np.zeros((d, k), np.float32)
        for s in range(0, d, CHUNK):
            c = _cols(X, s, s + CHUNK) - self.mean[s:s + CHUNK]
            self.components[s:s + CHUNK] = (c.T @ U / np.sqrt(w)).astype(np.float32)
        self.dim = d
        return self

    def _check(self, X: np.ndarray) -> None:
        if X.shape[1] != self.dim:
            raise ValueError(f"GramPCA: fitted on {self.dim} values per image, got {X.shape[1]}")

    def transform(self, x: np.ndarray) -> np.ndarray:
        X = _flat(x)
        self._check(X)
        z = np.zeros((len(X), self.components.shape[1]), np.float64)
        for s in range(0, self.dim, CHUNK):
            z += (_cols(X, s, s + CHUNK) - self.mean[s:s + CHUNK]) @ self.components[s:s + CHUNK]
        return z.astype(np.float32)

    def residual(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(projections, squared distances to the principal subspace) of new images."""
        X = _flat(x)
        z = self.transform(X)
        sq = np.zeros(len(X), np.float64)
        for s in range(0, self.dim, CHUNK):
            sq += ((_cols(X, s, s + CHUNK) - self.mean[s:s + CHUNK]) ** 2).sum(1)
        return z, np.maximum(sq - (z.astype(np.float64) ** 2).sum(1), 0.0)


def cloud_features(outputs: np.ndarray) -> np.ndarray:
    """Log cloud probabilities (floored), the internal model's own features."""
    return output_features(outputs)


def view_features(view, source: str, *, k: int) -> np.ndarray:
    """``(num_targets, k)`` principal-component features of what the cloud sees.

    ``source="scrambled"``: PCA of the scrambled images; ``"outputs"``: PCA of the log cloud
    outputs.  Both are fitted on the targets only (unsupervised, transductive).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if source == "outputs":
        if view.target_outputs is None:
            raise ValueError("source='outputs' needs a threat model that grants cloud outputs")
        return GramPCA(k=k).fit(cloud_features(view.target_outputs)).scores
    if view.targets is None:
        raise ValueError("source='scrambled' needs a threat model that shows the scrambled images")
    return GramPCA(k=k).fit(view.targets).scores


def pairwise_sq_dists(a: np.ndarray, b: Optional[np.ndarray] = None) -> np.ndarray:
    """Squared Euclidean distances ``(len(a), len(b))`` between flattened batches (chunked)."""
    A = _flat(a)
    B = A if b is None else _flat(b)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"pairwise distances: {A.shape[1]} vs {B.shape[1]} values per item")
    na, nb = np.zeros(len(A)), np.zeros(len(B))
    dot = np.zeros((len(A), len(B)), np.float64)
    for s in range(0, A.shape[1], CHUNK):
        ca, cb = _cols(A, s, s + CHUNK).astype(np.float64), _cols(B, s, s + CHUNK).astype(np.float64)
        na += (ca ** 2).sum(1)
        nb += (cb ** 2).sum(1)
        dot += ca @ cb.T
    return np.maximum(na[:, None] + nb[None, :] - 2 * dot, 0.0)
