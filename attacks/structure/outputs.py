"""What structure attacks return: aligned embedding directions, and how to use them.

:class:`StructureMatcher` is the attacker's product: for every observed ciphertext (or cloud
output) a unit direction in the attacker's own embedding frame.  It scores candidate images
(cosine between a target's direction and the candidate's own embedding direction: the
re-identification game) and decodes directions to images (reconstruction).
:class:`StructureRecovery` carries the matcher, the structure measurements (hull spectrum,
intrinsic dimension, sphere residual, alignment objective) and, optionally, matchers
recovered from less traffic (the traffic curve); :mod:`.scoring` grades it.

Example:
    >>> import numpy as np
    >>> from owsd.data import load_splits
    >>> from attacks.structure.own_embedding import OwnEmbedding
    >>> train, _ = load_splits("digits")
    >>> own = OwnEmbedding.fit(train.images[:400], dim=16)
    >>> m = StructureMatcher(directions=own.directions(train.images[400:405]), own=own)
    >>> s = m.similarity(np.arange(5), train.images[400:405])
    >>> bool((s.argmax(1) == np.arange(5)).all()), m.reconstruct(np.arange(2)).shape
    (True, (2, 1, 8, 8))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from attacks.base import AttackOutput
from attacks.structure.own_embedding import OwnEmbedding

log = logging.getLogger(__name__)


@dataclass
class StructureMatcher:
    """Unit directions ``(N, d)`` of the observed traffic in the attacker's frame.

    ``norms``: whitened norms where the channel keeps them (no standardization), else ``None``
    (the decoder estimates them from the direction).
    """

    directions: np.ndarray
    own: OwnEmbedding
    norms: Optional[np.ndarray] = None

    def similarity(self, target_indices: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Cosine ``(n_targets, n_candidates)`` between targets and candidate images."""
        return self.directions[np.asarray(target_indices)] @ self.own.directions(candidates).T

    def reconstruct(self, target_indices: np.ndarray) -> np.ndarray:
        """Images ``(n, C, H, W)`` in [0, 1] decoded from the targets' directions."""
        idx = np.asarray(target_indices)
        return self.own.decode(self.directions[idx], None if self.norms is None else self.norms[idx])


@dataclass
class StructureRecovery(AttackOutput):
    """A structure attack's product (see the module doc).

    Attributes:
        matcher: directions of every observed item (all the traffic the attacker saw).
        n_traffic: items observed; n_public: public images held.
        structure: measurements from the traffic alone (intrinsic dimension, spectral gap,
            full dimension at this sample size, sphere residual, alignment objective, ...).
        spectrum: the hull's Gram spectrum (descending), for the figure and the scorer's test.
        heldout_residual: fraction of each held-out item (traffic not used to fit the hull)
            outside the hull.
        curve: ``[{"n_traffic", "n_public", "matcher", "seconds", ...}]`` recovered from less traffic
            or fewer public images (prefixes of the same traffic).
        pool_sizes, n_targets, n_reconstruct: the challenges the scorer sets.
        target_kind: ``scrambled`` (ciphertexts) or ``outputs`` (the cloud's output vectors).
    """

    matcher: StructureMatcher
    n_traffic: int
    n_public: int
    structure: dict
    spectrum: np.ndarray
    heldout_residual: np.ndarray
    pool_sizes: tuple
    n_targets: int
    n_reconstruct: int
    target_kind: str = "scrambled"
    curve: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    grid: Optional[dict] = None

    def __post_init__(self) -> None:
        if not self.pool_sizes or any(int(k) < 2 for k in self.pool_sizes):
            raise ValueError(f"pool sizes must be integers >= 2, got {self.pool_sizes!r}")
        if len(self.matcher.directions) != self.n_traffic:
            raise ValueError(f"{len(self.matcher.directions)} directions for {self.n_traffic} observed items")

    def raw(self) -> dict[str, np.ndarray]:
        out = {"spectrum": np.asarray(self.spectrum), "heldout_residual": np.asarray(self.heldout_residual)}
        if self.grid is not None:
            out.update({f"grid_{k}": np.asarray(v) for k, v in self.grid.items()})
        return out
