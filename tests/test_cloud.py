"""Cloud adapters: the tiny stand-in, top-k truncation, input validation, ONNX parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from owsd.cloud import OnnxCloud, TinyCloud, TinyNet, efficientnet_lite0, truncate_topk


def test_tiny_cloud_outputs_probabilities():
    c = TinyCloud()
    p = c.predict(torch.rand(3, 3, 224, 224), verbose=False)
    assert p.shape == (3, 1000) and np.allclose(p.sum(1), 1, atol=1e-5) and (p >= 0).all()
    p2 = TinyCloud().predict(torch.rand(3, 3, 224, 224), verbose=False)
    assert not np.allclose(p, p2)  # depends on the input


def test_tiny_cloud_is_deterministic():
    x = torch.rand(2, 3, 224, 224)
    np.testing.assert_array_equal(TinyCloud().predict(x, verbose=False), TinyCloud().predict(x, verbose=False))


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 3, 32, 32), "spatial size"),
    (torch.rand(2, 1, 224, 224), "3 channels"),
    (torch.full((1, 3, 224, 224), float("nan")), "NaN"),
    (torch.rand(1, 3, 224, 224) * 3, r"must lie in \[0, 1\]"),
    (torch.zeros(3, 224), "expected shape"),
])
def test_bad_images_fail_clearly(bad, match):
    with pytest.raises(ValueError, match=match):
        TinyCloud().predict(bad, verbose=False)


def test_uint8_images_accepted():
    x = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    np.testing.assert_allclose(TinyCloud().predict(x, verbose=False),
                               TinyCloud().predict(x.float() / 255, verbose=False), rtol=1e-5, atol=1e-6)


def test_truncate_topk_keeps_the_largest():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(50), size=4).astype(np.float32)
    t = truncate_topk(p, 5)
    assert ((t > 0).sum(1) == 5).all()
    for row, trow in zip(p, t):
        np.testing.assert_array_equal(np.sort(np.flatnonzero(trow)), np.sort(np.argsort(-row)[:5]))
    np.testing.assert_array_equal(truncate_topk(p, 50), p)
    with pytest.raises(ValueError, match="k must be"):
        truncate_topk(p, 0)


def test_onnx_cloud_matches_torch(tmp_path):
    net = TinyNet(num_outputs=20).eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(net, torch.randn(1, 3, 64, 64), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}}, opset_version=17, dynamo=False)
    cloud = OnnxCloud(path, name="tiny-onnx", input_size=(64, 64))
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        ref = torch.softmax(net(x), 1).numpy()
    np.testing.assert_allclose(cloud.predict(x, verbose=False), ref, rtol=1e-4, atol=1e-6)


def test_onnx_cloud_missing_or_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError):
        OnnxCloud(tmp_path / "nope.onnx", name="x", input_size=(8, 8))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot load ONNX model"):
        OnnxCloud(bad, name="x", input_size=(8, 8))


@pytest.mark.slow
def test_efficientnet_onnx_matches_torch_on_a_real_image(shared_data, tmp_path):
    from owsd.data import load_foolbox_samples

    ds = load_foolbox_samples(shared_data, "samples-imagenet")
    x = torch.from_numpy(ds.images[:4]).float() / 255
    onnx_cloud = efficientnet_lite0(cache_dir=tmp_path)
    torch_cloud = efficientnet_lite0(backend="torch")
    p_onnx = onnx_cloud.predict(x, verbose=False)
    p_torch = torch_cloud.predict(x, verbose=False)
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-4)
    # a pretrained ImageNet model gets most of foolbox's ImageNet samples right
    assert (p_onnx.argmax(1) == ds.labels[:4]).mean() >= 0.5
