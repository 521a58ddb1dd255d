"""Tests of owsd.ops: compiled kernels vs the reference, opcheck, gradcheck, fallback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import owsd.ops as ops
from owsd.ops import _api, _build
from owsd.ops._register import ACT_CODES, NORM_CODES
from owsd.ops.reference import ACTIVATIONS, NORMALIZATIONS, fused_scramble_ref

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ext():
    """The compiled extension; skips (with the reason) when it cannot be built here."""
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        pytest.skip(f"no C++ compiler ({cxx!r} not on PATH): compiled owsd ops cannot be built")
    state = _build.ensure_built()
    if not state.cpu_ok:
        pytest.skip(f"compiled owsd ops unavailable: {state.cpu_reason}")
    return state


def _rand(shape, dtype, device="cpu", scale=1.0, gen=None):
    return torch.randn(*shape, dtype=dtype, generator=gen).mul_(scale).to(device)


def _stack(cfg, dtype=torch.float32, device="cpu", seed=0, bias_every=1):
    """cfg: list of (cin, cout, k, s, p, op); weights scaled by 1/sqrt(fan_in)."""
    g = torch.Generator().manual_seed(seed)
    ws, bs = [], []
    for i, (ci, co, k, s, p, op) in enumerate(cfg):
        ws.append(_rand((ci, co, k, k), dtype, device, (ci * k * k / (s * s)) ** -0.5, g))
        bs.append(_rand((co,), dtype, device, 0.1, g) if i % bias_every == 0 else None)
    kw = dict(strides=[c[3] for c in cfg], paddings=[c[4] for c in cfg], output_paddings=[c[5] for c in cfg])
    return ws, bs, kw


SMALL = [(4, 6, 3, 1, 0, 0), (6, 5, 4, 2, 1, 0), (5, 4, 4, 2, 1, 1), (4, 3, 3, 1, 1, 0)]  # 1 -> 3 -> 6 -> 13 -> 13
STRIDE3 = [(3, 4, 3, 1, 0, 0), (4, 3, 5, 3, 1, 2)]  # generic (scalar) path along W
DEFAULT_224 = [(64, 32, 7, 1, 0, 0), (32, 16, 4, 2, 1, 0), (16, 16, 4, 2, 1, 0), (16, 8, 4, 2, 1, 0),
               (8, 8, 4, 2, 1, 0), (8, 3, 4, 2, 1, 0)]


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
def test_conv_transpose2d_matches_torch(ext, case, tol):
    g = torch.Generator().manual_seed(case["seed"])
    dt = case["dtype"]
    kh, kw = case["k"]
    fan_in = case["cin"] // case["groups"] * kh * kw
    x = _rand((case["n"], case["cin"], case["h"], case["w"]), dt, gen=g)
    w = _rand((case["cin"], case["cout"] // case["groups"], kh, kw), dt, scale=fan_in ** -0.5, gen=g)
    b = _rand((case["cout"],), dt, gen=g) if case["bias"] else None
    args = dict(stride=case["stride"], padding=case["padding"], output_padding=case["output_padding"],
                groups=case["groups"], dilation=case["dilation"])
    want = F.conv_transpose2d(x, w, b, **args)
    got = ops.conv_transpose2d(x, w, b, **args, impl="ext")
    assert got.shape == want.shape and got.dtype == want.dtype
    torch.testing.assert_close(got, want, **tol(dt))


@pytest.mark.parametrize("width", [15, 16, 17, 31, 33, 47, 64, 70])
@pytest.mark.parametrize("stride,padding,output_padding", [(1, 0, 0), (1, 2, 0), (2, 1, 0), (2, 0, 1), (2, 3, 1)])
def test_conv_transpose2d_vector_tails(ext, tol, width, stride, padding, output_padding):
    """Widths around the SIMD width exercise the chunk tails of the vector kernel."""
    g = torch.Generator().manual_seed(width)
    x = _rand((2, 3, 4, width), torch.float32, gen=g)
    w = _rand((3, 5, 4, 4), torch.float32, scale=48 ** -0.5, gen=g)
    b = _rand((5,), torch.float32, gen=g)
    args = dict(stride=stride, padding=padding, output_padding=output_padding)
    torch.testing.assert_close(ops.conv_transpose2d(x, w, b, **args, impl="ext"),
                               F.conv_transpose2d(x, w, b, **args), **tol(torch.float32))


@pytest.mark.parametrize("k,stride,output_padding", [(7, 1, 0), (3, 2, 1), (4, 3, 2), (1, 1, 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_transpose2d_dense_1x1_path(ext, tol, k, stride, output_padding, dtype):
    """A 1x1 input without padding runs as a GEMV (the embedding layer of the scrambler)."""
    g = torch.Generator().manual_seed(k)
    x = _rand((3, 16, 1, 1), dtype, gen=g)
    w = _rand((16, 5, k, k), dtype, scale=(16 * k * k) ** -0.5, gen=g)
    b = _rand((5,), dtype, gen=g)
    args = dict(stride=stride, output_padding=output_padding)
    torch.testing.assert_close(ops.conv_transpose2d(x, w, b, **args, impl="ext"),
                               F.conv_transpose2d(x, w, b, **args), **tol(dtype))


@pytest.mark.parametrize("h,w,k,stride,output_padding", [(2, 3, 3, 3, 0), (3, 2, 2, 3, 1), (2, 2, 8, 8, 0),
                                                          (1, 4, 5, 5, 2), (4, 1, (2, 3), (3, 3), 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_transpose2d_block_path(ext, tol, h, w, k, stride, output_padding, dtype):
    """Kernel <= stride (no overlapping taps) runs as one GEMV per input pixel; gaps hold the bias."""
    g = torch.Generator().manual_seed(h * 10 + w)
    kh, kw = (k, k) if isinstance(k, int) else k
    x = _rand((2, 6, h, w), dtype, gen=g)
    wt = _rand((6, 4, kh, kw), dtype, scale=6 ** -0.5, gen=g)
    b = _rand((4,), dtype, gen=g)
    args = dict(stride=stride, output_padding=output_padding)
    torch.testing.assert_close(ops.conv_transpose2d(x, wt, b, **args, impl="ext"),
                               F.conv_transpose2d(x, wt, b, **args), **tol(dtype))


def test_fused_linear_preset_block_path(ext, tol):
    """The `linear` preset's single kernel = stride = 112 layer through the fused operator."""
    from owsd.presets import get_preset
    from owsd.keys import generate_key
    from owsd.scrambler import Scrambler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = generate_key(get_preset("linear"), seed=3)
    e = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    got = Scrambler(key, impl="ext")(e)
    want = Scrambler(key, impl="ref")(e)
    torch.testing.assert_close(got, want, **tol(torch.float32))


