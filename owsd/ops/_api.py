"""Public entry points of :mod:`owsd.ops` and the choice between implementations.

Implementations:

* ``"ref"``: :mod:`owsd.ops.reference` (plain ``F.conv_transpose2d`` calls).
* ``"ext"``: the compiled ``torch.ops.owsd`` operators (built on first use, see
  :mod:`owsd.ops._build`); raises :class:`RuntimeError` when unavailable.
* ``"auto"``: the process default (``set_default_impl`` or ``$OWSD_OPS_IMPL``,
  itself ``"auto"`` unless set), which means the extension when it built for the
  tensor's device, else the reference (the build failure is warned about once);
  except ``fused_scramble`` on CUDA, where ``auto`` keeps cuDNN's layers (measured 10x
  faster than the fused CUDA kernel, docs/kernel.md).
"""

from __future__ import annotations

import logging
import os
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from owsd.ops import _build
from owsd.ops._register import ACT_CODES, NORM_CODES
from owsd.ops.reference import ACTIVATIONS, NORMALIZATIONS, fused_scramble_ref

log = logging.getLogger(__name__)

IMPLS = ("auto", "ref", "ext")
_DEFAULT_IMPL: Optional[str] = None

IntOrPair = Union[int, Sequence[int]]


def _check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r}; expected one of {IMPLS}")
    return impl


def set_default_impl(impl: str) -> None:
    """Set the process-wide implementation used when a call passes ``impl="auto"``.

    Example:
        >>> import owsd.ops as ops
        >>> ops.set_default_impl("ref"); ops.get_default_impl()
        'ref'
        >>> ops.set_default_impl("auto")
    """
    global _DEFAULT_IMPL
    _DEFAULT_IMPL = _check_impl(impl)


def get_default_impl() -> str:
    """The default implementation: ``set_default_impl`` > ``$OWSD_OPS_IMPL`` > ``"auto"``."""
    if _DEFAULT_IMPL is not None:
        return _DEFAULT_IMPL
    env = os.environ.get("OWSD_OPS_IMPL", "auto").strip().lower() or "auto"
    if env not in IMPLS:
        raise ValueError(f"OWSD_OPS_IMPL={env!r} is not one of {IMPLS}")
    return env


def _device_ok(state: _build.ExtensionState, device_type: str) -> Tuple[bool, str]:
    if device_type == "cpu":
        return state.cpu_ok, state.cpu_reason
    if device_type == "cuda":
        return state.cuda_ok, state.cuda_reason
    if device_type == "meta":
        return state.cpu_ok, state.cpu_reason
    return False, f"no compiled kernels for device type {device_type!r}"


def _use_ext(impl: str, device: torch.device) -> bool:
    """Resolve ``impl`` for tensors on ``device``: True = compiled op, False = reference."""
    _check_impl(impl)
    if torch.compiler.is_compiling():
        # Under torch.compile: no build, no env lookups; the library must already be loaded.
        if impl == "auto":
            impl = _DEFAULT_IMPL or "auto"
        if impl == "ref":
            return False
        ok = _build.STATE.cpu_ok if device.type != "cuda" else _build.STATE.cuda_ok
        if impl == "ext" and not ok:
            raise RuntimeError("owsd.ops: impl='ext' under torch.compile needs the extension built "
                               "beforehand (call owsd.ops.status() first)")
        return ok
    if impl == "auto":
        impl = get_default_impl()
    if impl == "ref":
        return False
    state = _build.ensure_built()
    ok, reason = _device_ok(state, device.type)
    if impl == "ext" and not ok:
        raise RuntimeError(f"owsd.ops: impl='ext' requested but the compiled extension is unavailable "
                           f"on {device.type}: {reason}")
    return ok


def _pair(v: IntOrPair, name: str) -> list:
    if isinstance(v, int):
        return [v, v]
    v = list(v)
    if len(v) == 1:
        return [int(v[0])] * 2
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}")
    return [int(v[0]), int(v[1])]


def conv_transpose2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    groups: int = 1,
    dilation: IntOrPair = 1,
    impl: str = "auto",
) -> torch.Tensor:
    """Transposed 2-D convolution with the semantics of :func:`torch.nn.functional.conv_transpose2d`.

    Differentiable w.r.t. ``x``, ``weight`` and ``bias`` on every implementation.

    Example:
        >>> import torch, owsd.ops as ops
        >>> x, w = torch.randn(2, 4, 5, 5), torch.randn(4, 3, 4, 4)
        >>> y = ops.conv_transpose2d(x, w, stride=2, padding=1)
        >>> torch.allclose(y, torch.nn.functional.conv_transpose2d(x, w, stride=2, padding=1), atol=1e-5)
        True
    """
    if _use_ext(impl, x.device):
        return torch.ops.owsd.conv_transpose2d(
            x, weight, bias, _pair(stride, "stride"), _pair(padding, "padding"),
            _pair(output_padding, "output_padding"), int(groups), _pair(dilation, "dilation"))
    return F.conv_transpose2d(x, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
                              groups=groups, dilation=dilation)


