"""Small data and models the own-data/own-cloud tests make themselves (PNG folders, .npz, ONNX)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image


def image_folder(root: Path, *, classes=("cats", "dogs"), per_class: int = 40, size: int = 12,
                 colour: bool = True, seed: int = 0) -> Path:
    """``root/<class>/<i>.png``: class k has mean brightness 60 + 70 k (learnable), noisy."""
    rng = np.random.default_rng(seed)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size, size, 3) if colour else (size, size)
            a = np.clip(rng.normal(60 + 70 * k, 35, shape), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / c / f"{i:03d}.png")
    return root


def npz_set(path: Path, *, n: int = 120, size: int = 10, labels=(3, 7), seed: int = 0) -> Path:
    """``x`` (N, H, W) uint8 and ``y`` with the given label values (second class darker)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size)).astype(np.uint8)
    y = np.repeat(np.asarray(labels), n // len(labels))
    x[y == labels[1]] //= 2
    np.savez(path, x=x, y=y)
    return path


class SmallNet(nn.Module):
    """A small classifier with fixed random weights: (N, 3, H, W) -> (N, K) logits."""

    def __init__(self, k: int = 20, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 7, stride=4)
        self.fc = nn.Linear(8, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def onnx_model(path: Path, *, size: int = 224, k: int = 20, seed: int = 0, probs: bool = False,
               out_rank3: bool = False) -> Path:
    """An ONNX classifier exported with torch.onnx (dynamic batch); variants for the error tests."""
    net = SmallNet(k, seed)

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            y = self.net(x)
            if probs:
                y = torch.softmax(y, 1)
            return y[:, None, :] if out_rank3 else y

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrap().eval(), torch.randn(1, 3, size, size), str(path), input_names=["input"],
                          output_names=["scores"], dynamic_axes={"input": {0: "b"}, "scores": {0: "b"}},
                          opset_version=17, dynamo=False)
    return path
