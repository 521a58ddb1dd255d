"""The HE baseline's network in plaintext: a square-activation CNN, its training and storage.

The network is the one of TenSEAL's encrypted-MNIST tutorial (one convolution, square, a
fully connected layer, square, a fully connected output layer): :class:`SquareConvNet`.
It is trained here in plaintext; :mod:`owsd_bench.ckks` evaluates it on encrypted images.

Example:
    >>> import numpy as np
    >>> net = SquareConvNet(image_size=8, channels=2, hidden=8)
    >>> net.describe()
    'conv 3x3/1 1->2 (6x6), x^2, fc 72->8, x^2, fc 8->10'
    >>> plaintext_logits(net, np.zeros((3, 1, 8, 8), np.uint8)).shape
    (3, 10)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from owsd.io import load_npz, save_npz

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvGeometry:
    """Image size, square kernel and stride of the (only) convolution."""

    image_size: int
    kernel: int
    stride: int

    @property
    def out_size(self) -> int:
        return (self.image_size - self.kernel) // self.stride + 1

    @property
    def windows(self) -> int:
        return self.out_size ** 2


def default_geometry(image_size: int) -> ConvGeometry:
    """The tutorial's 7x7 stride-3 convolution for 28x28 images; 3x3 stride 1 for small ones."""
    if image_size >= 28:
        return ConvGeometry(image_size, 7, 3)
    return ConvGeometry(image_size, 3, 1)


class SquareConvNet(nn.Module):
    """Conv(1 -> channels) -> x^2 -> Linear(hidden) -> x^2 -> Linear(classes), on [0, 1] images."""

    def __init__(self, image_size: int = 28, *, channels: int = 4, hidden: int = 64,
                 num_classes: int = 10, geometry: Optional[ConvGeometry] = None) -> None:
        super().__init__()
        self.geometry = geometry or default_geometry(image_size)
        g = self.geometry
        self.channels, self.hidden, self.num_classes = channels, hidden, num_classes
        self.conv = nn.Conv2d(1, channels, g.kernel, stride=g.stride)
        self.fc1 = nn.Linear(channels * g.windows, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).flatten(1)
        h = h * h
        h = self.fc1(h)
        h = h * h
        return self.fc2(h)

    def describe(self) -> str:
        g = self.geometry
        return (f"conv {g.kernel}x{g.kernel}/{g.stride} 1->{self.channels} ({g.out_size}x{g.out_size}), x^2, "
                f"fc {self.channels * g.windows}->{self.hidden}, x^2, fc {self.hidden}->{self.num_classes}")


def _as_unit_float(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, 1, H, W)`` images to float32 in [0, 1]."""
    a = np.asarray(images)
    if a.ndim != 4 or a.shape[1] != 1:
        raise ValueError(f"images: expected grey (N, 1, H, W), got shape {a.shape}")
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


def train_square_net(images: np.ndarray, labels: np.ndarray, *, epochs: int = 3, batch_size: int = 128,
                     lr: float = 2e-3, seed: int = 0, num_classes: int = 10,
                     verbose: bool = True) -> SquareConvNet:
    """Train :class:`SquareConvNet` in plaintext (Adam, cross-entropy) on grey images."""
    x = _as_unit_float(images)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = SquareConvNet(x.shape[-1], num_classes=num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    bar = tqdm(range(epochs), desc="HE network", disable=not verbose, unit="epoch")
    for _ in bar:
        perm = torch.randperm(len(y), generator=g)
        total = 0.0
        for s in range(0, len(y), batch_size):
            idx = perm[s:s + batch_size]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        bar.set_postfix(loss=total / len(y))
    return net.eval()


def plaintext_logits(net: SquareConvNet, images: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
    """The network's plaintext outputs ``(N, classes)`` for uint8 or [0, 1] grey images."""
    x = _as_unit_float(images)
    with torch.no_grad():
        return torch.cat([net(x[s:s + batch_size]) for s in range(0, len(x), batch_size)]).numpy()


def save_net(net: SquareConvNet, path: Path) -> None:
    """Save weights and shape to ``.npz`` (no pickle)."""
    g = net.geometry
    meta = np.array([g.image_size, g.kernel, g.stride, net.channels, net.hidden, net.num_classes])
    save_npz(Path(path), meta=meta, **{k: v.numpy() for k, v in net.state_dict().items()})


def load_net(path: Path) -> SquareConvNet:
    """Load a network saved by :func:`save_net`."""
    z = load_npz(Path(path))
    size, k, s, c, h, n = (int(v) for v in z.pop("meta"))
    net = SquareConvNet(size, channels=c, hidden=h, num_classes=n, geometry=ConvGeometry(size, k, s))
    net.load_state_dict({k: torch.from_numpy(v) for k, v in z.items()})
    return net.eval()
