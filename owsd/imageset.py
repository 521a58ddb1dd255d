"""Labelled image sets and their errors: what every data loader returns and raises.

:class:`ImageDataset` (uint8 images ``(N, C, H, W)`` with integer labels), the
:class:`DataFormatError` every loader raises on a bad file, and the size limits and bounded
read of one image file that :mod:`owsd.data` (the standard formats) and :mod:`owsd.userdata`
(your own images) share.  Both import this module; it imports neither.

Example:
    >>> import numpy as np
    >>> ds = ImageDataset("demo", np.zeros((4, 1, 2, 2), np.uint8), np.array([0, 1, 0, 1]), 2)
    >>> len(ds), ds.subset(2).labels.tolist()
    (4, [0, 1])
    >>> str(DataFormatError("x.png", "not an image"))
    'x.png: not an image'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

MAX_IMAGE_PIXELS = 1 << 26  # per decoded image (far above ImageNet's)
MAX_MEMBER_BYTES = 64 << 20  # per image file (alone, or inside a tarball)


class DataFormatError(ValueError):
    """A data file is missing a part, truncated, or not in the expected format."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = str(path), problem


@dataclass
class ImageDataset:
    """Images ``(N, C, H, W)`` uint8 with integer labels."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"{self.name}: images must be uint8 (N, C, H, W), got {self.images.dtype} "
                             f"{self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
        self.labels = self.labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: Optional[int], *, rng: Optional[np.random.Generator] = None) -> "ImageDataset":
        """The first ``n`` items (or a random ``n`` with ``rng``); all when ``n`` is None."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ValueError(f"subset size must be positive, got {n}")
        idx = np.sort(rng.choice(len(self), n, replace=False)) if rng is not None else np.arange(n)
        return ImageDataset(self.name, self.images[idx], self.labels[idx], self.num_classes)

    def flat(self) -> np.ndarray:
        """Images as float32 ``(N, C*H*W)`` in ``[0, 1]``."""
        return self.images.reshape(len(self), -1).astype(np.float32) / 255.0

    def digest(self) -> str:
        """Content hash (for cache keys)."""
        h = hashlib.sha256(self.name.encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()[:16]


def image_file_bytes(p: Path) -> bytes:
    """The bytes of one image file (a regular file of at most :data:`MAX_MEMBER_BYTES`)."""
    if not p.is_file():
        raise DataFormatError(p, "not a regular file")
    if p.stat().st_size > MAX_MEMBER_BYTES:
        raise DataFormatError(p, f"{p.stat().st_size:,} bytes, larger than any image ({MAX_MEMBER_BYTES:,}-byte limit)")
    return p.read_bytes()
