"""Numerics of owsd.ops on every device (``--device cpu|cuda|all``): compiled kernels vs the
reference, opcheck, gradcheck, torch.compile.  On CUDA the references run in true float32
(TF32 off, see conftest) and the tolerance table is the same as on the CPU."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import owsd.ops as ops
from ops_cases import DEFAULT_224, SMALL, STRIDE3, assert_uint8_close
from ops_cases import rand as _rand
from ops_cases import stack as _stack
from owsd.ops._register import ACT_CODES, NORM_CODES
from owsd.ops.reference import ACTIVATIONS, NORMALIZATIONS, fused_scramble_ref


# ----------------------------------------------------------------------------- layer op
@st.composite
def layer_cases(draw):
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    oph = draw(st.integers(0, max(sh, dh) - 1))
    opw = draw(st.integers(0, max(sw, dw) - 1))
    n = draw(st.integers(0, 3))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 40))
    hout = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wout = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    assume(hout >= 1 and wout >= 1)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return dict(n=n, cin=cin, cout=cout, k=(kh, kw), stride=(sh, sw), padding=(ph, pw),
                output_padding=(oph, opw), dilation=(dh, dw), groups=groups, h=h, w=w, dtype=dtype,
                bias=bias, seed=seed)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=layer_cases())
def test_conv_transpose2d_matches_torch(ext, device, case, tol):
    g = torch.Generator().manual_seed(case["seed"])
    dt = case["dtype"]
    kh, kw = case["k"]
    fan_in = case["cin"] // case["groups"] * kh * kw
    x = _rand((case["n"], case["cin"], case["h"], case["w"]), dt, device, gen=g)
    w = _rand((case["cin"], case["cout"] // case["groups"], kh, kw), dt, device, scale=fan_in ** -0.5, gen=g)
    b = _rand((case["cout"],), dt, device, gen=g) if case["bias"] else None
    args = dict(stride=case["stride"], padding=case["padding"], output_padding=case["output_padding"],
                groups=case["groups"], dilation=case["dilation"])
    want = F.conv_transpose2d(x, w, b, **args)
    got = ops.conv_transpose2d(x, w, b, **args, impl="ext")
    assert got.shape == want.shape and got.dtype == want.dtype
    torch.testing.assert_close(got, want, **tol(dt))


@pytest.mark.parametrize("width", [15, 16, 17, 31, 33, 47, 64, 70])
@pytest.mark.parametrize("stride,padding,output_padding", [(1, 0, 0), (1, 2, 0), (2, 1, 0), (2, 0, 1), (2, 3, 1)])
def test_conv_transpose2d_vector_tails(ext, device, tol, width, stride, padding, output_padding):
    """Widths around the SIMD width exercise the chunk tails of the vector kernel."""
    g = torch.Generator().manual_seed(width)
    x = _rand((2, 3, 4, width), torch.float32, device, gen=g)
    w = _rand((3, 5, 4, 4), torch.float32, device, scale=48 ** -0.5, gen=g)
    b = _rand((5,), torch.float32, device, gen=g)
    args = dict(stride=stride, padding=padding, output_padding=output_padding)
    torch.testing.assert_close(ops.conv_transpose2d(x, w, b, **args, impl="ext"),
                               F.conv_transpose2d(x, w, b, **args), **tol(torch.float32))


@pytest.mark.parametrize("k,stride,output_padding", [(7, 1, 0), (3, 2, 1), (4, 3, 2), (1, 1, 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_transpose2d_dense_1x1_path(ext, device, tol, k, stride, output_padding, dtype):
    """A 1x1 input without padding runs as a GEMV (the embedding layer of the scrambler)."""
    g = torch.Generator().manual_seed(k)
    x = _rand((3, 16, 1, 1), dtype, device, gen=g)
    w = _rand((16, 5, k, k), dtype, device, scale=(16 * k * k) ** -0.5, gen=g)
    b = _rand((5,), dtype, device, gen=g)
    args = dict(stride=stride, output_padding=output_padding)
    torch.testing.assert_close(ops.conv_transpose2d(x, w, b, **args, impl="ext"),
                               F.conv_transpose2d(x, w, b, **args), **tol(dtype))


@pytest.mark.parametrize("h,w,k,stride,output_padding", [(2, 3, 3, 3, 0), (3, 2, 2, 3, 1), (2, 2, 8, 8, 0),
                                                          (1, 4, 5, 5, 2), (4, 1, (2, 3), (3, 3), 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_transpose2d_block_path(ext, device, tol, h, w, k, stride, output_padding, dtype):
    """Kernel <= stride (no overlapping taps) runs as one GEMV per input pixel; gaps hold the bias."""
    g = torch.Generator().manual_seed(h * 10 + w)
    kh, kw = (k, k) if isinstance(k, int) else k
    x = _rand((2, 6, h, w), dtype, device, gen=g)
    wt = _rand((6, 4, kh, kw), dtype, device, scale=6 ** -0.5, gen=g)
    b = _rand((4,), dtype, device, gen=g)
    args = dict(stride=stride, output_padding=output_padding)
    torch.testing.assert_close(ops.conv_transpose2d(x, wt, b, **args, impl="ext"),
                               F.conv_transpose2d(x, wt, b, **args), **tol(dtype))


def test_fused_linear_preset_block_path(ext, device, tol):
    """The `linear` preset's single kernel = stride = 112 layer through the fused operator."""
    from owsd.presets import get_preset
    from owsd.keys import generate_key
    from owsd.scrambler import Scrambler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = generate_key(get_preset("linear"), seed=3)
    e = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    got = Scrambler(key, impl="ext", collapse="never", device=device)(e.to(device))
    want = Scrambler(key, impl="ref", device=device)(e.to(device))
    torch.testing.assert_close(got, want, **tol(torch.float32))


