"""Input checks shared by the scheme's entry points: clear errors that name the problem.

Nothing is lost silently: complex arrays (whose imaginary part a cast would drop), object,
string and bool arrays are refused with :class:`DtypeError`; integers that float32 cannot
hold exactly (beyond +-2^24) and floats beyond float32's range are refused rather than
rounded or turned into infinities.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

ArrayLike = "np.ndarray | torch.Tensor"
FLOAT32_EXACT_INT = 2 ** 24  # largest integer magnitude float32 holds exactly
FLOAT32_MAX = float(np.finfo(np.float32).max)


class DtypeError(ValueError, TypeError):
    """An array of a dtype the scheme refuses (complex, object, string, bool, or the wrong kind)."""


def _refuse_kind(dtype, name: str) -> None:
    kind = np.dtype(dtype).kind if not isinstance(dtype, torch.dtype) else (
        "c" if dtype.is_complex else "b" if dtype == torch.bool else "f" if dtype.is_floating_point else "i")
    if kind == "c":
        raise DtypeError(f"{name}: complex values are refused (a cast would drop the imaginary part)")
    if kind in "OSUVMm":
        raise DtypeError(f"{name}: expected a numeric array, got dtype {dtype}")


def as_image_batch(images, *, name: str = "images", channels: int | None = None,
                   size: Sequence[int] | None = None) -> torch.Tensor:
    """Validate a batch of images and return it as float32 ``(N, C, H, W)`` in ``[0, 1]``.

    Accepts ``uint8`` (0..255) or floating arrays/tensors already in ``[0, 1]``, with
    shape ``(N, C, H, W)``, or ``(N, H, W)`` for grey images.

    Example:
        >>> import numpy as np
        >>> as_image_batch(np.zeros((2, 28, 28), np.uint8)).shape
        torch.Size([2, 1, 28, 28])
    """
    if not isinstance(images, torch.Tensor):
        images = np.asarray(images)
    _refuse_kind(images.dtype, name)
    t = images if isinstance(images, torch.Tensor) else torch.as_tensor(images)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4:
        raise ValueError(f"{name}: expected shape (N, C, H, W) or (N, H, W), got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name}: empty batch")
    if t.dtype == torch.uint8:
        t = t.to(torch.float32) / 255.0
    elif t.is_floating_point():
        t = t.to(torch.float32)
        if not torch.isfinite(t).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"{name}: float images must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    else:
        raise DtypeError(f"{name}: expected uint8 or floating dtype, got {t.dtype}")
    if channels is not None and t.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channels, got {t.shape[1]} (shape {tuple(t.shape)})")
    if size is not None and tuple(t.shape[2:]) != tuple(size):
        raise ValueError(f"{name}: expected spatial size {tuple(size)}, got {tuple(t.shape[2:])}")
    return t


def as_matrix(x, *, name: str, cols: int | None = None) -> np.ndarray:
    """Validate a finite 2-D float matrix ``(N, D)`` and return it as float32 numpy."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (N, D), got shape {a.shape}")
    _refuse_kind(a.dtype, name)
    if not np.issubdtype(a.dtype, np.number):
        raise DtypeError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    if a.dtype.kind in "iu" and a.size:
        lo, hi = int(a.min()), int(a.max())
        if max(-lo, hi) > FLOAT32_EXACT_INT:
            raise ValueError(f"{name}: integer values in [{lo}, {hi}] exceed +-2^24, beyond what float32 "
                             "holds exactly; pass floats")
    elif a.dtype.kind == "f" and a.dtype.itemsize > 4 and a.size:
        finite = a[np.isfinite(a)]
        if finite.size and float(np.abs(finite).max()) > FLOAT32_MAX:
            raise ValueError(f"{name}: values up to {float(np.abs(finite).max()):.3g} exceed float32's range")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    if cols is not None and a.shape[1] != cols:
        raise ValueError(f"{name}: expected {cols} columns, got {a.shape[1]}")
    return a
