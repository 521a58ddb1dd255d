"""Exact key recovery for link-linear scramblers: a link function, structured least squares.

When every layer of the public spec is linear and the final normalization is elementwise
invertible (``sigmoid``), ``logit(image)`` is a linear function of the embedding, and each
output pixel depends only on the embedding coordinates in its receptive field (its
*support*, computed from the spec alone).  Least squares per support group then recovers the
map from about ``|support|`` pairs (16 for the ``linear`` preset), or ``D + 1`` with
``structure="dense"`` (every coordinate and an offset).

Example:
    >>> import numpy as np
    >>> from owsd.presets import get_preset
    >>> groups = support_groups(get_preset("linear"))
    >>> len(groups), groups[0][0].size
    (4, 16)
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch

from owsd.spec import ScramblerSpec

log = logging.getLogger(__name__)

LINKS = ("logit", "identity")
_U8_LO, _U8_HI = 0.5 / 255.0, 254.5 / 255.0
FLOAT_EPS = 1e-7


def link_for(spec: Optional[ScramblerSpec]) -> str:
    """``logit`` where the image is ``sigmoid`` of a (possibly) linear map, else ``identity``."""
    return "logit" if spec is not None and spec.normalization == "sigmoid" else "identity"


def as_unit_float(images: np.ndarray) -> np.ndarray:
    """Images as float64 in [0, 1]: uint8 pixels are divided by 255, floats are kept as they are
    (OWSD sends float32 images; uint8 only where a channel quantizes)."""
    y = np.asarray(images)
    if y.dtype == np.uint8:
        return y.astype(np.float64) / 255.0
    if y.dtype.kind != "f":
        raise TypeError(f"images must be uint8 or float in [0, 1], got dtype {y.dtype}")
    return y.astype(np.float64)


def to_link(images: np.ndarray, link: str) -> np.ndarray:
    """Images (uint8 or float in [0, 1]) to the link domain, flattened ``(N, P)`` float64.

    Before the logit, uint8 values 0 and 255 are clipped to 0.5/255 and 254.5/255 (half a
    quantization step); float images only to ``[FLOAT_EPS, 1 - FLOAT_EPS]`` (float32 resolution).
    """
    u8 = np.asarray(images).dtype == np.uint8
    y = as_unit_float(images).reshape(len(images), -1)
    if link == "identity":
        return y
    if link == "logit":
        y = np.clip(y, _U8_LO, _U8_HI) if u8 else np.clip(y, FLOAT_EPS, 1.0 - FLOAT_EPS)
        return np.log(y) - np.log1p(-y)
    raise ValueError(f"unknown link {link!r}; expected one of {LINKS}")


def from_link(t: np.ndarray, link: str) -> np.ndarray:
    """The inverse of :func:`to_link` (floats in [0, 1])."""
    if link == "identity":
        return np.clip(t, 0.0, 1.0)
    return 1.0 / (1.0 + np.exp(-t))


def support_groups(spec: ScramblerSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """Groups of output pixels with the same receptive field: ``[(coords, pixels), ...]``.

    Computed by pushing each embedding basis vector through the spec with all-ones weights.
    """
    d = spec.embedding_dim
    x = torch.eye(d, dtype=torch.float64).reshape(d, *spec.input_shape)
    with torch.no_grad():
        for lay in spec.layers:
            w = torch.ones(x.shape[1], lay.out_channels, lay.kernel_size, lay.kernel_size, dtype=torch.float64)
            x = torch.nn.functional.conv_transpose2d(x, w, stride=lay.stride, padding=lay.padding,
                                                     output_padding=lay.output_padding)
    mask = (x.reshape(d, -1) != 0).numpy().T  # (P, D)
    keys, inverse = np.unique(np.packbits(mask, axis=1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    groups = []
    for g in range(len(keys)):
        pixels = np.flatnonzero(inverse == g)
        groups.append((np.flatnonzero(mask[pixels[0]]), pixels))
    return groups


def has_structural_offset(spec: Optional[ScramblerSpec]) -> bool:
    """Whether the link-domain map may have an offset (biases, carrier, unknown spec)."""
    if spec is None:
        return True
    return any(l.bias for l in spec.layers) or spec.normalization != "sigmoid" or spec.carrier != "none"


def fit_affine(inputs: np.ndarray, targets_link: np.ndarray, *, groups: Optional[list] = None,
               intercept: bool = True, ridge: float = 0.0) -> np.ndarray:
    """Least squares ``targets ≈ [inputs, 1] @ M``; returns ``M`` ``(D + 1, P)`` (last row: offset).

    With ``groups`` (from :func:`support_groups`) each pixel group is fitted on its own
    coordinates only (the other entries of ``M`` stay zero).  ``ridge`` adds ``ridge * I``.
    """
    x = np.asarray(inputs, np.float64)
    n, d = x.shape
    p = targets_link.shape[1]
    m = np.zeros((d + 1, p), np.float64)
    if groups is None:
        groups = [(np.arange(d), np.arange(p))]
    for coords, pixels in groups:
        cols = list(coords) + ([d] if intercept else [])
        a = np.concatenate([x, np.ones((n, 1))], axis=1)[:, cols]
        if ridge > 0 or n < len(cols):
            g = a.T @ a + max(ridge, 1e-8) * np.eye(len(cols))
            sol = np.linalg.solve(g, a.T @ targets_link[:, pixels])
        else:
            sol, *_ = np.linalg.lstsq(a, targets_link[:, pixels], rcond=None)
        m[np.asarray(cols)[:, None], pixels[None, :]] = sol
    return m


def prior_ridge(spec: Optional[ScramblerSpec], link: str, unknowns: int, *, quantized: bool = True) -> float:
    """Ridge ``noise variance / prior variance`` of the MAP estimate under the spec's public weight prior.

    The spec's weights are variance preserving, so each of the ``unknowns`` coefficients of a
    pixel has prior variance about ``(gain * weight_scale)^2 / unknowns``.  ``quantized`` (uint8
    targets): rounding adds noise of variance ``1/(12 * 255^2)`` in the image, about 20 times
    that after the logit; float32 targets: the rounding of float32 near 0.5 (``2^-25``).
    """
    step = 1.0 / 255.0 if quantized else 2.0 ** -25
    noise = (20.0 if link == "logit" else 1.0) * step ** 2 / 12
    if spec is None:
        return noise
    gain = spec.gain if spec.normalization == "sigmoid" else 1.0
    return noise * unknowns / (gain * spec.weight_scale) ** 2


def hadamard_design(d: int, *, rng: np.random.Generator) -> np.ndarray:
    """``d`` orthogonal ±1 query vectors of length ``d`` (Sylvester Hadamard when ``d`` is a
    power of two, else random signs orthogonalized), rows of a ``(d, d)`` matrix."""
    if d & (d - 1) == 0:
        from scipy.linalg import hadamard

        return hadamard(d).astype(np.float64)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sqrt(d)
