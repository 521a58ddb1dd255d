"""The affine scrambler (stacks without activations as one matrix product), on every device.

The compiled kernels are tested against the torch reference of the op
(``affine_scramble_ref``) and, through :func:`collapsed_scramble`, against the
layer-by-layer ground truth ``fused_scramble_ref``; shapes that are not multiples of the
kernels' tiles, every post map and output dtype, opcheck and gradcheck.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import owsd.ops as ops
from ops_cases import DEFAULT_224, SMALL, STRIDE3, assert_uint8_close
from ops_cases import stack as _stack
from owsd.ops.affine import POSTS, collapse_worthwhile, stack_flops
from owsd.ops.reference import NORMALIZATIONS, fused_scramble_ref


def _affine_inputs(n, k, p, dtype, device, *, offset=True, base=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, dtype=dtype, generator=g).to(device)  # noqa: E731
    return dict(x=r(n, k), matrix=r(k, p) / max(k, 1) ** 0.5, offset=r(p) * 0.1 if offset else None,
                scale=r(n).abs() * 0.3 + 0.05, center=r(n) * 0.1, base=r(p) * 0.2 + 0.5 if base else None)


@pytest.mark.parametrize("n,k,p", [(1, 1, 1), (3, 17, 129), (65, 64, 1000), (130, 70, 127), (64, 16, 128),
                                   (5, 0, 9), (2, 33, 4099), (9, 33, 2100)])
@pytest.mark.parametrize("post", sorted(POSTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_affine_kernel_matches_reference(ext, device, tol, n, k, p, post, dtype):
    a = _affine_inputs(n, k, p, dtype, device, seed=n + k + p)
    want = ops.affine_scramble_ref(a["x"], a["matrix"], a["offset"], a["scale"], a["center"], a["base"],
                                   POSTS[post], dtype)
    got = ops.affine_scramble(a["x"], a["matrix"], a["offset"], scale=a["scale"], center=a["center"],
                              base=a["base"], post=post, out_dtype=dtype, impl="ext")
    assert got.shape == (n, p) and got.dtype == dtype
    torch.testing.assert_close(got, want, **tol(dtype))


_DTYPES = (torch.float32, torch.float64, torch.uint8)


@pytest.mark.parametrize("shape,seed,inputs,out_dtype", [
    # optional inputs: no offset and no base, an offset alone, a base alone; every output dtype
    *(((70, 64, 260), 3, {"offset": o, "base": b}, d) for o, b in ((False, False), (True, False), (False, True))
      for d in _DTYPES),
    # an output of 8 MiB or more (non-temporal stores on the CPU), packed panels and a tail strip
    *(((21, 8, 100_003), 11, {}, d) for d in (torch.float32, torch.uint8)),
])
def test_affine_kernel_optional_inputs_outputs_and_large_streams(ext, device, tol, shape, seed, inputs, out_dtype):
    a = _affine_inputs(*shape, torch.float32, device, seed=seed, **inputs)
    want = ops.affine_scramble_ref(a["x"], a["matrix"], a["offset"], a["scale"], a["center"], a["base"],
                                   POSTS["clamp"], out_dtype)
    got = ops.affine_scramble(a["x"], a["matrix"], a["offset"], scale=a["scale"], center=a["center"],
                              base=a["base"], out_dtype=out_dtype, impl="ext")
    if out_dtype == torch.uint8:
        assert_uint8_close(got, want)
    else:
        torch.testing.assert_close(got, want, **tol(torch.float32))


@pytest.mark.parametrize("impl", ["ext", "ref"])
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.uint8])
def test_affine_kernel_writes_into_out(ext, device, tol, impl, out_dtype):
    """``out=``: the same values written into the caller's buffer, which is returned; bad buffers refused."""
    a = _affine_inputs(10, 16, 300, torch.float32, device, seed=12)
    kw = dict(scale=a["scale"], center=a["center"], base=a["base"], out_dtype=out_dtype)
    want = ops.affine_scramble(a["x"], a["matrix"], a["offset"], impl="ref", **kw)
    buf = torch.full((10, 300), 7, dtype=out_dtype, device=device)
    got = ops.affine_scramble(a["x"], a["matrix"], a["offset"], impl=impl, out=buf, **kw)
    assert got.data_ptr() == buf.data_ptr()
    if out_dtype == torch.uint8:
        assert_uint8_close(buf, want)
    else:
        torch.testing.assert_close(buf, want, **tol(torch.float32))
    with pytest.raises(ValueError, match="out must be"):
        ops.affine_scramble(a["x"], a["matrix"], impl=impl, out=buf[:, :299], **kw)
    with pytest.raises(ValueError, match="not differentiable"):
        ops.affine_scramble(a["x"].requires_grad_(), a["matrix"], impl=impl, out=buf, **kw)
    with pytest.raises(RuntimeError, match="out must have shape"):
        torch.ops.owsd.affine_scramble_out(a["x"].detach(), a["matrix"], None, a["scale"], a["center"], None, 0,
                                           buf[:4])


