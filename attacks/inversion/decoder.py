"""Inversion networks: a small encoder-decoder from what the cloud sees back to the image.

Two input sides share one convolutional image decoder:

* scrambled images (``(3, 224, 224)``): a fixed stem first undoes the scheme's public
  elementwise output map when there is one (``logit`` for the ``sigmoid`` normalization,
  the attacker knows the architecture) and average-pools to ``pool x pool`` (a design
  choice for CPU budgets: 224x224x3 inputs are large; ``pool=32`` keeps 3,072 values);
  then an optional strided conv stack and a dense layer to a latent code
  (:class:`ScrambledEncoder`);
* output vectors (the cloud's 1,000 probabilities, top-k truncated): log-probabilities
  through an MLP (:class:`VectorEncoder`).

The decoder (:class:`ImageDecoder`) maps the latent code to ``(C, H, W)`` logits with a
dense layer to a quarter-size feature map and two stride-2 transposed convolutions (a
conv encoder-decoder; skip connections would not help, as input and output live on
unrelated grids).  Inputs are standardized with statistics of the training inputs, kept as
buffers in :class:`InversionNet`.

Example:
    >>> import torch
    >>> net = InversionNet(ScrambledEncoder((3, 224, 224), pool=16, latent=32),
    ...                    ImageDecoder(32, (1, 28, 28), width=8))
    >>> x = scrambled_features(torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8), pool=16)
    >>> tuple(net(x).shape)
    (2, 1, 28, 28)
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

#: probabilities below this are treated as this (log of a truncated entry)
PROB_FLOOR = 1e-7


def scrambled_features(scrambled, *, pool: int, normalization: Optional[str] = None, gain: float = 1.0,
                       batch_size: int = 256) -> torch.Tensor:
    """The fixed stem: uint8 (or [0, 1]) scrambled images -> ``(N, C, pool, pool)`` float32.

    With ``normalization="sigmoid"`` (from the public spec) the pixels are first mapped back
    through the logit (divided by the spec's gain), so a linear scrambler stays linear.
    """
    x = torch.as_tensor(np.asarray(scrambled)) if not isinstance(scrambled, torch.Tensor) else scrambled
    if x.ndim != 4:
        raise ValueError(f"scrambled images must be (N, C, H, W), got shape {tuple(x.shape)}")
    if pool < 1 or pool > min(x.shape[2:]):
        raise ValueError(f"pool must be in [1, {min(x.shape[2:])}], got {pool}")
    out = []
    for s in range(0, len(x), batch_size):
        b = x[s:s + batch_size]
        b = b.float() / 255.0 if b.dtype == torch.uint8 else b.float()
        if normalization == "sigmoid":
            eps = 0.5 / 255.0
            b = torch.logit(b.clamp(eps, 1 - eps)) / float(gain)
        out.append(F.adaptive_avg_pool2d(b, pool))
    return torch.cat(out) if out else torch.empty(0, x.shape[1], pool, pool)


def vector_features(probs) -> torch.Tensor:
    """Output vectors (probabilities, zeros where truncated) -> log-probabilities, float32."""
    p = torch.as_tensor(np.asarray(probs, dtype=np.float32))
    if p.ndim != 2:
        raise ValueError(f"output vectors must be (N, K), got shape {tuple(p.shape)}")
    return torch.log(p.clamp_min(PROB_FLOOR))


class ScrambledEncoder(nn.Module):
    """Pooled scrambled image ``(C, pool, pool)`` -> latent code (conv stack optional)."""

    def __init__(self, in_shape: tuple[int, int, int], *, pool: int = 32, latent: int = 256,
                 conv_width: int = 0, hidden: int = 512) -> None:
        super().__init__()
        c = in_shape[0]
        layers: list[nn.Module] = []
        n_in = c * pool * pool
        if conv_width:
            layers += [nn.Conv2d(c, conv_width, 4, stride=2, padding=1), nn.ReLU(),
                       nn.Conv2d(conv_width, 2 * conv_width, 4, stride=2, padding=1), nn.ReLU()]
            n_in = 2 * conv_width * (pool // 4) ** 2
        layers += [nn.Flatten(), nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, latent), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.in_shape = (c, pool, pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class VectorEncoder(nn.Module):
    """Output vector ``(K,)`` (log-probabilities) -> latent code."""

    def __init__(self, in_dim: int, *, latent: int = 256, hidden: int = 512) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, latent), nn.ReLU())
        self.in_shape = (in_dim,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ImageDecoder(nn.Module):
    """Latent code -> image logits ``(C, H, W)``: dense to ``H/4 x W/4``, two ConvT x2."""

    def __init__(self, latent: int, out_shape: tuple[int, int, int], *, width: int = 32) -> None:
        super().__init__()
        c, h, w = out_shape
        self.out_shape = (c, h, w)
        self.h0, self.w0 = max(1, math.ceil(h / 4)), max(1, math.ceil(w / 4))
        self.width = width
        self.fc = nn.Linear(latent, 2 * width * self.h0 * self.w0)
        self.up = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU(),
                                nn.ConvTranspose2d(width, c, 4, stride=2, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.up(self.fc(z).reshape(-1, 2 * self.width, self.h0, self.w0))
        if tuple(y.shape[2:]) != self.out_shape[1:]:
            y = F.interpolate(y, size=self.out_shape[1:], mode="bilinear", align_corners=False)
        return y


class InversionNet(nn.Module):
    """Standardize inputs, encode, decode; ``forward`` gives logits, ``reconstruct`` images."""

    def __init__(self, encoder: nn.Module, decoder: ImageDecoder) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        shape = tuple(encoder.in_shape)
        self.register_buffer("in_mean", torch.zeros(shape))
        self.register_buffer("in_std", torch.ones(shape))

    def fit_input_stats(self, x: torch.Tensor) -> None:
        """Standardize with the per-feature mean and std of the training inputs."""
        with torch.no_grad():
            self.in_mean.copy_(x.mean(0))
            self.in_std.copy_(x.std(0).clamp_min(1e-4) if len(x) > 1 else torch.ones_like(x[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder((x - self.in_mean) / self.in_std))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, batch_size: int = 512) -> np.ndarray:
        """Images ``(N, C, H, W)`` in ``[0, 1]`` (numpy) for feature batches ``x``."""
        self.eval()
        dev = self.in_mean.device
        out = [torch.sigmoid(self(x[s:s + batch_size].to(dev))).cpu() for s in range(0, len(x), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, *self.decoder.out_shape), np.float32)
