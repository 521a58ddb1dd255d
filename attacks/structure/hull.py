"""The affine hull of observed traffic and its intrinsic dimension (ciphertexts alone).

A scrambler without activations sends ``carrier + g (A e - m(e)) / s(e)``: every image lies
in the affine hull of the carrier and the ``k`` columns of ``A`` (``k`` the embedding's
dimension), whatever the key.  The cloud's centered log-probabilities of such images are,
to first order, a linear image of the same vectors.  :func:`fit_affine_hull` finds the hull
from the first ``n_basis`` observations (eigendecomposition of their centered Gram matrix,
features streamed in chunks, so 150,528-pixel images never meet in one float64 array);
:meth:`AffineHull.coordinates` projects any number of observations onto it.

The **intrinsic dimension** (:func:`intrinsic_dimension`) is read off the Gram spectrum as
the position of its largest gap (ratio of consecutive eigenvalues) when that gap exceeds
``min_gap``; otherwise the traffic is full-dimensional at this sample size (``n_basis - 1``),
which is what an input-independent noise scrambler shows.  Pixels clipped to 0 or 1 in any
basis observation are left out (clipping is not linear) while they are a small fraction of
the image (:data:`MAX_CLIPPED`; about 150 of 150,528 for a ``default`` key).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = 0.5 + rng.standard_normal((300, 5)) @ rng.standard_normal((5, 400)) * 1e-3
    >>> hull = fit_affine_hull(y, n_basis=200, rank=5)
    >>> hull.intrinsic_dim, hull.coordinates(y).shape
    (5, (300, 5))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

log = logging.getLogger(__name__)

#: a spectral gap (ratio of consecutive Gram eigenvalues) below this is no evidence of a hull
MIN_GAP = 10.0
#: eigenvalues below this fraction of the largest are at float64 resolution (treated as equal)
FLOOR = 1e-14
CHUNK = 16384
#: leave clipped pixels out only while they are at most this fraction of the image
MAX_CLIPPED = 0.01

Features = Callable[[np.ndarray], np.ndarray]


def image_features(link: str = "identity") -> Features:
    """Flattened images as float64, in the link domain (``logit`` for sigmoid specs)."""
    def f(chunk: np.ndarray) -> np.ndarray:
        a = np.asarray(chunk)
        y = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
        y = y.reshape(len(y), -1)
        if link == "identity":
            return y
        if link != "logit":
            raise ValueError(f"unknown link {link!r}")
        eps = 0.5 / 255.0 if a.dtype == np.uint8 else 1e-7
        y = np.clip(y, eps, 1.0 - eps)
        return np.log(y) - np.log1p(-y)
    return f


def output_features(chunk: np.ndarray) -> np.ndarray:
    """Cloud output vectors (probabilities) as log-probabilities centered per vector (the logits
    up to a constant), last entry dropped (it is minus the sum of the others: no structural zero
    in the spectrum)."""
    p = np.asarray(chunk, np.float64)
    lp = np.log(np.maximum(p, 1e-30))
    return (lp - lp.mean(1, keepdims=True))[:, :-1]


def intrinsic_dimension(spectrum: np.ndarray, *, min_gap: float = MIN_GAP, full: Optional[int] = None
                        ) -> tuple[int, float]:
    """``(dimension, gap)`` from a descending centered Gram spectrum; ``full`` (default ``len - 1``,
    at most the number of features) without a gap."""
    lam = np.asarray(spectrum, np.float64)
    full = max(1, min(len(lam) - 1, full or len(lam)))  # centered: at most n - 1 non-zero eigenvalues
    lam = lam[:full]
    if len(lam) < 2:
        return full, 1.0
    lam = np.maximum(lam, max(lam[0], 1e-300) * FLOOR)  # below float64 resolution: all alike
    ratios = lam[:-1] / lam[1:]
    k = int(np.argmax(ratios))
    gap = float(ratios[k])
    return (k + 1, gap) if gap >= min_gap else (full, gap)


def energy_dimension(spectrum: np.ndarray, fraction: float) -> int:
    """Fewest leading eigenvalues holding ``fraction`` of the spectrum's sum."""
    lam = np.clip(np.asarray(spectrum, np.float64), 0, None)
    c = np.cumsum(lam) / max(lam.sum(), 1e-300)
    return int(np.searchsorted(c, fraction) + 1)


