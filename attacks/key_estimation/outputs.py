"""What key-estimation attacks return: an estimated key, or a re-identification procedure.

* :class:`KeyEstimate`: a functional estimate of the victim's scrambler, either an affine map
  in a link domain (``kind="affine"``, exact for link-linear specs), a linear map and carrier
  under per-image standardization (``kind="standardized"``, exact for linear standardized specs
  such as ``default``, see :mod:`.standardized`) or weights of a surrogate of the public spec
  (``kind="surrogate"``).  It can predict scrambled images for new inputs
  and invert scrambled images back to inputs; the scorer (:mod:`.scoring`) grades both.
* :class:`Matching`: a ciphertext-only re-identifier; the scorer sets it re-identification
  challenges (scrambled targets against shuffled candidate originals) of growing pool size.

The estimated key is never written to disk (``raw`` holds diagnostics only): a good estimate
is, functionally, the secret.

Example:
    >>> import numpy as np
    >>> est = KeyEstimate(kind="affine", input_kind="embedding", output_shape=(1, 1, 2), link="identity",
    ...                   matrix=np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))
    >>> est.predict(np.zeros((1, 2))).reshape(-1).tolist()
    [0.5, 0.5]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from attacks.base import AttackOutput
from attacks.key_estimation.linear_fit import as_unit_float, from_link, to_link
from attacks.key_estimation.standardized import invert_standardized, predict_standardized
from attacks.key_estimation.surrogate import HOMOGENEOUS, fit_domain, fit_forward, fit_targets, predict_images
from owsd.spec import ScramblerSpec

log = logging.getLogger(__name__)

KINDS = ("affine", "standardized", "surrogate")


@dataclass
class KeyEstimate(AttackOutput):
    """An estimated scrambler (see the module docstring).

    Attributes:
        kind: ``affine`` (``matrix`` in the ``link`` domain), ``standardized`` (``matrix``: rows
            acting on the input features, then the carrier; images are
            ``clip(carrier + spec.gain * standardize(features @ rows))``; image inputs get a
            constant feature appended) or ``surrogate`` (``weights`` of ``spec``).
        input_kind: ``embedding`` or ``image`` (images enter as ``(x - in_mean) @ in_basis.T``,
            coordinates of the attacker's own choosing; ``in_decode`` maps them back).
        output_shape: ``(C, H, W)`` of the scrambled images.
        info: what the attack did (pairs, queries, losses), saved with the result.
        score_options: how much work the scorer may spend on inversion (``n_invert``, ``invert_steps``).
    """

    kind: str
    input_kind: str
    output_shape: tuple
    link: str = "identity"
    matrix: Optional[np.ndarray] = None
    in_mean: Optional[np.ndarray] = None
    in_basis: Optional[np.ndarray] = None
    in_decode: Optional[np.ndarray] = None
    spec: Optional[ScramblerSpec] = None
    weights: Optional[list] = None
    biases: Optional[list] = None
    info: dict = field(default_factory=dict)
    score_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"KeyEstimate.kind must be one of {KINDS}, got {self.kind!r}")
        if self.input_kind not in ("embedding", "image"):
            raise ValueError(f"KeyEstimate.input_kind must be 'embedding' or 'image', got {self.input_kind!r}")
        if self.kind in ("affine", "standardized") and self.matrix is None:
            raise ValueError(f"an {self.kind} KeyEstimate needs its matrix")
        if self.kind == "standardized" and self.spec is None:
            raise ValueError("a standardized KeyEstimate needs the spec (its gain)")
        if self.kind == "surrogate" and (self.weights is None or self.spec is None):
            raise ValueError("a surrogate KeyEstimate needs the spec and its weights")

    # --- inputs -----------------------------------------------------------------------
    def coords(self, inputs: np.ndarray) -> np.ndarray:
        """The coordinates the map acts on: embeddings, or PCA coordinates of images."""
        if self.input_kind == "embedding":
            return np.asarray(inputs, np.float64)
        x = as_unit_float(inputs).reshape(len(inputs), -1)
        return (x - self.in_mean) @ self.in_basis.T

    def decode(self, coords: np.ndarray) -> Optional[np.ndarray]:
        """Flattened images for coordinates of image inputs (the attacker's PCA); None for embeddings."""
        if self.input_kind == "embedding":
            return None
        dec = self.in_decode if self.in_decode is not None else self.in_basis
        return np.clip(np.asarray(coords) @ dec + self.in_mean, 0.0, 1.0)

    def features(self, inputs: np.ndarray) -> np.ndarray:
        """What a standardized estimate's rows act on: the coordinates, plus a constant for images."""
        c = self.coords(inputs)
        if self.matrix.shape[0] - 1 == c.shape[1] + 1:
            c = np.concatenate([c, np.ones((len(c), 1))], axis=1)
        return c

    # --- forward ------------------------------------------------------------------------
    def predict_link(self, inputs: np.ndarray) -> np.ndarray:
        """Link-domain outputs ``(N, P)`` of an affine estimate."""
        if self.kind != "affine":
            raise TypeError("predict_link is defined for affine estimates")
        c = self.coords(inputs)
        return c @ self.matrix[:-1] + self.matrix[-1]

    def predict(self, inputs: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """Scrambled images ``(N, C, H, W)`` float in [0, 1] the estimate gives for ``inputs``."""
        if self.kind == "standardized":
            out = predict_standardized(self.matrix, self.features(inputs), gain=float(self.spec.gain),
                                       batch_size=batch_size)
            return out.reshape(len(inputs), *self.output_shape).astype(np.float32)
        if self.kind == "affine":
            out = [from_link(self.predict_link(inputs[s:s + batch_size]), self.link)
                   for s in range(0, len(inputs), batch_size)]
            return np.concatenate(out).reshape(len(inputs), *self.output_shape).astype(np.float32)
        return predict_images(self.spec, self.weights, self.biases, self.coords(inputs).astype(np.float32),
                              batch_size=batch_size)

    # --- inverse -----------------------------------------------------------------------
    def invert(self, scrambled: np.ndarray, *, steps: int = 50, generator: Optional[torch.Generator] = None,
               n_init: int = 64) -> np.ndarray:
        """Input coordinates whose estimated scrambling best matches ``scrambled`` (least squares).

        ``scrambled``: float images in [0, 1] (as OWSD sends them) or uint8 pixels.  Affine
        estimates are inverted in closed form in the link domain; surrogates by Adam in their
        fit domain (logit for sigmoid specs) from the best of ``n_init`` random embeddings.
        Standardized estimates give the direction in closed form and the mean norm of the
        attacker's known inputs (the image forgets the norm).
        """
        if self.kind == "standardized":  # direction in closed form; the norm is the known inputs' mean
            h = invert_standardized(self.matrix, scrambled)
            k = self.matrix.shape[0] - 1 - (1 if self.input_kind == "image" else 0)
            h = h[:, :k]
            norm = float(self.info.get("input_norm", np.sqrt(k)))
            return h * (norm / (np.linalg.norm(h, axis=1, keepdims=True) + 1e-300))
        if self.kind == "affine":
            t = to_link(scrambled, self.link) - self.matrix[-1].astype(np.float64)
            a = self.matrix[:-1].astype(np.float64)
            g = a @ a.T
            g += 1e-6 * np.trace(g) / len(g) * np.eye(len(g))
            return np.linalg.solve(g, a @ t.T).T
        return self._invert_surrogate(scrambled, steps=steps, generator=generator, n_init=n_init)

    def _invert_surrogate(self, scrambled, *, steps, generator, n_init) -> np.ndarray:
        gen = generator or torch.Generator().manual_seed(0)
        spec = self.spec
        domain = fit_domain(spec)
        y = fit_targets(spec, scrambled, domain)
        d = spec.embedding_dim
        cand = torch.randn(n_init, d, generator=gen)
        with torch.no_grad():
            cy = fit_forward(spec, self.weights, self.biases, cand, domain)
        start = cand[torch.cdist(y, cy).argmin(dim=1)].clone()
        e = start.requires_grad_(True)
        opt = torch.optim.Adam([e], lr=0.05)
        scale = float(((y - y.mean(0)) ** 2).sum(1).mean()) + 1e-30 if len(y) > 1 else float((y ** 2).sum()) + 1e-30
        for _ in range(steps):
            loss = ((fit_forward(spec, self.weights, self.biases, e, domain) - y) ** 2).sum(1).mean() / scale
            opt.zero_grad()
            loss.backward()
            opt.step()
        e = e.detach()
        scale_free = (spec.normalization == "standardize" and all(l.activation in HOMOGENEOUS for l in spec.layers)
                      and not any(l.bias for l in spec.layers))
        if scale_free:  # the image forgets the embedding's norm: use the whitened prior's
            e = e / (e.norm(dim=1, keepdim=True) + 1e-12) * np.sqrt(d)
        return e.numpy().astype(np.float64)

    def raw(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for h in self.info.get("restarts", []):
            out.setdefault("restart_check_loss", []).append(h.get("check_loss", np.nan))
        return {k: np.asarray(v) for k, v in out.items()}


@dataclass
class Matching(AttackOutput):
    """A ciphertext-only re-identifier, graded by the scorer on challenges of growing pool size.

    ``reidentifier.match(target_indices, candidates)`` returns, for each target index (into the
    victim's scrambled images the attacker saw), the index of the candidate original it
    matches (a permutation when there are as many candidates as targets).
    """

    reidentifier: Any
    pool_sizes: tuple
    trials: int = 1
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not hasattr(self.reidentifier, "match"):
            raise TypeError("Matching.reidentifier must have a match(target_indices, candidates) method")
        if not self.pool_sizes or any(int(k) < 2 for k in self.pool_sizes):
            raise ValueError(f"pool sizes must be integers >= 2, got {self.pool_sizes!r}")

    def raw(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.info.items()
                if isinstance(v, (list, tuple, np.ndarray)) and np.asarray(v).dtype.kind in "fiu"}
