"""The affine scrambler: a stack without activations collapsed into one matrix.

A scrambler stack whose layers have no activation is an affine map of the embedding:
``f(x) = x @ M + c`` with ``M`` of shape ``(K, P)`` (``K`` embedding numbers, ``P`` output
pixels) and ``c`` the biases' image.  :func:`collapse_stack` computes ``M`` and ``c`` once per
key (in float64, by pushing the identity through the layers), together with what the
per-image standardization needs: since ``mean(f(x))`` and ``var(f(x))`` are a linear and a
quadratic form of ``x``, each image's mean and standard deviation come from a ``K x K``
matrix without a pass over its pixels.  :func:`collapsed_scramble` then produces the same
images as :func:`owsd.ops.reference.fused_scramble_ref` with ONE matrix product whose
epilogue applies the normalization, the carrier and the quantization
(``torch.ops.owsd.affine_scramble``; C++ and CUDA kernels, reference in torch):

    ``out[n, p] = post(scale[n] * (x[n] @ M[:, p] + c[p] - center[n]) + base[p])``

``post`` is ``clamp`` to [0, 1], ``sigmoid`` or ``identity``.  The collapsed matrix costs
``4 K P`` bytes in float32 (38.5 MB for the 224x224 ``default`` spec) and ``2 K P`` FLOPs an
image; :func:`collapse_worthwhile` says when that beats running the layers.

Example:
    >>> import torch
    >>> from owsd.ops.reference import fused_scramble_ref
    >>> w = [torch.randn(8, 4, 3, 3) / 5, torch.randn(4, 3, 4, 4) / 6]
    >>> kw = dict(strides=[1, 2], paddings=[0, 1], output_paddings=[0, 0])
    >>> st = collapse_stack(w, [None, None], input_shape=(8, 1, 1), **kw)
    >>> st.matrix.shape, st.out_shape
    (torch.Size([8, 108]), (3, 6, 6))
    >>> z = torch.randn(5, 8)
    >>> y = collapsed_scramble(z, st, normalization="standardize", gain=0.3, impl="ref")
    >>> want = fused_scramble_ref(z.reshape(5, 8, 1, 1), w, [None, None], activations=["none"] * 2,
    ...                           normalization="standardize", gain=0.3, **kw)
    >>> torch.allclose(y, want, atol=1e-5)
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from owsd.ops._api import _use_ext, conv_transpose2d
from owsd.ops.reference import STD_EPS

POSTS = {"clamp": 0, "sigmoid": 1, "identity": 2}
"""Elementwise maps after the affine part (codes of ``torch.ops.owsd.affine_scramble``)."""


def affine_scramble_ref(x: torch.Tensor, matrix: torch.Tensor, offset: Optional[torch.Tensor],
                        scale: torch.Tensor, center: torch.Tensor, base: Optional[torch.Tensor],
                        post: int, out_dtype: torch.dtype) -> torch.Tensor:
    """The affine scrambler in plain torch ops (ground truth of the compiled kernels)."""
    acc = x @ matrix
    if offset is not None:
        acc = acc + offset.to(x.dtype)
    pre = scale.to(x.dtype)[:, None] * (acc - center.to(x.dtype)[:, None])
    if base is not None:
        pre = pre + base.to(x.dtype)
    if post == POSTS["clamp"]:
        y = pre.clamp(0.0, 1.0)
    elif post == POSTS["sigmoid"]:
        y = torch.sigmoid(pre)
    elif post == POSTS["identity"]:
        y = pre
    else:
        raise ValueError(f"unknown post code {post}; expected one of {sorted(POSTS.values())}")
    if out_dtype == torch.uint8:
        if post == POSTS["identity"]:
            raise ValueError("a uint8 output needs a bounded post map (clamp or sigmoid)")
        return torch.round(y * 255.0).to(torch.uint8)
    return y.to(out_dtype)


def affine_scramble(x: torch.Tensor, matrix: torch.Tensor, offset: Optional[torch.Tensor] = None, *,
                    scale: torch.Tensor, center: torch.Tensor, base: Optional[torch.Tensor] = None,
                    post: str = "clamp", out_dtype: torch.dtype = torch.float32, impl: str = "auto",
                    out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``post(scale[n] * (x @ matrix + offset - center[n]) + base)`` as ``(N, P)``; differentiable.

    ``out``: a contiguous ``(N, P)`` tensor of ``out_dtype`` to write into (returned): a client
    scrambling batch after batch reuses its pages instead of faulting in fresh ones (on the
    2-core VM of issue 17 a fresh 154 MB output cost about as much as the product).  Not
    differentiable.

    Example:
        >>> import torch
        >>> x, m = torch.randn(3, 4), torch.randn(4, 10)
        >>> y = affine_scramble(x, m, scale=torch.ones(3), center=torch.zeros(3), post="identity", impl="ref")
        >>> torch.allclose(y, x @ m)
        True
    """
    if post not in POSTS:
        raise ValueError(f"unknown post {post!r}; expected one of {sorted(POSTS)}")
    if out_dtype not in (torch.float32, torch.float64, torch.uint8):
        raise ValueError(f"out_dtype must be torch.float32, torch.float64 or torch.uint8, got {out_dtype}")
    if out is not None:
        if out.dtype != out_dtype or tuple(out.shape) != (x.shape[0], matrix.shape[1]) or not out.is_contiguous():
            raise ValueError(f"out must be a contiguous {out_dtype} tensor of shape {(x.shape[0], matrix.shape[1])}, "
                             f"got {out.dtype} {tuple(out.shape)}")
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                           for t in (x, matrix, offset, scale, center, base)):
            raise ValueError("out= is not differentiable; call without out to get gradients")
    if _use_ext(impl, x.device):
        if out is None or x.device.type != "cpu":  # the out= kernel is CPU only: elsewhere, a copy
            y = torch.ops.owsd.affine_scramble(x, matrix, offset, scale, center, base, POSTS[post], out_dtype)
            return y if out is None else out.copy_(y)
        torch.ops.owsd.affine_scramble_out(x, matrix, offset, scale, center, base, POSTS[post], out)
        return out
    y = affine_scramble_ref(x, matrix, offset, scale, center, base, POSTS[post], out_dtype)
    return y if out is None else out.copy_(y)


