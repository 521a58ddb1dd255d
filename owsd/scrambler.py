"""The scrambler: the deconvolution network a key defines (embedding in, image out).

Output is float32 in ``[0, 1]`` unless asked otherwise.  8-bit output rounds every pixel to
1/255 (an error of std 0.0011): for a spec whose signal is fainter than one grey level (the
``default`` preset puts 0.51 grey levels around its carrier) that erases most of it, so
:meth:`Scrambler.scramble` measures the signal (:meth:`Scrambler.signal_grey_levels`) and
issues a :class:`LossyOutputWarning` before quantizing it away.

Example:
    >>> import torch, warnings
    >>> from owsd.keys import generate_key
    >>> from owsd.presets import get_preset
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     key = generate_key(get_preset("linear"), seed=0)
    >>> s = Scrambler(key)
    >>> img = s(torch.randn(2, 64))
    >>> tuple(img.shape), bool(img.min() >= 0 and img.max() <= 1)
    ((2, 3, 224, 224), True)
"""

from __future__ import annotations

import logging
import warnings
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from owsd.keys import Key
from owsd.ops.affine import CollapsedStack, collapse_stack, collapse_worthwhile, collapsed_scramble
from owsd.query_noise import draw_query_noise
from owsd.validation import as_matrix

log = logging.getLogger(__name__)

GREY_LEVEL = 1.0 / 255.0


class LossyOutputWarning(UserWarning):
    """8-bit output of a signal fainter than one grey level: rounding erases most of it."""


def _check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def _fused_scramble():
    """The fastest available fused implementation (``owsd.ops``), else the reference."""
    try:  # local: the compiled front is optional (built on first use)
        from owsd.ops import fused_scramble
        return fused_scramble
    except ImportError:  # ops package without a compiled front (reference only)
        from owsd.ops.reference import fused_scramble_ref
        return fused_scramble_ref


COLLAPSE_MODES = ("auto", "always", "never")


