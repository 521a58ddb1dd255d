"""The attacker's own embedding of its public images (no knowledge of the victim's encoder).

It fits a whitened PCA with as many components as the hull's dimension on its public images
(the scheme's public encoder kind), then whitens the directions of those coordinates with
their own Tyler scatter, exactly as :func:`~.geometry.traffic_rays` treats the traffic, so
that both sides differ by one rotation.  It also decodes: an aligned direction goes back to
an image through the PCA, with a norm estimated from the direction (the per-image
standardization forgets the norm; the public images teach how norm and direction go together:
mean norm of the ``k`` public images nearest in direction).

Example:
    >>> import numpy as np
    >>> from owsd.data import load_splits
    >>> train, _ = load_splits("digits")
    >>> own = OwnEmbedding.fit(train.images[:400], dim=16)
    >>> u = own.directions(train.images[400:410])
    >>> u.shape, bool(np.allclose(np.linalg.norm(u, axis=1), 1.0))
    ((10, 16), True)
    >>> own.decode(u).shape
    (10, 1, 8, 8)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np

from attacks.structure.geometry import inv_sqrt, normalize, tyler_scatter

log = logging.getLogger(__name__)

NORM_NEIGHBOURS = 20


def _flat(images: np.ndarray) -> np.ndarray:
    a = np.asarray(images)
    x = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
    return x.reshape(len(x), -1)


@dataclass
class OwnEmbedding:
    """PCA ``(mean, enc, dec)`` of public images, Tyler whitening, and the public directions."""

    mean: np.ndarray
    enc: np.ndarray
    dec: np.ndarray
    whiten: np.ndarray
    public_dirs: np.ndarray
    public_norms: np.ndarray
    image_shape: tuple

    @classmethod
    def fit(cls, images: np.ndarray, *, dim: int) -> "OwnEmbedding":
        """Fit on public images ``(M, C, H, W)`` (uint8 or floats in [0, 1]); ``dim`` components at
        most (fewer where the images have fewer informative directions: :attr:`dim`)."""
        x = _flat(images)
        if len(x) <= dim + 1:
            raise ValueError(f"a {dim}-dim embedding needs more than {dim + 1} public images, got {len(x)}")
        mean = x.mean(0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        k = int(min(dim, (s > 1e-6 * max(s[0], 1e-300)).sum()))
        std = s[:k] / np.sqrt(len(x) - 1)
        enc, dec = vt[:k] / std[:, None], vt[:k] * std[:, None]
        c = (x - mean) @ enc.T
        w = inv_sqrt(tyler_scatter(c))
        u = c @ w
        return cls(mean=mean, enc=enc, dec=dec, whiten=w, public_dirs=normalize(u),
                   public_norms=np.linalg.norm(u, axis=1), image_shape=tuple(np.asarray(images).shape[1:]))

    @property
    def dim(self) -> int:
        return self.enc.shape[0]

    def whitened(self, images: np.ndarray) -> np.ndarray:
        """Whitened coordinates ``(N, dim)`` of images."""
        return ((_flat(images) - self.mean) @ self.enc.T) @ self.whiten

    def directions(self, images: np.ndarray) -> np.ndarray:
        """Unit directions ``(N, dim)`` of images in the attacker's frame."""
        return normalize(self.whitened(images))

    def norm_for(self, directions: np.ndarray, *, k: int = NORM_NEIGHBOURS, batch_size: int = 1024) -> np.ndarray:
        """Whitened norms expected for unit directions (mean over the ``k`` nearest public directions)."""
        k = max(1, min(k, len(self.public_dirs)))
        out = np.empty(len(directions))
        for s in range(0, len(directions), batch_size):
            sim = directions[s:s + batch_size] @ self.public_dirs.T
            nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            out[s:s + batch_size] = self.public_norms[nn].mean(1)
        return out

    def decode(self, directions: np.ndarray, norms: Optional[np.ndarray] = None) -> np.ndarray:
        """Images ``(N, C, H, W)`` in [0, 1] for directions (norms estimated when not given)."""
        d = np.asarray(directions, np.float64)
        n = self.norm_for(d) if norms is None else np.asarray(norms, np.float64)
        coords = (d * n[:, None]) @ np.linalg.inv(self.whiten)
        x = np.clip(coords @ self.dec + self.mean, 0.0, 1.0)
        return x.reshape(len(d), *self.image_shape).astype(np.float32)
