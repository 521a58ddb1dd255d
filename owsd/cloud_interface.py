"""How a cloud model wants its input and gives its output: :class:`CloudInterface`.

A model of your own (an ONNX file, a torch module, a served endpoint) takes images of some
size, in some channel order and layout, scaled and normalized its own way, and returns logits
or probabilities.  :class:`CloudInterface` holds those settings, from flags or from a small
JSON beside the model (``model.json`` or ``model.onnx.json``)::

    {"input_size": [224, 224], "layout": "NCHW", "channel_order": "RGB", "scale": 255,
     "mean": [123.7, 116.3, 103.5], "std": [58.4, 57.1, 57.4], "output": "logits"}

and turns the scrambled images (float32 ``(N, 3, H, W)`` in [0, 1]) into the model's input:
``(x * scale - mean) / std``, channels reordered, transposed to the layout.

Example:
    >>> import torch
    >>> ci = CloudInterface(scale=255, mean=(127.0,) * 3, std=(128.0,) * 3, channel_order="BGR")
    >>> ci.preprocess(torch.ones(1, 3, 2, 2)).shape, float(ci.preprocess(torch.ones(1, 3, 1, 1))[0, 0, 0, 0])
    (torch.Size([1, 3, 2, 2]), 1.0)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
OUTPUTS = ("logits", "probabilities")


@dataclass(frozen=True)
class CloudInterface:
    """Input size, layout, channel order, scale, mean/std and output kind of a cloud model."""

    input_size: Optional[tuple[int, int]] = None
    layout: str = "NCHW"
    channel_order: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    output: str = "logits"

    def __post_init__(self) -> None:
        fix = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        if self.input_size is not None:
            size = (self.input_size,) * 2 if isinstance(self.input_size, int) else tuple(self.input_size)
            if len(size) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 8192 for v in size):
                raise ValueError(f"input_size must be [H, W] (positive integers), got {self.input_size!r}")
            fix("input_size", size)
        for k, allowed in (("layout", LAYOUTS), ("channel_order", CHANNEL_ORDERS), ("output", OUTPUTS)):
            v = getattr(self, k)
            if not isinstance(v, str) or v.upper() not in {a.upper() for a in allowed}:
                raise ValueError(f"{k} must be one of {allowed}, got {v!r}")
            fix(k, next(a for a in allowed if a.upper() == v.upper()))
        for k in ("mean", "std"):
            v = getattr(self, k)
            vals = (v,) * 3 if isinstance(v, (int, float)) else tuple(v)
            if len(vals) == 1:
                vals = vals * 3
            if len(vals) != 3 or any(not isinstance(x, (int, float)) or isinstance(x, bool) for x in vals):
                raise ValueError(f"{k} must be one number or three (per channel), got {v!r}")
            if k == "std" and min(vals) <= 0:
                raise ValueError(f"std must be positive, got {v!r}")
            fix(k, tuple(float(x) for x in vals))
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool) or self.scale <= 0:
            raise ValueError(f"scale must be a positive number (1 for [0, 1] pixels, 255 for 0..255), got {self.scale!r}")
        fix("scale", float(self.scale))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Scrambled images ``(N, 3, H, W)`` in [0, 1] -> the model's input tensor (float32)."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        y = (x * self.scale - mean) / std
        if self.channel_order == "BGR":
            y = y.flip(1)
        return y.permute(0, 2, 3, 1).contiguous() if self.layout == "NHWC" else y

    def tag(self) -> str:
        """Canonical text of the settings (part of the cloud's cache key)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def replace(self, **overrides: Any) -> "CloudInterface":
        """These settings with ``overrides`` (``None`` values ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_json(cls, path: str | Path) -> "CloudInterface":
        """Settings from a JSON file; unknown keys are refused (a typo would silently do nothing)."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected a JSON object of cloud settings")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - known - {"name", "comment"})
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {unknown}; expected some of {sorted(known)}")
        try:
            return cls(**{k: v for k, v in doc.items() if k in known})
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    def model_dims(self, shape: Sequence[Any]) -> tuple[Any, Any, Any]:
        """``(C, H, W)`` of a model input shape ``(N, ...)`` under this layout (``None`` where dynamic)."""
        dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
        if len(dims) != 4:
            raise ValueError(f"the model's input has shape {list(shape)}; expected 4 dimensions ({self.layout})")
        return (dims[1], dims[2], dims[3]) if self.layout == "NCHW" else (dims[3], dims[1], dims[2])

    def resolve_size(self, shape: Sequence[Any], *, where: str) -> tuple[int, int]:
        """The input size from the model's input ``shape`` and these settings; what mismatches is said."""
        c, h, w = self.model_dims(shape)
        if c is not None and c != 3:
            other = "NHWC" if self.layout == "NCHW" else "NCHW"
            raise ValueError(f"{where}: its input {list(shape)} has {c} channels under layout {self.layout}; the "
                             f"scrambled images have 3 (is the model {other}? set layout)")
        if h is not None and w is not None:
            if self.input_size is not None and self.input_size != (h, w):
                raise ValueError(f"{where}: the model takes {h}x{w} images (input {list(shape)}) but the settings "
                                 f"say input_size {self.input_size[0]}x{self.input_size[1]}")
            return h, w
        if self.input_size is None:
            raise ValueError(f"{where}: the model's input size is dynamic ({list(shape)}); set input_size "
                             "(--cloud-input-size or the JSON beside the model)")
        return self.input_size


def sidecar(model: str | Path) -> Optional[Path]:
    """The settings JSON beside a model file (``model.json`` or ``model.onnx.json``), if any."""
    model = Path(model)
    for cand in (model.with_suffix(".json"), model.with_name(model.name + ".json")):
        if cand.is_file():
            return cand
    return None


def load_interface(model: Optional[str | Path] = None, *, config: Optional[str | Path] = None,
                   **overrides: Any) -> CloudInterface:
    """Settings for ``model``: ``config`` (or the JSON beside it), then ``overrides`` (flags) on top."""
    path = Path(config) if config is not None else (sidecar(model) if model is not None else None)
    base = CloudInterface.from_json(path) if path is not None else CloudInterface()
    return base.replace(**overrides)