def test_conv_transpose2d_noncontiguous_inputs(ext, device, tol):
    x = torch.randn(2, 8, 5, 5, device=device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(4, 8, 3, 3, device=device).transpose(0, 1) / 6  # (8, 4, 3, 3), non-contiguous
    torch.testing.assert_close(ops.conv_transpose2d(x, w, stride=2, impl="ext"),
                               F.conv_transpose2d(x, w, stride=2), **tol(torch.float32))


def test_conv_transpose2d_errors(ext, device):
    x = torch.randn(1, 4, 3, 3, device=device)
    with pytest.raises(RuntimeError, match="weight.size\\(0\\)"):
        ops.conv_transpose2d(x, torch.randn(3, 2, 3, 3, device=device), impl="ext")
    with pytest.raises(RuntimeError, match="output padding"):
        ops.conv_transpose2d(x, torch.randn(4, 2, 3, 3, device=device), stride=1, output_padding=1, impl="ext")
    with pytest.raises(RuntimeError, match="float32 or float64"):
        ops.conv_transpose2d(x.half(), torch.randn(4, 2, 3, 3, device=device).half(), impl="ext")


# ----------------------------------------------------------------------------- fused op
def _fused_both(x, ws, bs, kw, **extra):
    want = fused_scramble_ref(x, ws, bs, **kw, **extra)
    got = ops.fused_scramble(x, ws, bs, **kw, **extra, impl="ext")
    return got, want


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("activation", ACTIVATIONS + ("mixed",))
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.uint8])
def test_fused_matches_reference(ext, device, tol, normalization, activation, out_dtype):
    ws, bs, kw = _stack(SMALL, bias_every=2, device=device)
    acts = ["leaky_relu", "tanh", "relu", "none"] if activation == "mixed" else [activation] * len(SMALL)
    x = torch.randn(5, 4, 1, 1, generator=torch.Generator().manual_seed(1)).to(device)
    for carrier in ([None, torch.rand(3, 13, 13).to(device)] if normalization == "standardize" else [None]):
        got, want = _fused_both(x, ws, bs, dict(kw, activations=acts), normalization=normalization,
                                gain=1.7, carrier=carrier, out_dtype=out_dtype)
        if out_dtype == torch.uint8:
            assert_uint8_close(got, want)
        else:
            torch.testing.assert_close(got, want, **tol(torch.float32))