def test_conv_transpose2d_noncontiguous_inputs(ext, tol):
    x = torch.randn(2, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    w = torch.randn(4, 8, 3, 3).transpose(0, 1) / 6  # (8, 4, 3, 3), non-contiguous
    torch.testing.assert_close(ops.conv_transpose2d(x, w, stride=2, impl="ext"),
                               F.conv_transpose2d(x, w, stride=2), **tol(torch.float32))


def test_conv_transpose2d_errors(ext):
    x = torch.randn(1, 4, 3, 3)
    with pytest.raises(RuntimeError, match="weight.size\\(0\\)"):
        ops.conv_transpose2d(x, torch.randn(3, 2, 3, 3), impl="ext")
    with pytest.raises(RuntimeError, match="output padding"):
        ops.conv_transpose2d(x, torch.randn(4, 2, 3, 3), stride=1, output_padding=1, impl="ext")
    with pytest.raises(RuntimeError, match="float32 or float64"):
        ops.conv_transpose2d(x.half(), torch.randn(4, 2, 3, 3).half(), impl="ext")


# ----------------------------------------------------------------------------- fused op
def _fused_both(x, ws, bs, kw, **extra):
    want = fused_scramble_ref(x, ws, bs, **kw, **extra)
    got = ops.fused_scramble(x, ws, bs, **kw, **extra, impl="ext")
    return got, want


def _assert_uint8_close(got, want):
    assert got.dtype == torch.uint8 and got.shape == want.shape
    diff = (got.int() - want.int()).abs()
    assert diff.max().item() <= 1, "uint8 outputs differ by more than one level"
    assert diff.float().mean().item() < 1e-3, "too many off-by-one uint8 levels (rounding ties only expected)"


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("activation", ACTIVATIONS + ("mixed",))
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.uint8])
def test_fused_matches_reference(ext, tol, normalization, activation, out_dtype):
    ws, bs, kw = _stack(SMALL, bias_every=2)
    acts = ["leaky_relu", "tanh", "relu", "none"] if activation == "mixed" else [activation] * len(SMALL)
    x = torch.randn(5, 4, 1, 1, generator=torch.Generator().manual_seed(1))
    for carrier in ([None, torch.rand(3, 13, 13)] if normalization == "standardize" else [None]):
        got, want = _fused_both(x, ws, bs, dict(kw, activations=acts), normalization=normalization,
                                gain=1.7, carrier=carrier, out_dtype=out_dtype)
        if out_dtype == torch.uint8:
            _assert_uint8_close(got, want)
        else:
            torch.testing.assert_close(got, want, **tol(torch.float32))