@dataclass(frozen=True)
class CollapsedStack:
    """A stack without activations as one affine map, with the moments its standardization needs.

    ``matrix`` (K, P) and ``offset`` (P, or None without biases) are in the compute dtype;
    ``col_mean`` (K), ``gram`` (K, K), ``cross`` (K) and the offset's mean and variance are in
    float64: ``mean(f(x)) = x . col_mean + offset_mean`` and
    ``var(f(x)) = x' gram x + 2 x . cross + offset_var`` (population moments over the P pixels).
    """

    matrix: torch.Tensor
    offset: Optional[torch.Tensor]
    out_shape: tuple
    col_mean: torch.Tensor
    gram: torch.Tensor
    cross: torch.Tensor
    offset_mean: float
    offset_var: float

    @property
    def nbytes(self) -> int:
        """Memory held by the collapsed matrix and offset."""
        n = self.matrix.numel() * self.matrix.element_size()
        return n + (0 if self.offset is None else self.offset.numel() * self.offset.element_size())

    def to(self, device: torch.device | str) -> "CollapsedStack":
        """A copy on ``device`` (the float64 moments follow)."""
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return CollapsedStack(mv(self.matrix), mv(self.offset), self.out_shape, mv(self.col_mean), mv(self.gram),
                              mv(self.cross), self.offset_mean, self.offset_var)

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image mean and population standard deviation of ``f(x)`` (float64, differentiable)."""
        x64 = x.to(torch.float64)
        # elementwise products and reductions, not matrix products: a row's result must not
        # depend on how many rows are in the batch (BLAS kernels differ by batch size)
        mean = (x64 * self.col_mean).sum(1) + self.offset_mean
        quad = (x64[:, :, None] * self.gram[None]).sum(1)
        var = (quad * x64).sum(1) + 2.0 * (x64 * self.cross).sum(1) + self.offset_var
        return mean, var.clamp_min(0.0).sqrt()


def collapse_stack(weights: Sequence[torch.Tensor], biases: Sequence[Optional[torch.Tensor]], *,
                   strides: Sequence[int], paddings: Sequence[int], output_paddings: Sequence[int],
                   input_shape: Sequence[int], dtype: Optional[torch.dtype] = None) -> CollapsedStack:
    """Collapse transposed-convolution layers WITHOUT activations into one affine map (float64 math)."""
    k = int(math.prod(input_shape))
    dev = weights[0].device
    dtype = dtype or weights[0].dtype
    w64 = [w.detach().to(torch.float64) for w in weights]
    b64 = [None if b is None else b.detach().to(torch.float64) for b in biases]
    geo = list(zip(strides, paddings, output_paddings))

    def run(h: torch.Tensor, bs) -> torch.Tensor:
        for w, b, (s, p, op) in zip(w64, bs, geo):
            h = conv_transpose2d(h, w, b, stride=s, padding=p, output_padding=op)
        return h

    with torch.no_grad():
        eye = torch.eye(k, dtype=torch.float64, device=dev).reshape(k, *input_shape)
        lin = run(eye, [None] * len(w64))
        out_shape = tuple(int(v) for v in lin.shape[1:])
        m64 = lin.reshape(k, -1)
        has_bias = any(b is not None for b in b64)
        off64 = run(torch.zeros(1, *input_shape, dtype=torch.float64, device=dev), b64).reshape(-1) if has_bias \
            else torch.zeros(m64.shape[1], dtype=torch.float64, device=dev)
        p = m64.shape[1]
        col_mean = m64.mean(1)
        mc = m64 - col_mean[:, None]
        off_mean = off64.mean()
        oc = off64 - off_mean
        gram = (mc @ mc.T) / p
        cross = (mc @ oc) / p
        off_var = float((oc @ oc) / p)
    return CollapsedStack(matrix=m64.to(dtype).contiguous(), offset=off64.to(dtype) if has_bias else None,
                          out_shape=out_shape, col_mean=col_mean, gram=gram, cross=cross,
                          offset_mean=float(off_mean), offset_var=off_var)


def collapsed_scramble(x: torch.Tensor, stack: CollapsedStack, *, normalization: str, gain: float = 1.0,
                       carrier: Optional[torch.Tensor] = None, out_dtype: torch.dtype = torch.float32,
                       impl: str = "auto", out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Scramble ``(N, K)`` embeddings with a collapsed stack; same images as the layer-by-layer reference.

    ``out``: a contiguous tensor of ``out_dtype`` with ``N x P`` elements (any shape, e.g.
    ``(N, 3, H, W)``) to write the images into (see :func:`affine_scramble`).
    """
    n = x.shape[0]
    x = x.reshape(n, -1).to(stack.matrix.dtype)
    dt = x.dtype
    if normalization == "standardize":
        mean, sd = stack.moments(x)
        scale = (gain / (sd + STD_EPS)).to(dt)
        center = mean.to(dt)
        base = carrier.reshape(-1).to(dt) if carrier is not None else torch.full(
            (stack.matrix.shape[1],), 0.5, dtype=dt, device=x.device)
        post = "clamp"
    elif normalization in ("sigmoid", "none"):
        if carrier is not None:
            raise ValueError("a carrier is only used with normalization 'standardize'")
        scale = torch.full((n,), float(gain) if normalization == "sigmoid" else 1.0, dtype=dt, device=x.device)
        center = torch.zeros(n, dtype=dt, device=x.device)
        base, post = None, ("sigmoid" if normalization == "sigmoid" else "clamp")
    else:
        raise ValueError(f"unknown normalization {normalization!r}")
    flat = None
    if out is not None:
        if out.numel() != n * stack.matrix.shape[1] or not out.is_contiguous():
            raise ValueError(f"out must be contiguous with {n} x {stack.matrix.shape[1]} elements, "
                             f"got shape {tuple(out.shape)}")
        flat = out.view(n, -1)
    y = affine_scramble(x, stack.matrix, stack.offset, scale=scale, center=center, base=base, post=post,
                        out_dtype=out_dtype, impl=impl, out=flat)
    return y.reshape(n, *stack.out_shape)