@pytest.mark.parametrize("cfg", [SMALL, STRIDE3], ids=["small", "stride3"])
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_fused_float64(ext, device, tol, cfg, normalization):
    ws, bs, kw = _stack(cfg, dtype=torch.float64, device=device)
    x = torch.randn(3, cfg[0][0], 2, 3, dtype=torch.float64).to(device)
    carrier = torch.rand(cfg[-1][1], *fused_scramble_ref(x, ws, bs, **kw, activations=["tanh"] * len(cfg),
                                                          normalization="none").shape[2:], dtype=torch.float64).to(device)
    for c in ([None, carrier] if normalization == "standardize" else [None]):
        for od in (torch.float64, torch.float32):
            got, want = _fused_both(x, ws, bs, dict(kw, activations=["tanh"] * len(cfg)),
                                    normalization=normalization, carrier=c, out_dtype=od)
            torch.testing.assert_close(got, want, **tol(od))


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.uint8])
def test_fused_default_224_stack(ext, device, tol, out_dtype):
    ws, bs, kw = _stack(DEFAULT_224, device=device)
    x = torch.randn(3, 64, 1, 1).to(device)
    got, want = _fused_both(x, ws, bs, dict(kw, activations=["leaky_relu"] * 6), normalization="standardize",
                            out_dtype=out_dtype)
    assert got.shape == (3, 3, 224, 224)
    if out_dtype == torch.uint8:
        assert_uint8_close(got, want)
    else:
        torch.testing.assert_close(got, want, **tol(torch.float32))


def test_fused_argument_errors(ext, device):
    ws, bs, kw = _stack(SMALL, device=device)
    x = torch.randn(1, 4, 1, 1, device=device)
    acts = ["relu"] * len(SMALL)
    with pytest.raises(ValueError, match="unknown activation"):
        ops.fused_scramble(x, ws, bs, **kw, activations=["gelu"] * 4, normalization="none", impl="ext")
    with pytest.raises(ValueError, match="unknown normalization"):
        ops.fused_scramble(x, ws, bs, **kw, activations=acts, normalization="minmax", impl="ext")
    with pytest.raises(ValueError, match="expected one per layer"):
        ops.fused_scramble(x, ws, bs[:2], **kw, activations=acts, normalization="none", impl="ext")
    with pytest.raises(RuntimeError, match="carrier must have shape"):
        ops.fused_scramble(x, ws, bs, **kw, activations=acts, normalization="standardize",
                           carrier=torch.rand(3, 5, 5, device=device), impl="ext")
    with pytest.raises(RuntimeError, match="size\\(0\\)"):
        ops.fused_scramble(torch.randn(1, 5, 1, 1, device=device), ws, bs, **kw, activations=acts, normalization="none",
                           impl="ext")


# ----------------------------------------------------------------------------- torch.library
def _leaf(t, requires_grad):
    return t.detach().requires_grad_(requires_grad)


def _layer_args(requires_grad=True, dtype=torch.float64, device="cpu"):
    x = _leaf(torch.randn(2, 4, 5, 6, dtype=dtype, device=device), requires_grad)
    w = _leaf(torch.randn(4, 3, 3, 4, dtype=dtype, device=device) / 6, requires_grad)
    b = _leaf(torch.randn(6, dtype=dtype, device=device), requires_grad)
    return (x, w, b, [2, 1], [1, 0], [1, 0], 2, [1, 2])