@pytest.mark.parametrize("cfg", [SMALL, STRIDE3], ids=["small", "stride3"])
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_fused_float64(ext, tol, cfg, normalization):
    ws, bs, kw = _stack(cfg, dtype=torch.float64)
    x = torch.randn(3, cfg[0][0], 2, 3, dtype=torch.float64)
    carrier = torch.rand(cfg[-1][1], *fused_scramble_ref(x, ws, bs, **kw, activations=["tanh"] * len(cfg),
                                                          normalization="none").shape[2:], dtype=torch.float64)
    for c in ([None, carrier] if normalization == "standardize" else [None]):
        for od in (torch.float64, torch.float32):
            got, want = _fused_both(x, ws, bs, dict(kw, activations=["tanh"] * len(cfg)),
                                    normalization=normalization, carrier=c, out_dtype=od)
            torch.testing.assert_close(got, want, **tol(od))


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.uint8])
def test_fused_default_224_stack(ext, tol, out_dtype):
    ws, bs, kw = _stack(DEFAULT_224)
    x = torch.randn(3, 64, 1, 1)
    got, want = _fused_both(x, ws, bs, dict(kw, activations=["leaky_relu"] * 6), normalization="standardize",
                            out_dtype=out_dtype)
    assert got.shape == (3, 3, 224, 224)
    if out_dtype == torch.uint8:
        _assert_uint8_close(got, want)
    else:
        torch.testing.assert_close(got, want, **tol(torch.float32))


def test_fused_argument_errors(ext):
    ws, bs, kw = _stack(SMALL)
    x = torch.randn(1, 4, 1, 1)
    acts = ["relu"] * len(SMALL)
    with pytest.raises(ValueError, match="unknown activation"):
        ops.fused_scramble(x, ws, bs, **kw, activations=["gelu"] * 4, normalization="none", impl="ext")
    with pytest.raises(ValueError, match="unknown normalization"):
        ops.fused_scramble(x, ws, bs, **kw, activations=acts, normalization="minmax", impl="ext")
    with pytest.raises(ValueError, match="expected one per layer"):
        ops.fused_scramble(x, ws, bs[:2], **kw, activations=acts, normalization="none", impl="ext")
    with pytest.raises(RuntimeError, match="carrier must have shape"):
        ops.fused_scramble(x, ws, bs, **kw, activations=acts, normalization="standardize",
                           carrier=torch.rand(3, 5, 5), impl="ext")
    with pytest.raises(RuntimeError, match="size\\(0\\)"):
        ops.fused_scramble(torch.randn(1, 5, 1, 1), ws, bs, **kw, activations=acts, normalization="none",
                           impl="ext")


