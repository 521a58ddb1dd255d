"""The output type of inversion attacks: reconstructed images of some targets.

An inversion attack returns :class:`Reconstructions`: float images ``(N, C, H, W)`` in
``[0, 1]`` for the victim's targets ``target_indices``.  The scorer registered for it
(:mod:`attacks.inversion.scoring`) compares them to the victim's private images, which the
attack never sees.

Example:
    >>> import numpy as np
    >>> r = Reconstructions(np.zeros((2, 1, 8, 8), np.float32), np.array([3, 5]))
    >>> sorted(r.raw())
    ['reconstructions', 'target_indices']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from attacks.base import AttackOutput


@dataclass
class Reconstructions(AttackOutput):
    """Reconstructed images for some of the victim's targets.

    Attributes:
        images: ``(N, C, H, W)`` float in ``[0, 1]``.
        target_indices: index into the victim's private images of each reconstruction.
        exclude_pairs: drop targets that were among the attacker's known pairs (a decoder
            could memorize them) before scoring.
        curves: training curves (loss per epoch, ...) passed through to the result.
        info: small scalar facts about the run (training seconds, input size, ...).
    """

    images: np.ndarray
    target_indices: np.ndarray
    exclude_pairs: bool = True
    curves: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    #: set by the scorer: a few originals beside their reconstructions, for :func:`save_grid`
    grid: Optional[dict] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images, dtype=np.float32)
        self.target_indices = np.asarray(self.target_indices, dtype=np.int64)
        if self.images.ndim != 4:
            raise ValueError(f"reconstructions must be (N, C, H, W), got shape {self.images.shape}")
        if len(self.images) != len(self.target_indices):
            raise ValueError(f"{len(self.images)} reconstructions for {len(self.target_indices)} target indices")
        if not np.isfinite(self.images).all():
            raise ValueError("reconstructions contain NaN or infinite values")
        self.images = np.clip(self.images, 0.0, 1.0)

    def raw(self) -> dict[str, np.ndarray]:
        out = {"reconstructions": self.images, "target_indices": self.target_indices}
        if self.grid is not None:
            out.update({f"grid_{k}": np.asarray(v) for k, v in self.grid.items()})
        return out