def _check_fused_args(weights, biases, strides, paddings, output_paddings, activations, normalization) -> None:
    n = len(weights)
    for name, seq in (("biases", biases), ("strides", strides), ("paddings", paddings),
                      ("output_paddings", output_paddings), ("activations", activations)):
        if len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries, expected one per layer ({n})")
    for a in activations:
        if a not in ACT_CODES:
            raise ValueError(f"unknown activation {a!r}; expected one of {ACTIVATIONS}")
    if normalization not in NORM_CODES:
        raise ValueError(f"unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}")


def fused_scramble(
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
    impl: str = "auto",
) -> torch.Tensor:
    """Run a whole scrambler stack in one call; semantics of :func:`~owsd.ops.reference.fused_scramble_ref`.

    The compiled kernel processes one image at a time through every layer, the
    activations and the final normalization (optionally quantizing to uint8),
    keeping the intermediates in cache (CPU) or shared memory (CUDA).

    Gradients flow to ``x``, ``weights``, ``biases`` and ``carrier`` (float outputs).
    With the compiled kernel the backward **recomputes the forward with the
    reference path** (layer by layer) and back-propagates through it by hand;
    the fused kernel itself is forward-only.

    Example:
        >>> import torch, owsd.ops as ops
        >>> z = torch.randn(2, 4, 2, 2)
        >>> w = [torch.randn(4, 3, 4, 4) / 8]
        >>> y = ops.fused_scramble(z, w, [None], strides=[2], paddings=[1], output_paddings=[0],
        ...                        activations=["none"], normalization="sigmoid")
        >>> tuple(y.shape)
        (2, 3, 4, 4)
    """
    _check_fused_args(weights, biases, strides, paddings, output_paddings, activations, normalization)
    if out_dtype not in (torch.float32, torch.float64, torch.uint8):
        raise ValueError(f"out_dtype must be torch.float32, torch.float64 or torch.uint8, got {out_dtype}")
    use_ext = _use_ext(impl, x.device)
    if use_ext and x.device.type == "cuda" and impl == "auto" and not torch.compiler.is_compiling() \
            and get_default_impl() == "auto":
        # Measured on an H200 (docs/kernel.md): the one-block-per-image CUDA kernel runs at
        # ~9.5k images/s against ~95k for cuDNN's layers, so `auto` keeps cuDNN on CUDA;
        # impl="ext" still runs the kernel.  Stacks without activations go through the
        # collapsed matrix instead (owsd.ops.affine, 5.7-7.8x cuDNN).
        use_ext = False
    if use_ext:
        biases = list(biases)
        if any(b is None for b in biases) and any(b is not None and b.requires_grad for b in biases):
            # a Tensor?[] holding None is not differentiable through torch.library: use zero biases
            biases = [torch.zeros(w.shape[1], dtype=w.dtype, device=w.device) if b is None else b
                      for b, w in zip(biases, weights)]
        return torch.ops.owsd.fused_scramble(
            x, list(weights), biases, [int(s) for s in strides], [int(p) for p in paddings],
            [int(p) for p in output_paddings], [ACT_CODES[a] for a in activations], NORM_CODES[normalization],
            float(gain), carrier, out_dtype)
    return fused_scramble_ref(x, weights, biases, strides=strides, paddings=paddings,
                              output_paddings=output_paddings, activations=activations,
                              normalization=normalization, gain=gain, carrier=carrier, out_dtype=out_dtype)


def status() -> Dict[str, object]:
    """Which implementation each device uses and why; builds the extension if not yet tried.

    Returns ``{"cpu": {"impl", "reason"}, "cuda": {"impl", "reason"}, "default_impl",
    "extension": {...build details...}}``; ``reason`` is empty when the extension is active.

    Example:
        >>> import owsd.ops as ops
        >>> sorted(ops.status())
        ['cpu', 'cuda', 'default_impl', 'extension']
    """
    default = get_default_impl()
    state = _build.ensure_built()
    out: Dict[str, object] = {"default_impl": default}
    for dev in ("cpu", "cuda"):
        ok, reason = _device_ok(state, dev)
        if default == "ref":
            out[dev] = {"impl": "ref", "reason": "reference forced by the default impl 'ref'"
                        + ("" if ok else f" (extension unavailable: {reason})")}
        else:
            out[dev] = {"impl": "ext" if ok else "ref", "reason": "" if ok else reason}
    out["extension"] = {
        "cpu_built": state.cpu_ok,
        "cuda_built": state.cuda_ok,
        "name": state.name,
        "build_dir": state.build_dir,
        "cache_root": str(_build.cache_root()),
        "info": state.info,
        "cxx_flags": list(state.cxx_flags),
        "cuda_flags": list(state.cuda_flags),
    }
    return out