def test_affine_kernel_errors(ext, device):
    a = _affine_inputs(4, 8, 10, torch.float32, device)
    with pytest.raises(RuntimeError, match="matrix must be"):
        torch.ops.owsd.affine_scramble(a["x"], a["matrix"][:5], None, a["scale"], a["center"], None, 0,
                                       torch.float32)
    with pytest.raises(RuntimeError, match="scale and center"):
        torch.ops.owsd.affine_scramble(a["x"], a["matrix"], None, a["scale"][:2], a["center"], None, 0,
                                       torch.float32)
    with pytest.raises(RuntimeError, match="bounded post"):
        torch.ops.owsd.affine_scramble(a["x"], a["matrix"], None, a["scale"], a["center"], None, 2, torch.uint8)
    with pytest.raises(ValueError, match="unknown post"):
        ops.affine_scramble(a["x"], a["matrix"], scale=a["scale"], center=a["center"], post="relu")


@pytest.mark.parametrize("cfg,bias_every", [(SMALL, 2), (STRIDE3, 1), (DEFAULT_224, 100)],
                         ids=["small", "stride3", "default224"])
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.uint8])
def test_collapsed_scramble_matches_layer_reference(ext, device, tol, cfg, bias_every, normalization, out_dtype):
    """One matrix product gives the images of the layer-by-layer stack without activations."""
    ws, bs, kw = _stack(cfg, device=device, bias_every=bias_every)
    shape = (cfg[0][0], 2, 3) if cfg is STRIDE3 else (cfg[0][0], 1, 1)
    st = ops.collapse_stack(ws, bs, input_shape=shape, **kw)
    x = torch.randn(9, *shape, generator=torch.Generator().manual_seed(4)).to(device)
    want_shape = fused_scramble_ref(x, ws, bs, activations=["none"] * len(cfg), normalization="none", **kw).shape
    carrier = torch.rand(*want_shape[1:]).to(device) if normalization == "standardize" else None
    common = dict(normalization=normalization, gain=0.8, carrier=carrier, out_dtype=out_dtype)
    want = fused_scramble_ref(x, ws, bs, activations=["none"] * len(cfg), **kw, **common)
    for impl in ("ext", "ref"):
        got = ops.collapsed_scramble(x.reshape(9, -1), st, impl=impl, **common)
        if out_dtype == torch.uint8:
            assert_uint8_close(got, want)
        else:
            torch.testing.assert_close(got, want, **tol(torch.float32))


@pytest.mark.parametrize("preset", ["default", "deep-linear", "linear", "grey-sigmoid"])
def test_scrambler_collapse_on_every_linear_preset(ext, device, tol, preset):
    """Scrambler(collapse='always') equals the reference; specs with activations never collapse."""
    from owsd.keys import generate_key
    from owsd.presets import get_preset
    from owsd.scrambler import Scrambler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = generate_key(get_preset(preset), seed=5)
    e = torch.randn(6, 64, generator=torch.Generator().manual_seed(1)).to(device)
    fast = Scrambler(key, collapse="always", device=device)
    linear = all(layer.activation == "none" for layer in key.spec.layers)
    assert fast.uses_collapse() == linear
    torch.testing.assert_close(fast(e), Scrambler(key, impl="ref", device=device)(e), **tol(torch.float32))