@dataclass
class AffineHull:
    """Mean, orthonormal basis ``(P, rank)`` (zero rows for features left out) and spectrum."""

    mean: np.ndarray
    basis: np.ndarray
    spectrum: np.ndarray
    n_basis: int
    used: np.ndarray
    features: Features
    min_gap: float = MIN_GAP

    @property
    def rank(self) -> int:
        return self.basis.shape[1]

    @property
    def intrinsic_dim(self) -> int:
        return intrinsic_dimension(self.spectrum, min_gap=self.min_gap, full=self.full_dim)[0]

    @property
    def gap(self) -> float:
        return intrinsic_dimension(self.spectrum, min_gap=self.min_gap, full=self.full_dim)[1]

    @property
    def full_dim(self) -> int:
        """The dimension input-independent traffic shows at this sample size."""
        return max(1, min(self.n_basis - 1, int(self.used.sum())))

    def summary(self) -> dict:
        lam = self.spectrum[: self.full_dim]
        return {"intrinsic_dim": self.intrinsic_dim, "gap": self.gap, "full_dim": self.full_dim,
                "n_basis": self.n_basis, "features_used": int(self.used.sum()),
                "features_left_out": int((~self.used).sum()), "rank_kept": self.rank,
                "dim_99": energy_dimension(lam, 0.99), "dim_999": energy_dimension(lam, 0.999),
                "participation_ratio": float(lam.sum() ** 2 / max((lam ** 2).sum(), 1e-300))}

    def coordinates(self, data: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Coordinates ``(N, rank)`` of observations in the hull (float64)."""
        b32, m = self.basis.astype(np.float32), self.mean
        out = np.empty((len(data), self.rank))
        for s in range(0, len(data), batch_size):
            x = self.features(data[s:s + batch_size])
            x = np.where(self.used, x - m, 0.0).astype(np.float32)
            out[s:s + batch_size] = x @ b32
        return out

    def residual_fraction(self, data: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Per observation: squared norm outside the hull / squared norm around the mean."""
        out = np.empty(len(data))
        for s in range(0, len(data), batch_size):
            x = np.where(self.used, self.features(data[s:s + batch_size]) - self.mean, 0.0)
            w = x @ self.basis
            tot = (x ** 2).sum(1)
            out[s:s + batch_size] = np.maximum(tot - (w ** 2).sum(1), 0.0) / np.maximum(tot, 1e-300)
        return out


def fit_affine_hull(data: np.ndarray, *, n_basis: int, rank: int, features: Optional[Features] = None,
                    min_gap: float = MIN_GAP, chunk: int = CHUNK) -> AffineHull:
    """The hull of the first ``n_basis`` rows of ``data``, keeping ``rank`` directions.

    ``features`` maps a chunk of raw observations to float64 rows (default: flattened images).
    """
    features = features or image_features()
    n = min(int(n_basis), len(data))
    if n < 3:
        raise ValueError(f"an affine hull needs at least 3 observations, got {n}")
    x = features(data[:n])
    raw = np.asarray(data[:n])
    used = np.isfinite(x).all(0)
    if raw.dtype.kind in "fu" and raw.ndim == 4:  # images: a few pixels clipped at 0 or 1 are left out
        flat = raw.reshape(n, -1)
        top = 255 if raw.dtype == np.uint8 else 1.0
        clipped = ((flat <= 0) | (flat >= top)).any(0)
        if clipped.mean() <= MAX_CLIPPED:  # else clipping is the channel's nature (natural images, noise)
            used &= ~clipped
    mean = np.where(used, x.mean(0), 0.0)
    cols = np.flatnonzero(used)
    gram = np.zeros((n, n))
    for s in range(0, len(cols), chunk):
        c = x[:, cols[s:s + chunk]] - mean[cols[s:s + chunk]]
        gram += c @ c.T
    lam, u = np.linalg.eigh(gram)
    lam, u = lam[::-1].clip(0, None), u[:, ::-1]
    r = int(min(rank, n - 1, len(cols), int((lam > 1e-300).sum())))
    basis = np.zeros((x.shape[1], r))
    for s in range(0, len(cols), chunk):
        c = x[:, cols[s:s + chunk]] - mean[cols[s:s + chunk]]
        basis[cols[s:s + chunk]] = c.T @ u[:, :r] / np.sqrt(np.maximum(lam[:r], 1e-300))
    hull = AffineHull(mean=mean, basis=basis, spectrum=lam, n_basis=n, used=used, features=features,
                      min_gap=min_gap)
    log.info("affine hull of %d observations: intrinsic dimension %d (gap %.3g, full %d), %d features left out",
             n, hull.intrinsic_dim, hull.gap, hull.full_dim, int((~used).sum()))
    return hull
