"""Python-side registrations for the C++ ``owsd`` operators: fake kernels and autograd.

The schemas and the CPU/CUDA kernels are registered in C++ (``csrc/bindings.cpp``,
``TORCH_LIBRARY(owsd, m)``).  Right after the library is loaded,
:func:`register_python_side` adds

* ``register_fake`` (shape/dtype propagation) so that ``torch.compile`` and
  ``torch.library.opcheck`` can trace the ops with fake tensors;
* ``register_autograd`` formulas:

  - ``owsd::conv_transpose2d``: gradients w.r.t. x, weight and bias from
    ``aten.convolution_backward`` with ``transposed=True`` (the input gradient of a
    transposed convolution is a plain convolution of the output gradient);
  - ``owsd::fused_scramble``: the backward **recomputes the forward layer by
    layer with the reference path** (``F.conv_transpose2d``), keeping the
    pre-activations, then back-propagates by hand through the normalization,
    the activations and each layer (``aten.convolution_backward``).  It gives
    gradients w.r.t. x, every weight, every bias and the carrier.  The fused
    kernel is forward-only; a ``uint8`` output is not differentiable.

Example:
    >>> import torch, owsd.ops as ops
    >>> ops.status()["cpu"]["impl"] in ("ext", "ref")
    True
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F

from owsd.ops.reference import LEAKY_SLOPE, STD_EPS

ACT_CODES = {"none": 0, "relu": 1, "leaky_relu": 2, "tanh": 3}
NORM_CODES = {"none": 0, "sigmoid": 1, "standardize": 2}
ACT_NAMES = {v: k for k, v in ACT_CODES.items()}

_REGISTERED = False


# ----------------------------------------------------------------------------- shapes
def _out_size(n, k: int, s: int, p: int, op: int, d: int):
    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1


def _fake_conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation):
    torch._check(x.dim() == 4, lambda: "owsd::conv_transpose2d: x must be 4-D")
    torch._check(weight.dim() == 4, lambda: "owsd::conv_transpose2d: weight must be 4-D")
    h = _out_size(x.shape[2], weight.shape[2], stride[0], padding[0], output_padding[0], dilation[0])
    w = _out_size(x.shape[3], weight.shape[3], stride[1], padding[1], output_padding[1], dilation[1])
    return x.new_empty((x.shape[0], weight.shape[1] * groups, h, w))


def _fake_fused_scramble(x, weights, biases, strides, paddings, output_paddings, activations,
                         normalization, gain, carrier, out_dtype):
    torch._check(x.dim() == 4, lambda: "owsd::fused_scramble: x must be 4-D")
    h, w = x.shape[2], x.shape[3]
    c = x.shape[1]
    for wt, s, p, op in zip(weights, strides, paddings, output_paddings):
        h = _out_size(h, wt.shape[2], s, p, op, 1)
        w = _out_size(w, wt.shape[3], s, p, op, 1)
        c = wt.shape[1]
    return x.new_empty((x.shape[0], c, h, w), dtype=out_dtype)


# ----------------------------------------------------------------------------- autograd: layer
def _ct_setup_context(ctx, inputs, output):
    x, weight, bias, stride, padding, output_padding, groups, dilation = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None
    ctx.params = (list(stride), list(padding), list(output_padding), int(groups), list(dilation))


def _ct_backward(ctx, grad):
    x, weight = ctx.saved_tensors
    stride, padding, output_padding, groups, dilation = ctx.params
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
    bias_sizes = [weight.shape[1] * groups] if ctx.has_bias else None
    gx, gw, gb = torch.ops.aten.convolution_backward(
        grad, x, weight, bias_sizes, stride, padding, dilation, True, output_padding, groups, mask)
    return gx, gw, (gb if ctx.has_bias else None), None, None, None, None, None


# ----------------------------------------------------------------------------- autograd: fused
def _fs_setup_context(ctx, inputs, output):
    (x, weights, biases, strides, paddings, output_paddings, activations, normalization,
     gain, carrier, out_dtype) = inputs
    bias_mask = [b is not None for b in biases]
    tensors = [x, *weights, *[b for b in biases if b is not None]]
    ctx.has_carrier = carrier is not None
    if carrier is not None:
        tensors.append(carrier)
    ctx.save_for_backward(*tensors)
    ctx.nlayers = len(weights)
    ctx.bias_mask = bias_mask
    ctx.cfg = (list(strides), list(paddings), list(output_paddings), list(activations),
               int(normalization), float(gain))


def _act_backward(g: torch.Tensor, z: torch.Tensor, a: torch.Tensor, code: int) -> torch.Tensor:
    if code == ACT_CODES["relu"]:
        return g * (z > 0).to(g.dtype)
    if code == ACT_CODES["leaky_relu"]:
        return g * torch.where(z > 0, torch.ones_like(z), torch.full_like(z, LEAKY_SLOPE))
    if code == ACT_CODES["tanh"]:
        return g * (1 - a * a)
    return g


def _apply_act(z: torch.Tensor, code: int) -> torch.Tensor:
    if code == ACT_CODES["relu"]:
        return torch.relu(z)
    if code == ACT_CODES["leaky_relu"]:
        return F.leaky_relu(z, LEAKY_SLOPE)
    if code == ACT_CODES["tanh"]:
        return torch.tanh(z)
    return z


def fused_scramble_backward_ref(
    grad: torch.Tensor,
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[Optional[torch.Tensor]],
    strides: Sequence[int],
    paddings: Sequence[int],
    output_paddings: Sequence[int],
    activations: Sequence[int],
    normalization: int,
    gain: float,
    carrier: Optional[torch.Tensor],
):
    """Gradients of ``fused_scramble_ref`` w.r.t. (x, weights, biases, carrier), by recomputation.

    Explicit formulas on aten ops only (no nested autograd), so AOTAutograd can trace it.
    """
    grad = grad.to(x.dtype)
    inputs: List[torch.Tensor] = []
    pre: List[torch.Tensor] = []
    post: List[torch.Tensor] = []
    h = x
    for w, b, s, p, op, act in zip(weights, biases, strides, paddings, output_paddings, activations):
        inputs.append(h)
        z = F.conv_transpose2d(h, w, b, stride=s, padding=p, output_padding=op)
        a = _apply_act(z, act)
        pre.append(z)
        post.append(a)
        h = a
    f = h
    gcarrier = None
    if normalization == NORM_CODES["none"]:
        gf = grad * ((f >= 0) & (f <= 1)).to(grad.dtype)
    elif normalization == NORM_CODES["sigmoid"]:
        y = torch.sigmoid(gain * f)
        gf = grad * y * (1 - y) * gain
    else:
        n = f[0].numel()
        flat = f.reshape(f.shape[0], -1)
        mean = flat.mean(dim=1).reshape(-1, 1, 1, 1)
        u = f - mean
        sd = u.reshape(f.shape[0], -1).pow(2).mean(dim=1).sqrt().reshape(-1, 1, 1, 1)
        den = sd + STD_EPS
        offset = 0.5 if carrier is None else carrier.unsqueeze(0)
        pre_clamp = offset + gain * u / den
        gy = grad * ((pre_clamp >= 0) & (pre_clamp <= 1)).to(grad.dtype)
        if carrier is not None:
            gcarrier = gy.sum(dim=0).to(carrier.dtype)
        G = gy * gain  # dL/d(u/den)
        gu_dot = (G * u).reshape(f.shape[0], -1).sum(dim=1).reshape(-1, 1, 1, 1)
        safe_sd = torch.where(sd > 0, sd, torch.ones_like(sd))
        coef = torch.where(sd > 0, gu_dot / (den * den * n * safe_sd), torch.zeros_like(sd))
        gu = G / den - coef * u
        gf = gu - gu.reshape(f.shape[0], -1).mean(dim=1).reshape(-1, 1, 1, 1)
    gws: List[torch.Tensor] = [None] * len(weights)  # type: ignore[list-item]
    gbs: List[Optional[torch.Tensor]] = [None] * len(weights)
    g = gf
    for i in reversed(range(len(weights))):
        gz = _act_backward(g, pre[i], post[i], activations[i])
        has_b = biases[i] is not None
        gi, gw, gb = torch.ops.aten.convolution_backward(
            gz, inputs[i], weights[i], [weights[i].shape[1]] if has_b else None,
            [strides[i]] * 2, [paddings[i]] * 2, [1, 1], True, [output_paddings[i]] * 2, 1,
            [True, True, has_b])
        gws[i] = gw
        gbs[i] = gb if has_b else None
        g = gi
    return g, gws, gbs, gcarrier


def _fs_backward(ctx, grad):
    saved = list(ctx.saved_tensors)
    x = saved[0]
    n = ctx.nlayers
    weights = saved[1:1 + n]
    rest = saved[1 + n:]
    biases: List[Optional[torch.Tensor]] = []
    k = 0
    for has in ctx.bias_mask:
        if has:
            biases.append(rest[k])
            k += 1
        else:
            biases.append(None)
    carrier = rest[k] if ctx.has_carrier else None
    strides, paddings, output_paddings, activations, normalization, gain = ctx.cfg
    gx, gws, gbs, gc = fused_scramble_backward_ref(
        grad, x, weights, biases, strides, paddings, output_paddings, activations, normalization, gain, carrier)
    # torch.library treats a ``Tensor?[]`` argument that holds a None as one
    # non-differentiable leaf; only an all-tensor bias list gets gradients (the
    # public wrapper owsd.ops.fused_scramble substitutes zeros for missing
    # biases when gradients are needed).
    gbs_out = gbs if all(ctx.bias_mask) else None
    return gx, gws, gbs_out, None, None, None, None, None, None, gc, None


# ----------------------------------------------------------------------------- affine scrambler
def _fake_affine_scramble(x, matrix, offset, scale, center, base, post, out_dtype):
    torch._check(x.dim() == 2 and matrix.dim() == 2, lambda: "owsd::affine_scramble: x and matrix must be 2-D")
    return x.new_empty((x.shape[0], matrix.shape[1]), dtype=out_dtype)


def _fake_affine_scramble_out(x, matrix, offset, scale, center, base, post, out):
    torch._check(out.shape == (x.shape[0], matrix.shape[1]), lambda: "owsd::affine_scramble_out: bad out shape")


def _af_setup_context(ctx, inputs, output):
    x, matrix, offset, scale, center, base, post, out_dtype = inputs
    ctx.has_offset, ctx.has_base = offset is not None, base is not None
    ctx.post = int(post)
    ctx.save_for_backward(x, matrix, offset if offset is not None else x.new_empty(0), scale, center,
                          base if base is not None else x.new_empty(0))


def _af_backward(ctx, grad):
    x, matrix, offset, scale, center, base = ctx.saved_tensors
    dt = x.dtype
    grad = grad.to(dt)
    acc = x @ matrix
    if ctx.has_offset:
        acc = acc + offset.to(dt)
    centered = acc - center.to(dt)[:, None]
    pre = scale.to(dt)[:, None] * centered
    if ctx.has_base:
        pre = pre + base.to(dt)
    if ctx.post == 0:  # clamp: the gradient passes where min <= pre <= max, as torch.clamp's
        gp = grad * ((pre >= 0) & (pre <= 1)).to(dt)
    elif ctx.post == 1:
        y = torch.sigmoid(pre)
        gp = grad * y * (1 - y)
    else:
        gp = grad
    need = ctx.needs_input_grad
    gacc = gp * scale.to(dt)[:, None]
    gx = gacc @ matrix.T if need[0] else None
    gm = x.T @ gacc if need[1] else None
    goff = gacc.sum(0).to(offset.dtype) if ctx.has_offset and need[2] else None
    gscale = (gp * centered).sum(1).to(scale.dtype) if need[3] else None
    gcenter = -(gacc.sum(1)).to(center.dtype) if need[4] else None
    gbase = gp.sum(0).to(base.dtype) if ctx.has_base and need[5] else None
    return gx, gm, goff, gscale, gcenter, gbase, None, None


def register_python_side() -> None:
    """Register fake kernels and autograd formulas for the loaded ``owsd`` ops (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    torch.library.register_fake("owsd::conv_transpose2d")(_fake_conv_transpose2d)
    torch.library.register_fake("owsd::fused_scramble")(_fake_fused_scramble)
    torch.library.register_fake("owsd::affine_scramble")(_fake_affine_scramble)
    torch.library.register_fake("owsd::affine_scramble_out")(_fake_affine_scramble_out)
    torch.library.register_autograd("owsd::conv_transpose2d", _ct_backward, setup_context=_ct_setup_context)
    torch.library.register_autograd("owsd::fused_scramble", _fs_backward, setup_context=_fs_setup_context)
    torch.library.register_autograd("owsd::affine_scramble", _af_backward, setup_context=_af_setup_context)
    _REGISTERED = True
