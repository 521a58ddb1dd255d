"""The scrambler: the deconvolution network a key defines (embedding in, image out).

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
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from owsd.keys import Key
from owsd.validation import as_matrix

log = logging.getLogger(__name__)


def _fused_scramble():
    """The fastest available fused implementation (``owsd.ops``), else the reference."""
    try:
        from owsd.ops import fused_scramble
        return fused_scramble
    except ImportError:  # ops package without a compiled front (reference only)
        from owsd.ops.reference import fused_scramble_ref
        return fused_scramble_ref


class Scrambler(nn.Module):
    """Transposed-convolution network with the key's weights as (non-trainable) buffers.

    ``forward`` is differentiable with respect to its input (attacks need this).
    """

    def __init__(self, key: Key, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, impl: Optional[str] = None) -> None:
        super().__init__()
        self.spec = key.spec
        self.fingerprint = key.fingerprint
        self.impl = impl
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

    def forward(self, embeddings: torch.Tensor, *, out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Scramble ``(N, embedding_dim)`` embeddings into ``(N, 3, H, W)`` images in ``[0, 1]``."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.spec.embedding_dim:
            raise ValueError(f"embeddings: expected shape (N, {self.spec.embedding_dim}), "
                             f"got {tuple(embeddings.shape)}")
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

    def iter_batches(self, embeddings, *, batch_size: int = 64, verbose: bool = True,
                     out_dtype: torch.dtype = torch.float32) -> Iterator[torch.Tensor]:
        """Yield scrambled batches (never holds all images: 224x224 images are large)."""
        e = torch.from_numpy(as_matrix(embeddings, name="embeddings", cols=self.spec.embedding_dim))
        with torch.no_grad():
            for s in tqdm(range(0, e.shape[0], batch_size), desc="scramble", disable=not verbose, unit="batch"):
                yield self(e[s:s + batch_size].to(self.device), out_dtype=out_dtype)

    def scramble(self, embeddings, *, batch_size: int = 64, verbose: bool = True,
                 out_dtype: torch.dtype = torch.uint8) -> np.ndarray:
        """Scramble a whole array of embeddings; returns ``(N, 3, H, W)`` (uint8 by default)."""
        return np.concatenate([b.cpu().numpy() for b in self.iter_batches(
            embeddings, batch_size=batch_size, verbose=verbose, out_dtype=out_dtype)])
