"""Input checks shared by the scheme's entry points: clear errors that name the problem."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

ArrayLike = "np.ndarray | torch.Tensor"


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
    t = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
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
        raise TypeError(f"{name}: expected uint8 or floating dtype, got {t.dtype}")
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
    if not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    if cols is not None and a.shape[1] != cols:
        raise ValueError(f"{name}: expected {cols} columns, got {a.shape[1]}")
    return a
