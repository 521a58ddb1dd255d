"""The transmission format: what the scrambled images become on their way to the cloud.

* ``float32``: the tensor as it is (model-serving endpoints: KServe V2, Triton, a torch module);
* ``png8``: 8-bit pixels (a PNG is lossless, so this is exactly rounding to 1/255 steps);
* ``jpeg:Q``: each image JPEG-encoded at quality Q (1..100, Pillow, 4:2:0) and decoded, as an
  image API that takes JPEG uploads would see it.

The format is a setting of the scheme: ``owsd run --transmit`` records it in the results
(``transmitted``) and it is part of the cloud-output cache key.

Example:
    >>> import torch
    >>> x = torch.full((1, 3, 4, 4), 0.5013)
    >>> round(float(transmit(x, "png8")[0, 0, 0, 0]) * 255, 4), parse_format("jpeg:75")
    (128.0, ('jpeg', 75))
"""

from __future__ import annotations

import io

import numpy as np
import torch


def parse_format(fmt: str) -> tuple[str, int]:
    """``(kind, quality)`` of ``float32``, ``png8`` or ``jpeg:Q``; a ``ValueError`` otherwise."""
    if fmt in ("float32", "png8"):
        return fmt, 0
    kind, _, q = str(fmt).partition(":")
    if kind == "jpeg" and q.isdigit() and 1 <= int(q) <= 100:
        return "jpeg", int(q)
    raise ValueError(f"transmission format must be float32, png8 or jpeg:Q (Q in 1..100), got {fmt!r}")


def transmit(images: torch.Tensor, fmt: str = "float32") -> torch.Tensor:
    """``images`` (float ``(N, C, H, W)`` in [0, 1]) as the cloud receives them in format ``fmt``."""
    kind, quality = parse_format(fmt)
    if kind == "float32":
        return images
    u8 = torch.round(images.detach().float().clamp(0, 1) * 255).to(torch.uint8)
    if kind == "png8":
        return u8.to(images.dtype) / 255.0
    from PIL import Image

    out = np.empty(tuple(u8.shape), np.uint8)
    for i, img in enumerate(u8.cpu().numpy()):
        pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert(pil.mode))
        out[i] = dec[None] if dec.ndim == 2 else dec.transpose(2, 0, 1)
    return torch.from_numpy(out).to(device=images.device, dtype=images.dtype) / 255.0
