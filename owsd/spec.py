"""Scrambler specifications: the public architecture of a key, as data.

A :class:`ScramblerSpec` is a frozen dataclass that round-trips through JSON, so new
scrambling kernels can be designed, shared and audited without code.  The secret is not
part of the spec: it lives in the key (:mod:`owsd.keys`).

Specs come from untrusted files, so :meth:`ScramblerSpec.validate` bounds everything that
costs memory or time (:data:`LIMITS`: layers, channels, kernel and stride, spatial size,
activations per image, secret weights) before a weight is drawn, and a spec file is read
with a size and nesting limit (:data:`MAX_SPEC_BYTES`, :mod:`owsd.safejson`).

Example:
    >>> spec = ScramblerSpec(embedding_dim=16, input_shape=(16, 1, 1),
    ...                      layers=(LayerSpec(3, 4, stride=1),), normalization="sigmoid")
    >>> spec.output_shape()
    (3, 4, 4)
    >>> ScramblerSpec.from_json(spec.to_json()) == spec
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owsd.io import atomic_write_text
from owsd.ops.reference import ACTIVATIONS, NORMALIZATIONS
from owsd.safejson import loads, read_text

CARRIERS = ("none", "key", "texture")
"""Offset an image is built around: ``none`` (mid-grey 0.5) or ``key`` (a smooth key-derived image)."""

SPEC_FORMAT = "owsd-scrambler-spec"
MAX_SPEC_BYTES = 1 << 20

LIMITS = {
    "layers": 32,                # transposed-convolution layers
    "channels": 4096,            # out_channels of a layer, and C0 of input_shape
    "kernel_size": 1024,
    "stride": 1024,
    "padding": 1024,
    "embedding_dim": 1 << 20,
    "side": 8192,                # height or width of any layer's output (and of the input)
    "activations": 1 << 26,      # values of one image at any layer (256 MiB as float32)
    "parameters": 1 << 27,       # secret weights and biases (512 MiB as float32)
    "name": 200,                 # characters of the spec's name
}
"""Upper bounds a spec must respect (far above every preset; a spec beyond them is refused)."""


class SpecError(ValueError):
    """A scrambler spec is malformed or inconsistent."""


def _short(v: Any, limit: int = 60) -> str:
    """``repr(v)`` cut to ``limit`` characters (error messages quote untrusted values)."""
    try:
        r = repr(v)
    except (ValueError, RecursionError):  # an int of more than 4,300 digits, say
        r = f"<{type(v).__name__}>"
    return r if len(r) <= limit else r[:limit - 3] + "..."


@dataclass(frozen=True)
class LayerSpec:
    """One transposed-convolution layer of a scrambler."""

    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    activation: str = "none"
    bias: bool = False

    def validate(self, index: int) -> None:
        where = f"layer {index}"
        for name in ("out_channels", "kernel_size", "stride"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"{where}: {name} must be a positive integer, got {_short(v)}")
        for name in ("padding", "output_padding"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise SpecError(f"{where}: {name} must be a non-negative integer, got {_short(v)}")
        for name, limit in (("out_channels", LIMITS["channels"]), ("kernel_size", LIMITS["kernel_size"]),
                            ("stride", LIMITS["stride"]), ("padding", LIMITS["padding"])):
            if getattr(self, name) > limit:
                raise SpecError(f"{where}: {name} {getattr(self, name)} exceeds the limit of {limit}")
        if self.output_padding >= self.stride:
            raise SpecError(f"{where}: output_padding ({self.output_padding}) must be smaller than stride ({self.stride})")
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise SpecError(f"{where}: activation {_short(self.activation)} not in {ACTIVATIONS}")
        if not isinstance(self.bias, bool):
            raise SpecError(f"{where}: bias must be true or false, got {_short(self.bias)}")

    def output_size(self, size: int) -> int:
        """Spatial output size for an input of spatial size ``size``."""
        return (size - 1) * self.stride - 2 * self.padding + self.kernel_size + self.output_padding


@dataclass(frozen=True)
class ScramblerSpec:
    """The public architecture of a scrambler (everything but the secret).

    Attributes:
        embedding_dim: length of the embedding the scrambler consumes.
        input_shape: ``(C0, H0, W0)`` the embedding is reshaped to; product == embedding_dim.
        layers: the transposed-convolution stack.
        normalization: final map to ``[0, 1]`` (see :data:`owsd.ops.reference.NORMALIZATIONS`).
        gain: contrast of the normalized image (standardize: std of the image around its offset).
        carrier: the image the normalized signal is added to: ``none`` (mid-grey 0.5),
            ``key`` (a smooth image derived from the key) or ``texture`` (a 1/f noise
            texture derived from the key; see :meth:`owsd.keys.Key.carrier`).
        weight_scale: multiplier on the variance-preserving weight initialization.
        query_noise: std of fresh standard normal noise added to every embedding (unit variance
            per coordinate) before it is scrambled, drawn anew for every query
            (:mod:`owsd.query_noise`); 0 (the default) is the deterministic scheme.
        quantize_levels: grey levels of the transmitted image (256: the client sends 8-bit
            pixels; fewer: a coarser channel); 0 (the default) sends float32.
        name: a label for reports.
    """

    embedding_dim: int
    input_shape: tuple[int, int, int]
    layers: tuple[LayerSpec, ...]
    normalization: str = "standardize"
    gain: float = 0.25
    carrier: str = "none"
    weight_scale: float = 1.0
    query_noise: float = 0.0
    quantize_levels: int = 0
    name: str = "custom"

    def __post_init__(self) -> None:
        if not isinstance(self.input_shape, (list, tuple)):
            raise SpecError(f"input_shape must be three positive integers (C, H, W), got {_short(self.input_shape)}")
        if not isinstance(self.layers, (list, tuple)):
            raise SpecError(f"layers must be a list of layer objects, got {type(self.layers).__name__}")
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        if isinstance(self.query_noise, int) and not isinstance(self.query_noise, bool):
            object.__setattr__(self, "query_noise", float(self.query_noise))  # 1 and 1.0: one spec, one JSON
        try:
            object.__setattr__(self, "layers", tuple(
                LayerSpec(**lay) if isinstance(lay, dict) else lay for lay in self.layers))
        except TypeError as exc:
            raise SpecError(f"malformed layer: {exc}") from None
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SpecError` naming the first problem found (limits: :data:`LIMITS`)."""
        if not isinstance(self.embedding_dim, int) or isinstance(self.embedding_dim, bool) or self.embedding_dim < 1:
            raise SpecError(f"embedding_dim must be a positive integer, got {_short(self.embedding_dim)}")
        if self.embedding_dim > LIMITS["embedding_dim"]:
            raise SpecError(f"embedding_dim {self.embedding_dim} exceeds the limit of {LIMITS['embedding_dim']}")
        if len(self.input_shape) != 3 or any(not isinstance(v, int) or isinstance(v, bool) or v < 1
                                             for v in self.input_shape):
            raise SpecError(f"input_shape must be three positive integers (C, H, W), got {_short(self.input_shape)}")
        if self.input_shape[0] > LIMITS["channels"] or max(self.input_shape[1:]) > LIMITS["side"]:
            raise SpecError(f"input_shape {self.input_shape} exceeds the limits ({LIMITS['channels']} channels, "
                            f"side {LIMITS['side']})")
        if math.prod(self.input_shape) != self.embedding_dim:
            raise SpecError(f"input_shape {self.input_shape} holds {math.prod(self.input_shape)} values, "
                            f"but embedding_dim is {self.embedding_dim}")
        if not self.layers:
            raise SpecError("a scrambler needs at least one layer")
        if len(self.layers) > LIMITS["layers"]:
            raise SpecError(f"{len(self.layers)} layers exceed the limit of {LIMITS['layers']}")
        for i, lay in enumerate(self.layers):
            if not isinstance(lay, LayerSpec):
                raise SpecError(f"layer {i}: expected a LayerSpec or dict, got {type(lay).__name__}")
            lay.validate(i)
        if not isinstance(self.normalization, str) or self.normalization not in NORMALIZATIONS:
            raise SpecError(f"normalization {_short(self.normalization)} not in {NORMALIZATIONS}")
        if not isinstance(self.carrier, str) or self.carrier not in CARRIERS:
            raise SpecError(f"carrier {_short(self.carrier)} not in {CARRIERS}")
        if not isinstance(self.name, str) or len(self.name) > LIMITS["name"]:
            raise SpecError(f"name must be a string of at most {LIMITS['name']} characters, got {_short(self.name)}")
        if self.carrier != "none" and self.normalization != "standardize":
            raise SpecError(f"carrier={self.carrier!r} needs normalization='standardize'")
        for name in ("gain", "weight_scale"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise SpecError(f"{name} must be a positive finite number, got {_short(v)}")
        q = self.query_noise
        if not isinstance(q, (int, float)) or isinstance(q, bool) or not math.isfinite(q) or not 0 <= q <= 1000:
            raise SpecError(f"query_noise must be a number in [0, 1000], got {_short(q)}")
        lv = self.quantize_levels
        if not isinstance(lv, int) or isinstance(lv, bool) or not (lv == 0 or 2 <= lv <= 65536):
            raise SpecError(f"quantize_levels must be 0 (float32) or an integer in [2, 65536], got {_short(lv)}")
        h, w = self.input_shape[1:]
        for i, lay in enumerate(self.layers):
            h, w = lay.output_size(h), lay.output_size(w)
            if h < 1 or w < 1:
                raise SpecError(f"layer {i}: spatial size collapses to {h}x{w}")
            if max(h, w) > LIMITS["side"] or lay.out_channels * h * w > LIMITS["activations"]:
                raise SpecError(f"layer {i}: output {lay.out_channels}x{h}x{w} exceeds the limits (side "
                                f"{LIMITS['side']}, {LIMITS['activations']:,} values an image)")
        if self.num_parameters() > LIMITS["parameters"]:
            raise SpecError(f"{self.num_parameters():,} secret weights exceed the limit of {LIMITS['parameters']:,}")
        if self.layers[-1].out_channels != 3:
            raise SpecError(f"the last layer must output 3 channels (an RGB image), got {self.layers[-1].out_channels}")

    def output_shape(self) -> tuple[int, int, int]:
        """``(3, H, W)`` of the scrambled image."""
        c, h, w = self.input_shape
        for lay in self.layers:
            c, h, w = lay.out_channels, lay.output_size(h), lay.output_size(w)
        return (c, h, w)

    def channels(self) -> list[int]:
        """Channel count before each layer and after the last."""
        return [self.input_shape[0]] + [lay.out_channels for lay in self.layers]

    def num_parameters(self) -> int:
        """Number of secret weights (and biases) the key determines."""
        n, cin = 0, self.input_shape[0]
        for lay in self.layers:
            n += cin * lay.out_channels * lay.kernel_size ** 2 + (lay.out_channels if lay.bias else 0)
            cin = lay.out_channels
        return n

    def is_linear(self) -> bool:
        """True when every layer has no activation (the map to the pre-normalization image is linear)."""
        return all(lay.activation == "none" for lay in self.layers)

    # --- serialization ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON data; ``query_noise`` and ``quantize_levels`` only when not 0 (the specs
        without them keep the JSON, and so the key fingerprints and caches, they had before)."""
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        for optional in ("query_noise", "quantize_levels"):
            if not d[optional]:
                del d[optional]
        return {"format": SPEC_FORMAT, "version": 1, **d}

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): equal specs give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScramblerSpec":
        if not isinstance(d, dict):
            raise SpecError(f"a spec must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        fmt = d.pop("format", SPEC_FORMAT)
        if fmt != SPEC_FORMAT:
            raise SpecError(f"not a scrambler spec: format is {_short(fmt)}, expected {SPEC_FORMAT!r}")
        version = d.pop("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version != 1:
            raise SpecError(f"unsupported spec version {_short(version)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"unknown spec field(s) {_short(unknown)}; known: {sorted(known)}")
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.name not in d)
        if missing:
            raise SpecError(f"missing spec field(s) {missing}")
        layer_fields = {f.name for f in dataclasses.fields(LayerSpec)}
        layers = d.get("layers")
        if not isinstance(layers, list):
            raise SpecError("layers must be a list of layer objects")
        if len(layers) > LIMITS["layers"]:
            raise SpecError(f"{len(layers)} layers exceed the limit of {LIMITS['layers']}")
        for i, lay in enumerate(layers):
            if not isinstance(lay, dict):
                raise SpecError(f"layer {i}: expected an object, got {type(lay).__name__}")
            bad = sorted(set(lay) - layer_fields)
            if bad:
                raise SpecError(f"layer {i}: unknown field(s) {_short(bad)}; known: {sorted(layer_fields)}")
        try:
            d["layers"] = tuple(LayerSpec(**lay) for lay in layers)
            return cls(**d)
        except TypeError as exc:
            raise SpecError(f"malformed spec: {exc}") from exc

    @classmethod
    def from_json(cls, text: str, *, source: str = "spec") -> "ScramblerSpec":
        return cls.from_dict(loads(text, source=source, error=SpecError))

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ScramblerSpec":
        """Read a spec file (at most :data:`MAX_SPEC_BYTES`); every problem is a :class:`SpecError`."""
        path = Path(path)
        text = read_text(path, max_bytes=MAX_SPEC_BYTES, what="spec file", error=SpecError)
        try:
            return cls.from_json(text, source=str(path))
        except SpecError as exc:
            msg = str(exc)
            raise SpecError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
