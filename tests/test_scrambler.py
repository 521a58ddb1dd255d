"""The scrambler: shapes, range, determinism, gradients, bad tensors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from owsd.keys import SeededKeyWarning, generate_key
from owsd.ops.reference import fused_scramble_ref
from owsd.presets import PRESETS, get_preset
from owsd.scrambler import Scrambler


def key(preset="default", seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeededKeyWarning)
        return generate_key(get_preset(preset), seed=seed)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_images_in_range_and_shape(preset):
    s = Scrambler(key(preset))
    y = s(torch.randn(3, 64))
    assert y.shape == (3, 3, 224, 224) and y.dtype == torch.float32
    assert float(y.min()) >= 0 and float(y.max()) <= 1 and torch.isfinite(y).all()


def test_deterministic_for_a_fixed_seed():
    e = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    a, b = Scrambler(key(seed=5))(e), Scrambler(key(seed=5))(e)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, Scrambler(key(seed=6))(e))


def test_matches_the_reference_stack(tol):
    k = key("small-signal", 1)
    s = Scrambler(k, impl="ref")
    e = torch.randn(2, 64)
    lays = k.spec.layers
    ref = fused_scramble_ref(e.reshape(2, 64, 1, 1), k.weights(), k.biases(), strides=[l.stride for l in lays],
                             paddings=[l.padding for l in lays], output_paddings=[l.output_padding for l in lays],
                             activations=[l.activation for l in lays], normalization=k.spec.normalization,
                             gain=k.spec.gain)
    torch.testing.assert_close(s(e), ref, **tol(torch.float32))


def test_gradient_flows_to_the_input():
    s = Scrambler(key())
    e = torch.randn(2, 64, requires_grad=True)
    s(e).sum().backward()
    assert e.grad is not None and torch.isfinite(e.grad).all() and e.grad.abs().sum() > 0


def test_uint8_output_matches_float():
    s = Scrambler(key())
    e = torch.randn(2, 64)
    u = s(e, out_dtype=torch.uint8)
    assert u.dtype == torch.uint8
    assert (u.float() - torch.round(s(e) * 255)).abs().max() <= 1


@pytest.mark.parametrize("bad, exc, match", [
    (np.zeros((2, 63), np.float32), ValueError, "expected 64 columns"),
    (np.full((2, 64), np.nan, np.float32), ValueError, "NaN"),
    (np.zeros((2, 8, 8), np.float32), ValueError, "2-D"),
    (np.array([["a"] * 64]), TypeError, "numeric"),
])
def test_bad_embeddings_fail_clearly(bad, exc, match):
    with pytest.raises(exc, match=match):
        Scrambler(key("linear")).scramble(bad, verbose=False)


def test_forward_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"expected shape \(N, 64\)"):
        Scrambler(key("linear"))(torch.zeros(2, 10))