def _fused_args(normalization="standardize", out_dtype=torch.float32, requires_grad=True, dtype=torch.float32,
                carrier=True, device="cpu"):
    ws, bs, kw = _stack(SMALL[:3], dtype=dtype, bias_every=2, device=device)
    for t in ws + [b for b in bs if b is not None]:
        t.requires_grad_(requires_grad)
    x = _leaf(torch.randn(2, 4, 1, 1, dtype=dtype, device=device), requires_grad)
    c = _leaf(torch.rand(4, 13, 13, dtype=dtype, device=device), requires_grad) if carrier else None
    acts = [ACT_CODES[a] for a in ("leaky_relu", "tanh", "none")]
    return (x, ws, bs, kw["strides"], kw["paddings"], kw["output_paddings"], acts, NORM_CODES[normalization],
            1.3, c, out_dtype)


def test_opcheck_conv_transpose2d(ext, device):
    torch.library.opcheck(torch.ops.owsd.conv_transpose2d.default, _layer_args(dtype=torch.float32, device=device))
    torch.library.opcheck(torch.ops.owsd.conv_transpose2d.default,
                          (torch.randn(1, 2, 3, 3, device=device), torch.randn(2, 2, 3, 3, device=device), None,
                           [1, 1], [0, 0], [0, 0], 1, [1, 1]))


@pytest.mark.parametrize("normalization,out_dtype,carrier", [("standardize", torch.float32, True),
                                                             ("sigmoid", torch.float32, False),
                                                             ("none", torch.uint8, False)])
def test_opcheck_fused_scramble(ext, device, normalization, out_dtype, carrier):
    args = _fused_args(normalization, out_dtype, requires_grad=out_dtype.is_floating_point, carrier=carrier,
                       device=device)
    torch.library.opcheck(torch.ops.owsd.fused_scramble.default, args)


def test_gradcheck_conv_transpose2d(ext, device):
    x, w, b, *rest = _layer_args(device=device)
    fn = lambda x, w, b: ops.conv_transpose2d(x, w, b, *rest, impl="ext")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b), fast_mode=True)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_gradcheck_fused_scramble(ext, device, normalization):
    (x, ws, bs, strides, paddings, ops_, acts, norm, gain, c, _) = _fused_args(
        normalization, torch.float64, dtype=torch.float64, carrier=normalization == "standardize", device=device)
    if normalization == "none":  # keep the feature map inside (0, 1), away from the clamp kinks
        x.data.mul_(0.1)
    names = ["leaky_relu", "tanh", "none"]
    bias_t = [b for b in bs if b is not None]

    def fn(x, *flat):
        w = list(flat[:3])
        it = iter(flat[3:3 + len(bias_t)])
        b = [next(it) if bb is not None else None for bb in bs]
        carrier = flat[3 + len(bias_t)] if c is not None else None
        return ops.fused_scramble(x, w, b, strides=strides, paddings=paddings, output_paddings=ops_,
                                  activations=names, normalization=normalization, gain=gain, carrier=carrier,
                                  out_dtype=torch.float64, impl="ext")

    inputs = (x, *ws, *bias_t) + ((c,) if c is not None else ())
    # the backward runs cuDNN's convolution_backward, whose float64 sums are not bitwise
    # reproducible on CUDA (atomics): allow that much between two backward passes
    nondet = 1e-10 if device == "cuda" else 0.0
    assert torch.autograd.gradcheck(fn, inputs, atol=1e-6, rtol=1e-4, fast_mode=True, nondet_tol=nondet)


def test_fused_gradients_match_reference_autograd(ext, device, tol):
    """The hand-written backward equals autograd through the reference (float64)."""
    (x, ws, bs, strides, paddings, ops_, acts, norm, gain, c, _) = _fused_args(dtype=torch.float64, device=device)
    kw = dict(strides=strides, paddings=paddings, output_paddings=ops_, activations=["leaky_relu", "tanh", "none"],
              normalization="standardize", gain=gain, carrier=c, out_dtype=torch.float64)
    leaves = [x, *ws, *[b for b in bs if b is not None], c]
    g_out = torch.randn(2, 4, 13, 13, dtype=torch.float64, device=device)
    got = torch.autograd.grad(ops.fused_scramble(x, ws, bs, **kw, impl="ext"), leaves, g_out)
    want = torch.autograd.grad(fused_scramble_ref(x, ws, bs, **kw), leaves, g_out)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tol(torch.float64))


