"""Checks of an encoder ``.npz`` before it is used: header fields, array shapes, sizes, finiteness.

An encoder file comes from the user (``owsd scramble --encoder FILE``), so every field is
verified against what the encoder kind needs before a network is built: dimensions within
:data:`ENCODER_LIMITS`, each array of the right shape and a finite float dtype, an
autoencoder's parameters matching its layer sizes (which :mod:`owsd.encoder` computes on the
``meta`` device: nothing is allocated).  Every failure is one ``ValueError`` naming the file
and the field.

Example:
    >>> import numpy as np, json
    >>> h = np.frombuffer(json.dumps({"format": "f", "kind": "pca", "dim": 2, "input_dim": 3}).encode(), np.uint8)
    >>> read_header({"header": h}, source="e.npz", format_="f")["dim"]
    2
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from owsd.safejson import loads

ENCODER_LIMITS = {"dim": 1 << 20, "input_dim": 1 << 24, "hidden_layers": 8, "width": 1 << 16,
                  "parameters": 1 << 27}
KINDS = ("pca", "autoencoder")


def _pos_int(header: dict, name: str, limit: int, source: str) -> int:
    v = header.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= limit:
        raise ValueError(f"{source}: encoder header field {name!r} must be an integer in 1..{limit}, "
                         f"got {str(v)[:40]}")
    return v


def read_header(z: dict, *, source: str, format_: str) -> dict:
    """The JSON header stored as uint8 bytes in the ``header`` array, checked field by field."""
    raw = z.pop("header", None)
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > 1 << 16:
        raise ValueError(f"{source}: not an owsd encoder file (no valid header)")
    try:
        text = raw.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{source}: not an owsd encoder file (header is not UTF-8)") from None
    header = loads(text, source=f"{source} header", max_depth=8)
    if not isinstance(header, dict) or header.get("format") != format_:
        raise ValueError(f"{source}: not an owsd encoder file (format must be {format_!r})")
    if header.get("kind") not in KINDS:
        raise ValueError(f"{source}: unknown encoder kind {str(header.get('kind'))[:40]!r}; "
                         f"expected one of {KINDS}")
    _pos_int(header, "dim", ENCODER_LIMITS["dim"], source)
    _pos_int(header, "input_dim", ENCODER_LIMITS["input_dim"], source)
    if header["kind"] == "autoencoder":
        hidden = header.get("hidden")
        if not isinstance(hidden, list) or len(hidden) > ENCODER_LIMITS["hidden_layers"] or any(
                not isinstance(h, int) or isinstance(h, bool) or not 1 <= h <= ENCODER_LIMITS["width"]
                for h in hidden):
            raise ValueError(f"{source}: encoder header field 'hidden' must be a list of at most "
                             f"{ENCODER_LIMITS['hidden_layers']} widths in 1..{ENCODER_LIMITS['width']}")
        sizes = [header["input_dim"], *hidden, header["dim"]]
        n = 2 * sum(a * b + b for a, b in zip(sizes, sizes[1:]))
        if n > ENCODER_LIMITS["parameters"]:
            raise ValueError(f"{source}: an autoencoder of {n:,} parameters exceeds the limit of "
                             f"{ENCODER_LIMITS['parameters']:,}")
    return header


def _array(z: dict, name: str, shape: tuple, source: str) -> np.ndarray:
    a = z.get(name)
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{source}: encoder file lacks array {name!r}")
    if a.dtype.kind != "f":
        raise ValueError(f"{source}: encoder array {name!r} must be floating point, got {a.dtype}")
    if a.shape != tuple(shape):
        raise ValueError(f"{source}: encoder array {name!r} has shape {a.shape}, expected {tuple(shape)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{source}: encoder array {name!r} holds NaN or infinite values")
    return a


def check_arrays(header: dict, z: dict, *, source: str, parameter_shapes: Optional[dict] = None) -> None:
    """Every array the encoder kind needs, with the shape its header implies.

    ``parameter_shapes``: for an autoencoder, ``{name: shape}`` of its network's parameters
    (from :mod:`owsd.encoder`, which builds the network; this module imports no network).
    """
    dim, input_dim = header["dim"], header["input_dim"]
    _array(z, "code_mean", (dim,), source)
    if (_array(z, "code_std", (dim,), source) <= 0).any():
        raise ValueError(f"{source}: encoder array 'code_std' must be positive")
    if header["kind"] == "pca":
        _array(z, "mean", (input_dim,), source)
        _array(z, "components", (dim, input_dim), source)
        return
    if parameter_shapes is None:
        raise TypeError("check_arrays: an autoencoder needs its parameter_shapes")
    want = {f"param.{k}": tuple(v) for k, v in parameter_shapes.items()}
    have = {k for k in z if k.startswith("param.")}
    if have != set(want):
        missing, extra = sorted(set(want) - have), sorted(have - set(want))
        raise ValueError(f"{source}: autoencoder parameters do not match its layers (missing {missing[:3]}, "
                         f"unexpected {extra[:3]})")
    for k, shape in want.items():
        _array(z, k, shape, source)

