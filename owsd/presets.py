"""Named scrambler specs.

* ``default``: the design that worked best in the utility study (``docs/utility-study.md``):
  six random transposed-convolution layers without activations from a 64x1x1 embedding to
  224x224, per-image standardized to a faint signal (pixel std 0.002, about half a grey level)
  added to a key-derived 1/f noise texture (the ``texture`` carrier, std 0.15).  On the
  texture the cloud responds almost linearly to the faint signal, so its 1,000 outputs keep
  the embedding; the images must be sent as float32 (8-bit pixels erase the signal);
* ``grey-sigmoid``: the previous default: the same stack with leaky ReLUs and a sigmoid, i.e.
  mid-grey images of pixel std ~0.005 (the cloud at its most nonlinear operating point);
* ``linear``: one linear transposed-convolution layer, no activation, an invertible
  elementwise output map: the weak control every attack must break;
* ``small-signal``: the leaky-ReLU stack, per-image standardized to pixel std 0.05 around
  mid-grey;
* ``deep-linear``: the six-layer stack without activations, standardized to std 0.05 around
  mid-grey (worst in the study).

Example:
    >>> get_preset("default").output_shape()
    (3, 224, 224)
    >>> sorted(PRESETS)[:3]
    ['deep-linear', 'default', 'grey-sigmoid']
"""

from __future__ import annotations

from typing import Callable

from owsd.spec import LayerSpec, ScramblerSpec


def _six_layer(activation: str) -> tuple[LayerSpec, ...]:
    chans = (32, 16, 16, 8, 8, 3)
    first = LayerSpec(chans[0], 7, stride=1, activation=activation)
    rest = [LayerSpec(c, 4, stride=2, padding=1, activation=activation) for c in chans[1:]]
    rest[-1] = LayerSpec(3, 4, stride=2, padding=1, activation="none")
    return (first, *rest)


def _linear() -> ScramblerSpec:
    return ScramblerSpec(embedding_dim=64, input_shape=(16, 2, 2),
                         layers=(LayerSpec(3, 112, stride=112, activation="none"),),
                         normalization="sigmoid", gain=1.0, name="linear")


def _small_signal() -> ScramblerSpec:
    return ScramblerSpec(embedding_dim=64, input_shape=(64, 1, 1), layers=_six_layer("leaky_relu"),
                         normalization="standardize", gain=0.05, name="small-signal")


def _deep_linear() -> ScramblerSpec:
    return ScramblerSpec(embedding_dim=64, input_shape=(64, 1, 1), layers=_six_layer("none"),
                         normalization="standardize", gain=0.05, name="deep-linear")


def _grey_sigmoid() -> ScramblerSpec:
    return ScramblerSpec(embedding_dim=64, input_shape=(64, 1, 1), layers=_six_layer("leaky_relu"),
                         normalization="sigmoid", gain=1.0, name="grey-sigmoid")


def _default() -> ScramblerSpec:
    return ScramblerSpec(embedding_dim=64, input_shape=(64, 1, 1), layers=_six_layer("none"),
                         normalization="standardize", gain=0.002, carrier="texture", name="default")


PRESETS: dict[str, Callable[[], ScramblerSpec]] = {
    "default": _default,
    "grey-sigmoid": _grey_sigmoid,
    "linear": _linear,
    "small-signal": _small_signal,
    "deep-linear": _deep_linear,
}


def get_preset(name: str) -> ScramblerSpec:
    """The spec of a named preset (see :data:`PRESETS`)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None
