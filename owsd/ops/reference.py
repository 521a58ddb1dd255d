"""Reference (pure PyTorch) implementation of the scrambler's layer stack.

This module is the ground truth every faster implementation in :mod:`owsd.ops`
is tested against.  It is deliberately written as the plain layer-by-layer
composition of :func:`torch.nn.functional.conv_transpose2d` calls.

Semantics of one scrambler forward pass (``fused_scramble_ref``):

1. ``x`` has shape ``(N, C0, H0, W0)`` (the embedding, reshaped by the caller).
2. For every layer ``i``: ``x = conv_transpose2d(x, weights[i], biases[i],
   stride=strides[i], padding=paddings[i], output_padding=output_paddings[i])``
   followed by ``activations[i]`` (one of :data:`ACTIVATIONS`).
3. The final normalization (one of :data:`NORMALIZATIONS`) maps the last
   feature map to an image in ``[0, 1]``:

   * ``"none"``: ``clamp(x, 0, 1)``
   * ``"sigmoid"``: ``sigmoid(gain * x)``
   * ``"standardize"``: per image, over all of ``(C, H, W)``,
     ``clamp(offset + gain * (x - mean) / (std + 1e-6), 0, 1)`` where ``std``
     is the population standard deviation (``unbiased=False``) and ``offset`` is
     the scalar ``0.5`` or, when a ``carrier`` tensor of shape ``(C, H, W)`` is
     given, that carrier (broadcast over the batch).

4. With ``out_dtype=torch.uint8`` the image is quantized as
   ``round(255 * y)`` (round half to even, as :func:`torch.round`).

Example:
    >>> import torch
    >>> from owsd.ops.reference import fused_scramble_ref
    >>> z = torch.randn(2, 4, 2, 2)
    >>> w = [torch.randn(4, 3, 4, 4)]
    >>> y = fused_scramble_ref(z, w, [None], strides=[2], paddings=[1],
    ...                        output_paddings=[0], activations=["none"],
    ...                        normalization="sigmoid")
    >>> tuple(y.shape)
    (2, 3, 4, 4)
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

ACTIVATIONS = ("none", "relu", "leaky_relu", "tanh")
"""Activations a layer may have. ``leaky_relu`` uses negative slope 0.2."""

NORMALIZATIONS = ("none", "sigmoid", "standardize")
"""Final normalizations that map the last feature map to a ``[0, 1]`` image."""

LEAKY_SLOPE = 0.2
STD_EPS = 1e-6


def apply_activation(x: torch.Tensor, name: str) -> torch.Tensor:
    """Apply the named activation (see :data:`ACTIVATIONS`)."""
    if name == "none":
        return x
    if name == "relu":
        return torch.relu(x)
    if name == "leaky_relu":
        return F.leaky_relu(x, LEAKY_SLOPE)
    if name == "tanh":
        return torch.tanh(x)
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


def normalize_to_image(
    x: torch.Tensor,
    normalization: str,
    *,
    gain: float = 1.0,
    carrier: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Map a feature map ``(N, C, H, W)`` to an image in ``[0, 1]``."""
    if normalization == "none":
        return x.clamp(0.0, 1.0)
    if normalization == "sigmoid":
        return torch.sigmoid(gain * x)
    if normalization == "standardize":
        flat = x.reshape(x.shape[0], -1)
        mean = flat.mean(dim=1).reshape(-1, 1, 1, 1)
        std = flat.std(dim=1, unbiased=False).reshape(-1, 1, 1, 1)
        offset = 0.5 if carrier is None else carrier.unsqueeze(0)
        return (offset + gain * (x - mean) / (std + STD_EPS)).clamp(0.0, 1.0)
    raise ValueError(f"unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}")


def fused_scramble_ref(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[Optional[torch.Tensor]],
    *,
    strides: Sequence[int],
    paddings: Sequence[int],
    output_paddings: Sequence[int],
    activations: Sequence[str],
    normalization: str,
    gain: float = 1.0,
    carrier: Optional[torch.Tensor] = None,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Run the whole scrambler stack layer by layer (the reference path)."""
    n = len(weights)
    for name, seq in (("biases", biases), ("strides", strides), ("paddings", paddings),
                      ("output_paddings", output_paddings), ("activations", activations)):
        if len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries, expected one per layer ({n})")
    for w, b, s, p, op, act in zip(weights, biases, strides, paddings, output_paddings, activations):
        x = F.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op)
        x = apply_activation(x, act)
    y = normalize_to_image(x, normalization, gain=gain, carrier=carrier)
    if out_dtype == torch.uint8:
        return torch.round(y * 255.0).to(torch.uint8)
    return y.to(out_dtype) if out_dtype != y.dtype else y
