"""Shared inputs of the owsd.ops tests: seeded random tensors and layer stacks."""

from __future__ import annotations

import torch

SMALL = [(4, 6, 3, 1, 0, 0), (6, 5, 4, 2, 1, 0), (5, 4, 4, 2, 1, 1), (4, 3, 3, 1, 1, 0)]  # 1 -> 3 -> 6 -> 13 -> 13
STRIDE3 = [(3, 4, 3, 1, 0, 0), (4, 3, 5, 3, 1, 2)]  # generic (scalar) path along W
DEFAULT_224 = [(64, 32, 7, 1, 0, 0), (32, 16, 4, 2, 1, 0), (16, 16, 4, 2, 1, 0), (16, 8, 4, 2, 1, 0),
               (8, 8, 4, 2, 1, 0), (8, 3, 4, 2, 1, 0)]


def rand(shape, dtype, device="cpu", scale=1.0, gen=None) -> torch.Tensor:
    """Seeded normal tensor drawn on the CPU (same values on every device), then moved."""
    return torch.randn(*shape, dtype=dtype, generator=gen).mul_(scale).to(device)


def stack(cfg, dtype=torch.float32, device="cpu", seed=0, bias_every=1):
    """cfg: list of (cin, cout, k, s, p, op); weights scaled by 1/sqrt(fan_in). Returns (ws, bs, geometry)."""
    g = torch.Generator().manual_seed(seed)
    ws, bs = [], []
    for i, (ci, co, k, s, p, op) in enumerate(cfg):
        ws.append(rand((ci, co, k, k), dtype, device, (ci * k * k / (s * s)) ** -0.5, g))
        bs.append(rand((co,), dtype, device, 0.1, g) if i % bias_every == 0 else None)
    kw = dict(strides=[c[3] for c in cfg], paddings=[c[4] for c in cfg], output_paddings=[c[5] for c in cfg])
    return ws, bs, kw


def assert_uint8_close(got: torch.Tensor, want: torch.Tensor) -> None:
    """uint8 images may differ by one level at rounding ties only."""
    assert got.dtype == torch.uint8 and got.shape == want.shape
    diff = (got.int() - want.int()).abs()
    assert diff.max().item() <= 1, "uint8 outputs differ by more than one level"
    assert diff.float().mean().item() < 1e-3, "too many off-by-one uint8 levels (rounding ties only expected)"