def stack_flops(input_shape: Sequence[int], weights: Sequence[torch.Tensor], strides: Sequence[int]) -> int:
    """FLOPs an image of the layer stack (2 x multiply-adds, counting every tap)."""
    c, h, w = input_shape
    total = 0
    for wt, s in zip(weights, strides):
        total += 2 * h * w * wt.shape[0] * wt.shape[1] * wt.shape[2] * wt.shape[3]
        h, w = (h - 1) * s + wt.shape[2], (w - 1) * s + wt.shape[3]
    return total


def collapse_worthwhile(*, input_shape: Sequence[int], weights: Sequence[torch.Tensor], strides: Sequence[int],
                        out_numel: int, max_flop_ratio: float = 1.5) -> bool:
    """Whether the collapsed matrix should replace the layers of a stack without activations.

    The matrix product costs ``2 K P`` FLOPs an image, at a far higher rate than the layers'
    small convolutions (docs/kernel.md: 4-8x cuDNN on an H200, about 2x the fused CPU kernel):
    it pays when its FLOPs are at most ``max_flop_ratio`` times the layers' (``default``:
    0.88; ``linear``, one 112x112 layer, 4.0).  Its matrix holds ``4 K P`` bytes (38.5 MB
    for ``default``) and streams through the caches once per batch, so single images cost
    about that much memory traffic each.
    """
    k = int(math.prod(input_shape))
    return 2 * k * out_numel <= max_flop_ratio * stack_flops(input_shape, weights, strides)
