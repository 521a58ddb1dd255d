"""A linear decoder from the cloud's output features back to the embedding.

On the ``default`` scrambler the cloud answers almost linearly to the faint signal
(``docs/utility-study.md``), so its centered log-probabilities are, up to noise, a linear
image of the (per-image normalized) embedding.  The organization knows the embeddings of
its own training images, so it can fit that map back by ridge regression and hand the
internal classifier 64 decoded numbers instead of 1,000 correlated ones.  On full
Fashion-MNIST this lifts cloud-only accuracy at 1,000 outputs from 0.870 to 0.886 (plaintext
0.899), on MNIST from 0.973 to 0.983 (plaintext 0.981); docs/utility-study.md, "The internal
model".

The ridge strength is chosen by K-fold cross-validation (mean squared error on the held-out
fold), and :meth:`EmbeddingDecoder.fit_transform` returns *out-of-fold* decodings for the
training set, so a classifier trained on them sees decodings as noisy as the test set's
(with few training images the in-sample ridge fit is nearly exact and would mislead it).
Only the weights are fitted per fold: the standardization and centering statistics are
those of all training rows (an O(1/n) leak of the held-out fold, negligible beyond a few
hundred rows).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> e = rng.normal(size=(500, 4))
    >>> f = e @ rng.normal(size=(4, 30)) + 0.01 * rng.normal(size=(500, 30))
    >>> dec = EmbeddingDecoder()
    >>> oof = dec.fit_transform(f, e)
    >>> bool(dec.r2(f, e).min() > 0.99), oof.shape
    (True, (500, 4))
"""

from __future__ import annotations

import logging
import math
import operator
from typing import Sequence

import numpy as np
import torch

from owsd.validation import as_matrix

log = logging.getLogger(__name__)

ALPHAS: tuple[float, ...] = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""Ridge strengths tried, per training example (the penalty is ``alpha * n``) on standardized features."""


class EmbeddingDecoder:
    """Ridge regression from features to embeddings, strength chosen by K-fold CV.

    Features are standardized per column (statistics of the training set); inputs are
    validated as float32 and the normal equations solved in float64, in torch (numpy's BLAS
    threads, left spinning after a call, slowed the torch classifier that follows tenfold).  ``folds`` is the number
    of cross-validation folds (at least 2), ``seed`` fixes the fold assignment.  After
    fitting, ``alpha`` is the chosen strength and ``cv_r2`` the pooled cross-validated R^2
    (1 - total squared error / total variance over all embedding dimensions).
    """

    def __init__(self, *, alphas: Sequence[float] = ALPHAS, folds: int = 5, seed: int = 0) -> None:
        try:
            folds = operator.index(folds)
        except TypeError:
            raise TypeError(f"folds must be an integer, got {folds!r}") from None
        if folds < 2:
            raise ValueError(f"folds must be at least 2, got {folds}")
        alphas = tuple(float(a) for a in alphas)
        if not alphas or not all(math.isfinite(a) and a > 0 for a in alphas):
            raise ValueError(f"alphas must be finite and positive, got {alphas}")
        self.alphas, self.folds, self.seed = alphas, folds, seed

    def _standardize(self, f: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(f).to(torch.float64) - self._mean) / self._std

    @staticmethod
    def _solve(gram: torch.Tensor, rhs: torch.Tensor, n: int, alphas: Sequence[float]) -> list[torch.Tensor]:
        w, v = torch.linalg.eigh(gram)
        proj = v.T @ rhs
        return [v @ (proj / (w.clamp_min(0.0) + a * n)[:, None]) for a in alphas]

    def fit_transform(self, features, embeddings) -> np.ndarray:
        """Fit on all of ``features -> embeddings``; return out-of-fold decodings (float32)."""
        f = as_matrix(features, name="decoder features")
        e = torch.from_numpy(as_matrix(embeddings, name="embeddings")).to(torch.float64)
        n = len(f)
        if len(e) != n:
            raise ValueError(f"{n} feature rows but {len(e)} embeddings")
        if n < 2 * self.folds:
            raise ValueError(f"the decoder needs at least {2 * self.folds} training examples, got {n}")
        f64 = torch.from_numpy(f).to(torch.float64)
        self._mean, self._std = f64.mean(0), f64.std(0, unbiased=False).clamp_min(1e-6)
        self._e_mean = e.mean(0)
        x, y = self._standardize(f), e - self._e_mean
        fold = torch.from_numpy(np.random.default_rng(self.seed).permutation(n) % self.folds)
        gram, rhs = x.T @ x, x.T @ y
        oof = torch.zeros(len(self.alphas), n, e.shape[1], dtype=torch.float64)
        for k in range(self.folds):
            held = fold == k
            xk, yk = x[held], y[held]
            ws = self._solve(gram - xk.T @ xk, rhs - xk.T @ yk, n - int(held.sum()), self.alphas)
            for i, w in enumerate(ws):
                oof[i, held] = xk @ w
        mse = ((oof - y[None]) ** 2).mean(dim=(1, 2))
        best = int(torch.argmin(mse))
        self.alpha = self.alphas[best]
        var = float((y ** 2).mean())
        self.cv_r2 = float(1.0 - float(mse[best]) / var) if var > 0 else float("nan")
        self._weight = self._solve(gram, rhs, n, [self.alpha])[0]
        log.info("embedding decoder: alpha %.0e, cross-validated R^2 %.4f", self.alpha, self.cv_r2)
        return (oof[best] + self._e_mean).to(torch.float32).numpy()

    def fit(self, features, embeddings) -> "EmbeddingDecoder":
        self.fit_transform(features, embeddings)
        return self

    def transform(self, features) -> np.ndarray:
        """Decoded embeddings ``(N, d)`` (float32) of new features."""
        if not hasattr(self, "_weight"):
            raise RuntimeError("EmbeddingDecoder: call fit first")
        f = as_matrix(features, name="decoder features", cols=len(self._mean))
        return (self._standardize(f) @ self._weight + self._e_mean).to(torch.float32).numpy()

    def r2(self, features, embeddings) -> np.ndarray:
        """Per-dimension coefficient of determination of the decodings of ``features``
        (NaN for a dimension that is constant in ``embeddings``)."""
        e = as_matrix(embeddings, name="embeddings").astype(np.float64)
        d = self.transform(features).astype(np.float64)
        if d.shape != e.shape:
            raise ValueError(f"{len(d)} feature rows decode to shape {d.shape}, embeddings have shape {e.shape}")
        ss = ((e - e.mean(0)) ** 2).sum(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ss > 0, 1.0 - ((d - e) ** 2).sum(0) / ss, np.nan)