def test_uint8_output_is_not_differentiable(ext, device):
    args = list(_fused_args("standardize", torch.uint8, device=device))
    y = torch.ops.owsd.fused_scramble(*args)
    assert y.dtype == torch.uint8 and not y.requires_grad


_COMPILE_CHECK = """
import sys, torch
sys.path.insert(0, "tests")
import owsd.ops as ops
from ops_cases import SMALL, stack
device = sys.argv[1]
ops.status()  # build/load the extension before tracing
torch.manual_seed(0)
ws, bs, kw = stack(SMALL, device=device)
x = torch.randn(2, 4, 1, 1, device=device, requires_grad=True)
w1 = torch.randn(3, 2, 3, 3, device=device) / 5

def f(x):
    y = ops.fused_scramble(x, ws, bs, **kw, activations=["leaky_relu"] * 4, normalization="standardize", impl="ext")
    return ops.conv_transpose2d(y, w1, stride=2, padding=1, impl="ext")

got = torch.compile(f, backend="aot_eager", fullgraph=True)(x)
want = f(x)
torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
(gx,) = torch.autograd.grad(got.square().sum(), x)
(wx,) = torch.autograd.grad(want.square().sum(), x)
torch.testing.assert_close(gx, wx, rtol=1e-4, atol=1e-5)
print("compiled ok")
"""


def test_torch_compile_traces_ops(ext, device):
    """torch.compile (dynamo, fullgraph) traces the custom ops, forward and backward, in a fresh
    interpreter: dynamo's state is process-global, and in the full suite an earlier test left it
    unable to trace the ops' argument checks (not reproduced in isolation)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", _COMPILE_CHECK, device], cwd=root, capture_output=True, text=True,
                       timeout=600, env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0 and "compiled ok" in r.stdout, r.stderr[-3000:]


# ----------------------------------------------------------------------------- every preset, odd shapes
@pytest.mark.parametrize("preset", ["default", "grey-sigmoid", "linear", "small-signal", "deep-linear"])
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.uint8])
def test_fused_every_preset_matches_reference(ext, device, tol, preset, out_dtype):
    """The fused kernel (layers, not the collapsed matrix) on each named preset's key and spec."""
    from owsd.keys import generate_key
    from owsd.presets import get_preset
    from owsd.scrambler import Scrambler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = generate_key(get_preset(preset), seed=11)
    e = torch.randn(5, 64, generator=torch.Generator().manual_seed(2)).to(device)
    got = Scrambler(key, impl="ext", collapse="never", device=device)(e, out_dtype=out_dtype)
    want = Scrambler(key, impl="ref", device=device)(e, out_dtype=out_dtype)
    if out_dtype == torch.uint8:
        assert_uint8_close(got, want)
    else:
        torch.testing.assert_close(got, want, **tol(torch.float32))




@pytest.mark.parametrize("h,w", [(1, 1), (2, 5), (7, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_odd_shapes_and_strides(ext, device, tol, h, w, dtype):
    """Non-square inputs, strides 1-3, output padding, padding larger than half the kernel."""
    cfg = [(3, 5, 3, 3, 1, 2), (5, 4, 5, 2, 2, 1), (4, 2, 4, 1, 0, 0)]
    ws, bs, kw = _stack(cfg, dtype=dtype, device=device, bias_every=2, seed=h * 7 + w)
    x = torch.randn(4, 3, h, w, dtype=dtype, generator=torch.Generator().manual_seed(h)).to(device)
    for norm in NORMALIZATIONS:
        got, want = _fused_both(x, ws, bs, dict(kw, activations=["tanh", "leaky_relu", "none"]),
                                normalization=norm, gain=0.9, out_dtype=dtype)
        torch.testing.assert_close(got, want, **tol(dtype))