# ----------------------------------------------------------------------------- torch.library
def _layer_args(requires_grad=True, dtype=torch.float64):
    x = torch.randn(2, 4, 5, 6, dtype=dtype, requires_grad=requires_grad)
    w = (torch.randn(4, 3, 3, 4, dtype=dtype) / 6).requires_grad_(requires_grad)
    b = torch.randn(6, dtype=dtype, requires_grad=requires_grad)
    return (x, w, b, [2, 1], [1, 0], [1, 0], 2, [1, 2])


def _fused_args(normalization="standardize", out_dtype=torch.float32, requires_grad=True, dtype=torch.float32,
                carrier=True):
    ws, bs, kw = _stack(SMALL[:3], dtype=dtype, bias_every=2)
    for t in ws + [b for b in bs if b is not None]:
        t.requires_grad_(requires_grad)
    x = torch.randn(2, 4, 1, 1, dtype=dtype, requires_grad=requires_grad)
    c = torch.rand(4, 13, 13, dtype=dtype, requires_grad=requires_grad) if carrier else None
    acts = [ACT_CODES[a] for a in ("leaky_relu", "tanh", "none")]
    return (x, ws, bs, kw["strides"], kw["paddings"], kw["output_paddings"], acts, NORM_CODES[normalization],
            1.3, c, out_dtype)


def test_opcheck_conv_transpose2d(ext):
    torch.library.opcheck(torch.ops.owsd.conv_transpose2d.default, _layer_args(dtype=torch.float32))
    torch.library.opcheck(torch.ops.owsd.conv_transpose2d.default,
                          (torch.randn(1, 2, 3, 3), torch.randn(2, 2, 3, 3), None, [1, 1], [0, 0], [0, 0], 1, [1, 1]))


@pytest.mark.parametrize("normalization,out_dtype,carrier", [("standardize", torch.float32, True),
                                                             ("sigmoid", torch.float32, False),
                                                             ("none", torch.uint8, False)])
def test_opcheck_fused_scramble(ext, normalization, out_dtype, carrier):
    args = _fused_args(normalization, out_dtype, requires_grad=out_dtype.is_floating_point, carrier=carrier)
    torch.library.opcheck(torch.ops.owsd.fused_scramble.default, args)


def test_gradcheck_conv_transpose2d(ext):
    x, w, b, *rest = _layer_args()
    fn = lambda x, w, b: ops.conv_transpose2d(x, w, b, *rest, impl="ext")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b), fast_mode=True)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_gradcheck_fused_scramble(ext, normalization):
    (x, ws, bs, strides, paddings, ops_, acts, norm, gain, c, _) = _fused_args(
        normalization, torch.float64, dtype=torch.float64, carrier=normalization == "standardize")
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
    assert torch.autograd.gradcheck(fn, inputs, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_fused_gradients_match_reference_autograd(ext, tol):
    """The hand-written backward equals autograd through the reference (float64)."""
    (x, ws, bs, strides, paddings, ops_, acts, norm, gain, c, _) = _fused_args(dtype=torch.float64)
    kw = dict(strides=strides, paddings=paddings, output_paddings=ops_, activations=["leaky_relu", "tanh", "none"],
              normalization="standardize", gain=gain, carrier=c, out_dtype=torch.float64)
    leaves = [x, *ws, *[b for b in bs if b is not None], c]
    g_out = torch.randn(2, 4, 13, 13, dtype=torch.float64)
    got = torch.autograd.grad(ops.fused_scramble(x, ws, bs, **kw, impl="ext"), leaves, g_out)
    want = torch.autograd.grad(fused_scramble_ref(x, ws, bs, **kw), leaves, g_out)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tol(torch.float64))