class Scrambler(nn.Module):
    """Transposed-convolution network with the key's weights as (non-trainable) buffers.

    ``forward`` is differentiable with respect to its input (attacks need this).  A spec
    without activations is an affine map of the embedding; with ``collapse="auto"`` (the
    default) it is run as one matrix product (:mod:`owsd.ops.affine`, the matrix collapsed
    once per key, device and dtype, on first use) when
    :func:`~owsd.ops.affine.collapse_worthwhile` says so for the spec (``default``,
    ``deep-linear``).  The choice depends on the spec alone, never on the batch or on what
    the scrambler saw before, so the same key gives the same bits however its traffic is
    batched or resumed (a spec with query noise: the same exact map, plus the noise of each
    call).  The collapse costs about one batch of ``embedding_dim`` images in
    float64: code that draws many throw-away keys (attack controls) passes
    ``collapse="never"``; ``"always"`` forces it; ``impl="ref"`` always runs the
    layer-by-layer reference.
    """

    def __init__(self, key: Key, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, impl: Optional[str] = None, collapse: str = "auto",
                 query_noise: bool = True) -> None:
        super().__init__()
        if collapse not in COLLAPSE_MODES:
            raise ValueError(f"collapse must be one of {COLLAPSE_MODES}, got {collapse!r}")
        self.spec = key.spec
        self.fingerprint = key.fingerprint
        self.impl = impl
        self.collapse = collapse
        self.noise_scale = float(key.spec.query_noise) if query_noise else 0.0
        self._collapsed: Optional[CollapsedStack] = None
        for i, w in enumerate(key.weights(dtype=dtype)):
            self.register_buffer(f"weight{i}", w.to(device))
        for i, b in enumerate(key.biases(dtype=dtype)):
            self.register_buffer(f"bias{i}", None if b is None else b.to(device))
        carrier = key.carrier(dtype=dtype)
        self.register_buffer("carrier", None if carrier is None else carrier.to(device))

    def __repr__(self) -> str:
        return f"Scrambler(spec={self.spec.name!r}, key={self.fingerprint})"

    @property
    def weights(self) -> list[torch.Tensor]:
        return [getattr(self, f"weight{i}") for i in range(len(self.spec.layers))]

    @property
    def biases(self) -> list[Optional[torch.Tensor]]:
        return [getattr(self, f"bias{i}") for i in range(len(self.spec.layers))]

    @property
    def device(self) -> torch.device:
        return self.weight0.device

    def forward(self, embeddings: torch.Tensor, *, out_dtype: torch.dtype = torch.float32,
                out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Scramble ``(N, embedding_dim)`` embeddings into ``(N, 3, H, W)`` images in ``[0, 1]``.

        ``out``: a contiguous ``(N, 3, H, W)`` tensor of ``out_dtype`` to write the images into
        (returned; not differentiable).  A client that scrambles batch after batch into one
        buffer skips the first-touch page faults of a fresh 602 KB an image (as much time as
        the product itself on the 2-core VM of issue 17).
        """
        if embeddings.ndim != 2 or embeddings.shape[1] != self.spec.embedding_dim:
            raise ValueError(f"embeddings: expected shape (N, {self.spec.embedding_dim}), "
                             f"got {tuple(embeddings.shape)}")
        if out is not None and (tuple(out.shape) != (embeddings.shape[0], *self.spec.output_shape())
                                or out.dtype != out_dtype):
            raise ValueError(f"out: expected a {out_dtype} tensor of shape "
                             f"{(embeddings.shape[0], *self.spec.output_shape())}, got {out.dtype} {tuple(out.shape)}")
        if self.noise_scale:
            embeddings = embeddings.to(self.weight0.dtype)
            embeddings = embeddings + draw_query_noise(embeddings, scale=self.noise_scale)
        levels = self.spec.quantize_levels
        if not levels:
            return self._scramble_exact(embeddings, out_dtype=out_dtype, out=out)
        img = self._scramble_exact(embeddings, out_dtype=self.weight0.dtype, out=None)
        steps = levels - 1
        img = img + (torch.round(img.clamp(0, 1) * steps) / steps - img).detach()  # straight-through
        img = img.to(out_dtype) if out_dtype.is_floating_point else torch.round(img * 255).to(out_dtype)
        return img if out is None else out.copy_(img)

    def _scramble_exact(self, embeddings: torch.Tensor, *, out_dtype: torch.dtype,
                        out: Optional[torch.Tensor]) -> torch.Tensor:
        """The key's map of ``embeddings`` (no query noise), into ``out`` when given."""
        stack = self._collapsed_stack()
        if stack is not None:
            return collapsed_scramble(embeddings.to(self.weight0.dtype), stack, normalization=self.spec.normalization,
                                      gain=float(self.spec.gain), carrier=self.carrier, out_dtype=out_dtype,
                                      impl=self.impl or "auto", out=out)
        if out is not None:
            return out.copy_(self._scramble_exact(embeddings, out_dtype=out_dtype, out=None))
        x = embeddings.to(self.weight0.dtype).reshape(-1, *self.spec.input_shape)
        lays = self.spec.layers
        kwargs = dict(strides=[l.stride for l in lays], paddings=[l.padding for l in lays],
                      output_paddings=[l.output_padding for l in lays],
                      activations=[l.activation for l in lays], normalization=self.spec.normalization,
                      gain=float(self.spec.gain), carrier=self.carrier, out_dtype=out_dtype)
        fn = _fused_scramble()
        if self.impl is not None and fn.__name__ != "fused_scramble_ref":
            kwargs["impl"] = self.impl
        return fn(x, self.weights, self.biases, **kwargs)

    def uses_collapse(self) -> bool:
        """Whether this scrambler runs as one collapsed matrix product (a property of the spec)."""
        if self.collapse == "never" or self.impl == "ref":
            return False
        if any(layer.activation != "none" for layer in self.spec.layers):
            return False
        if self.collapse == "always":
            return True
        return collapse_worthwhile(input_shape=self.spec.input_shape, weights=self.weights,
                                   strides=[layer.stride for layer in self.spec.layers],
                                   out_numel=int(np.prod(self.spec.output_shape())))

    def _collapsed_stack(self) -> Optional[CollapsedStack]:
        if not self.uses_collapse():
            return None
        st = self._collapsed
        if st is None or st.matrix.device != self.device or st.matrix.dtype != self.weight0.dtype:
            lays = self.spec.layers
            st = collapse_stack(self.weights, self.biases, strides=[layer.stride for layer in lays],
                                paddings=[layer.padding for layer in lays],
                                output_paddings=[layer.output_padding for layer in lays],
                                input_shape=self.spec.input_shape, dtype=self.weight0.dtype)
            self._collapsed = st
            log.debug("scrambler %s: collapsed into a %s matrix (%.1f MB)", self.fingerprint,
                      tuple(st.matrix.shape), st.nbytes / 1e6)
        return st

    def iter_batches(self, embeddings, *, batch_size: int = 64, verbose: bool = True,
                     out_dtype: torch.dtype = torch.float32) -> Iterator[torch.Tensor]:
        """Yield scrambled batches (never holds all images: 224x224 images are large)."""
        _check_batch_size(batch_size)
        e = torch.from_numpy(as_matrix(embeddings, name="embeddings", cols=self.spec.embedding_dim))
        with torch.no_grad():
            for s in tqdm(range(0, e.shape[0], batch_size), desc="scramble", disable=not verbose, unit="batch"):
                yield self(e[s:s + batch_size].to(self.device), out_dtype=out_dtype)

    def signal_grey_levels(self, embeddings, *, max_images: int = 16) -> float:
        """Median per-image std of the scrambled signal (image minus carrier), in grey levels.

        Measured in float32 on the first ``max_images`` embeddings; below 1.0, 8-bit output
        erases most of the signal.
        """
        e = torch.from_numpy(as_matrix(embeddings, name="embeddings", cols=self.spec.embedding_dim)[:max_images])
        if len(e) == 0:
            raise ValueError("embeddings: empty (0 rows): nothing to measure")
        with torch.no_grad():  # the key's exact map: neither query noise nor the channel's rounding
            img = self._scramble_exact(e.to(self.device), out_dtype=torch.float32, out=None).double()
        sig = img - self.carrier.double() if self.carrier is not None else img
        return float(sig.flatten(1).std(1).median()) / GREY_LEVEL

    def scramble(self, embeddings, *, batch_size: int = 64, verbose: bool = True,
                 out_dtype: torch.dtype = torch.float32) -> np.ndarray:
        """Scramble a whole array of embeddings; returns ``(N, 3, H, W)`` (float32 by default).

        ``out_dtype=torch.uint8`` warns (:class:`LossyOutputWarning`) when the signal is fainter
        than one grey level.  No rows in, no rows out.
        """
        _check_batch_size(batch_size)
        e = as_matrix(embeddings, name="embeddings", cols=self.spec.embedding_dim)
        if len(e) == 0:
            return np.zeros((0, *self.spec.output_shape()), dtype=torch.empty(0, dtype=out_dtype).numpy().dtype)
        if out_dtype == torch.uint8:
            levels = self.signal_grey_levels(e)
            if levels < 1.0:
                warnings.warn(f"8-bit output of spec {self.spec.name!r} erases most of its signal: the signal is "
                              f"{levels:.2f} grey levels (pixel std {levels * GREY_LEVEL:.4f}) and rounding adds "
                              f"an error of std {GREY_LEVEL / 12 ** 0.5:.4f}; use float32 output",
                              LossyOutputWarning, stacklevel=2)
        result = torch.empty((len(e), *self.spec.output_shape()), dtype=out_dtype)
        t = torch.from_numpy(e)
        on_cpu = self.device.type == "cpu"
        with torch.no_grad():  # each batch written straight into its rows of the result (no concatenation)
            for s in tqdm(range(0, len(e), batch_size), desc="scramble", disable=not verbose, unit="batch"):
                rows = result[s:s + batch_size]
                if on_cpu:
                    self(t[s:s + batch_size], out_dtype=out_dtype, out=rows)
                else:
                    rows.copy_(self(t[s:s + batch_size].to(self.device), out_dtype=out_dtype))
        return result.numpy()