def test_scrambler_auto_collapse_rule(ext, device, tol):
    """`auto` collapses `default` (product 0.88x the layers' FLOPs) but not `linear` (4x), whatever the
    batch; and the same key gives the same bits however its traffic is batched."""
    from owsd.keys import generate_key
    from owsd.presets import get_preset
    from owsd.scrambler import Scrambler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = Scrambler(generate_key(get_preset("default"), seed=0), device=device)
        lin = Scrambler(generate_key(get_preset("linear"), seed=0), device=device)
    assert s.uses_collapse() and not lin.uses_collapse()
    assert not Scrambler(generate_key(get_preset("default"), seed=0), collapse="never").uses_collapse()
    e = torch.randn(10, 64, device=device)
    whole = s(e)
    assert s._collapsed is not None and s._collapsed.nbytes == 64 * 3 * 224 * 224 * 4
    assert torch.equal(torch.cat([s(e[:3]), s(e[3:])]), whole)
    assert stack_flops((64, 1, 1), s.weights, [1, 2, 2, 2, 2, 2]) > 2 * 64 * 3 * 224 * 224 / 1.5
    assert not collapse_worthwhile(input_shape=(16, 2, 2), weights=lin.weights, strides=[112],
                                   out_numel=3 * 224 * 224)


# ----------------------------------------------------------------------------- torch.library
def _op_args(device, dtype, requires_grad, post=0, out_dtype=None):
    a = _affine_inputs(5, 6, 11, dtype, device, seed=7)
    for v in a.values():
        if v is not None:
            v.requires_grad_(requires_grad)
    return (a["x"], a["matrix"], a["offset"], a["scale"], a["center"], a["base"], post, out_dtype or dtype)


@pytest.mark.parametrize("post", sorted(POSTS.values()))
def test_opcheck_affine_scramble(ext, device, post):
    torch.library.opcheck(torch.ops.owsd.affine_scramble.default, _op_args(device, torch.float32, True, post))
    torch.library.opcheck(torch.ops.owsd.affine_scramble.default,
                          _op_args(device, torch.float32, False, min(post, 1), torch.uint8))


@pytest.mark.parametrize("post", sorted(POSTS))
def test_gradcheck_affine_scramble(ext, device, post):
    x, m, off, scale, center, base, _, _ = _op_args(device, torch.float64, True)
    if post == "clamp":  # away from the clamp's kinks
        scale.data.mul_(0.05)

    def fn(x, m, off, scale, center, base):
        return ops.affine_scramble(x, m, off, scale=scale, center=center, base=base, post=post,
                                   out_dtype=torch.float64, impl="ext")

    assert torch.autograd.gradcheck(fn, (x, m, off, scale, center, base), fast_mode=True)


def test_collapsed_gradients_match_layer_autograd(ext, device, tol):
    """Gradients through the collapsed path (moments and op) equal autograd through the layers."""
    ws, bs, kw = _stack(SMALL, dtype=torch.float64, device=device, bias_every=2)
    st = ops.collapse_stack(ws, bs, input_shape=(4, 1, 1), **kw)
    carrier = torch.rand(3, 13, 13, dtype=torch.float64).to(device)
    x = torch.randn(4, 4, dtype=torch.float64).to(device).requires_grad_()
    common = dict(normalization="standardize", gain=0.05, carrier=carrier, out_dtype=torch.float64)
    g_out = torch.randn(4, 3, 13, 13, dtype=torch.float64).to(device)
    (got,) = torch.autograd.grad(ops.collapsed_scramble(x, st, impl="ext", **common), x, g_out)
    (want,) = torch.autograd.grad(fused_scramble_ref(x.reshape(4, 4, 1, 1), ws, bs, activations=["none"] * 4,
                                                     **kw, **common), x, g_out)
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-8)