def test_uint8_output_is_not_differentiable(ext):
    args = list(_fused_args("standardize", torch.uint8))
    y = torch.ops.owsd.fused_scramble(*args)
    assert y.dtype == torch.uint8 and not y.requires_grad


def test_torch_compile_traces_ops(ext, tol):
    ws, bs, kw = _stack(SMALL)
    x = torch.randn(2, 4, 1, 1, requires_grad=True)
    w1 = torch.randn(3, 2, 3, 3) / 5

    def f(x):
        y = ops.fused_scramble(x, ws, bs, **kw, activations=["leaky_relu"] * 4, normalization="standardize",
                               impl="ext")
        return ops.conv_transpose2d(y, w1, stride=2, padding=1, impl="ext")

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    got = compiled(x)
    want = f(x)
    torch.testing.assert_close(got, want, **tol(torch.float32))
    (gx,) = torch.autograd.grad(got.square().sum(), x)
    (wx,) = torch.autograd.grad(want.square().sum(), x)
    torch.testing.assert_close(gx, wx, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- impl selection
def test_ref_impl_never_builds(monkeypatch):
    fresh = _build.ExtensionState()
    monkeypatch.setattr(_build, "STATE", fresh)
    ws, bs, kw = _stack(SMALL)
    x = torch.randn(2, 4, 1, 1)
    y = ops.fused_scramble(x, ws, bs, **kw, activations=["relu"] * 4, normalization="sigmoid", impl="ref")
    torch.testing.assert_close(y, fused_scramble_ref(x, ws, bs, **kw, activations=["relu"] * 4,
                                                     normalization="sigmoid"))
    assert not fresh.attempted


def test_import_does_not_build():
    code = ("import owsd, owsd.ops, owsd.ops._build as b, torch; "
            "assert not b.STATE.attempted; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_build_failure_falls_back_with_one_warning(monkeypatch, tol):
    fresh = _build.ExtensionState()
    monkeypatch.setattr(_build, "STATE", fresh)
    monkeypatch.setattr(_build, "_ops_registered", lambda: False)

    def boom(*args, **kwargs):
        raise RuntimeError("Error building extension 'owsd_ops': simulated compiler error")

    monkeypatch.setattr(_build, "_compile", boom)
    monkeypatch.setattr(_api, "_DEFAULT_IMPL", None)
    monkeypatch.delenv("OWSD_OPS_IMPL", raising=False)
    ws, bs, kw = _stack(SMALL)
    x = torch.randn(2, 4, 1, 1)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        y1 = ops.fused_scramble(x, ws, bs, **kw, activations=["relu"] * 4, normalization="none")
        y2 = ops.conv_transpose2d(x, ws[0], bs[0])
        st = ops.status()
        ops.fused_scramble(x, ws, bs, **kw, activations=["relu"] * 4, normalization="none")
    ours = [w for w in rec if "owsd.ops" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in rec]
    assert issubclass(ours[0].category, RuntimeWarning)
    assert "simulated compiler error" in str(ours[0].message)
    torch.testing.assert_close(y1, fused_scramble_ref(x, ws, bs, **kw, activations=["relu"] * 4,
                                                      normalization="none"))
    torch.testing.assert_close(y2, F.conv_transpose2d(x, ws[0], bs[0]))
    assert st["cpu"]["impl"] == "ref"
    assert "simulated compiler error" in st["cpu"]["reason"]
    assert st["extension"]["cpu_built"] is False
    with pytest.raises(RuntimeError, match="impl='ext'.*simulated compiler error"):
        ops.fused_scramble(x, ws, bs, **kw, activations=["relu"] * 4, normalization="none", impl="ext")


def test_missing_compiler_reason(monkeypatch):
    fresh = _build.ExtensionState()
    monkeypatch.setattr(_build, "STATE", fresh)
    monkeypatch.setenv("CXX", "definitely-not-a-compiler-owsd")
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        st = _build.ensure_built()
    assert not st.cpu_ok and "no C++ compiler" in st.cpu_reason


def test_ext_error_when_unavailable(monkeypatch):
    st = _build.ExtensionState(attempted=True, cpu_ok=False, cpu_reason="compiler exploded")
    monkeypatch.setattr(_build, "STATE", st)
    with pytest.raises(RuntimeError, match="impl='ext' requested.*compiler exploded"):
        ops.conv_transpose2d(torch.randn(1, 2, 3, 3), torch.randn(2, 2, 3, 3), impl="ext")
    if not torch.cuda.is_available():  # CUDA kernels never exist on a CPU-only torch
        st.cpu_ok = True
        with pytest.raises(RuntimeError, match="impl='ext' requested.*on cuda"):
            _api._use_ext("ext", torch.device("cuda"))


def test_default_impl_env_and_setter(monkeypatch):
    monkeypatch.setattr(_api, "_DEFAULT_IMPL", None)
    monkeypatch.setenv("OWSD_OPS_IMPL", "ref")
    assert ops.get_default_impl() == "ref"
    assert ops.status()["cpu"]["impl"] == "ref"
    monkeypatch.setenv("OWSD_OPS_IMPL", "bogus")
    with pytest.raises(ValueError):
        ops.get_default_impl()
    monkeypatch.delenv("OWSD_OPS_IMPL")
    ops.set_default_impl("ext")
    assert ops.get_default_impl() == "ext"
    with pytest.raises(ValueError):
        ops.set_default_impl("fast")
    with pytest.raises(ValueError):
        ops.conv_transpose2d(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 2, 2), impl="fast")


def test_status_shape(ext):
    s = ops.status()
    assert s["cpu"] == {"impl": "ext", "reason": ""} or s["default_impl"] == "ref"
    assert set(s["cuda"]) == {"impl", "reason"}
    if not torch.cuda.is_available():
        assert s["cuda"]["impl"] == "ref" and s["cuda"]["reason"]
    assert s["extension"]["build_dir"].startswith(str(_build.cache_root()))


def test_cache_key(monkeypatch, tmp_path):
    monkeypatch.setenv("OWSD_OPS_CACHE", str(tmp_path))
    assert _build.cache_root() == tmp_path
    cfg = _build.build_config(with_cuda=False)
    assert _build.source_hash(cfg) == _build.source_hash(dict(cfg))
    assert _build.source_hash(cfg) != _build.source_hash(dict(cfg, cflags=cfg["cflags"] + ["-O0"]))
    assert _build.source_hash(cfg) != _build.source_hash(dict(cfg, torch="0.0.0"))
    monkeypatch.setenv("OWSD_OPS_ISA", "none")
    assert _build.isa_flags() == []


# ----------------------------------------------------------------------------- CUDA numerics
@pytest.mark.gpu
def test_cuda_layer_and_fused_match_reference(tol):
    state = _build.ensure_built()
    if not state.cuda_ok:
        pytest.skip(f"CUDA kernels unavailable: {state.cuda_reason}")
    dev = "cuda"
    x = torch.randn(3, 6, 7, 9, device=dev)
    w = torch.randn(6, 2, 4, 3, device=dev) / 5
    b = torch.randn(4, device=dev)
    args = dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2, dilation=(1, 2))
    torch.testing.assert_close(ops.conv_transpose2d(x, w, b, **args, impl="ext"),
                               F.conv_transpose2d(x, w, b, **args), **tol(torch.float32))
    for cfg in (SMALL, DEFAULT_224):
        ws, bs, kw = _stack(cfg, device=dev)
        z = torch.randn(4, cfg[0][0], 1, 1, device=dev)
        for norm in NORMALIZATIONS:
            for od in (torch.float32, torch.uint8):
                got, want = _fused_both(z, ws, bs, dict(kw, activations=["leaky_relu"] * len(cfg)),
                                        normalization=norm, out_dtype=od)
                if od == torch.uint8:
                    _assert_uint8_close(got, want)
                else:
                    torch.testing.assert_close(got, want, **tol(torch.float32))
