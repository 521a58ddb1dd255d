"""Channels: what turns the organization's images into what the cloud receives.

:class:`OwsdChannel` is the scheme (encoder, then the key's scrambler).  Any callable
``images -> scrambled images`` can be wrapped in :class:`CallableChannel`, so other
instance-encoding schemes can be attacked and audited with the same suite.

Example:
    >>> import numpy as np, torch
    >>> ch = CallableChannel(lambda x: x, name="identity-28")
    >>> ch.scramble_images(np.zeros((2, 1, 28, 28), np.uint8)).shape
    (2, 1, 28, 28)
"""

from __future__ import annotations

import abc
from typing import Callable, Optional

import numpy as np
import torch

from owsd.encoder import Encoder
from owsd.keys import Key
from owsd.scrambler import Scrambler
from owsd.validation import as_image_batch


class Channel(abc.ABC):
    """Images (uint8 or [0, 1] floats, ``(N, C, H, W)``) in, scrambled images out.

    ``transmit_uint8`` says what is sent to the cloud: uint8 pixels, or float32 tensors in
    [0, 1].  OWSD sends float32 (as ``owsd run`` does): its default key makes low-contrast
    images (pixel std about 0.005) whose information a uint8 quantization would mostly erase.
    Attacks see exactly what is sent.
    """

    name: str = "channel"
    #: whether scrambled images are sent as uint8 pixels (else float32 in [0, 1])
    transmit_uint8: bool = True

    @abc.abstractmethod
    def _scramble(self, images: torch.Tensor) -> torch.Tensor:
        """Scramble a validated float batch in [0, 1]; return floats in [0, 1]."""

    def scramble_images(self, images, *, batch_size: int = 128) -> np.ndarray:
        x = as_image_batch(images)
        out = []
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                y = self._scramble(x[s:s + batch_size]).float().clamp(0, 1)
                out.append(torch.round(y * 255).to(torch.uint8).numpy() if self.transmit_uint8 else y.numpy())
        return np.concatenate(out)

    @property
    def fingerprint(self) -> str:
        return self.name


class OwsdChannel(Channel):
    """The OWSD scheme: encoder, then the key's scrambler."""

    def __init__(self, key: Key, encoder: Encoder, *, device: str = "cpu", transmit_uint8: bool = False) -> None:
        self.key, self.encoder = key, encoder
        self.scrambler = Scrambler(key, device=device)
        self.name = f"owsd:{key.spec.name}"
        self.transmit_uint8 = transmit_uint8

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint

    def embed(self, images) -> np.ndarray:
        x = as_image_batch(images)
        return self.encoder.encode(x.reshape(len(x), -1).numpy())

    def scramble_embeddings(self, embeddings: np.ndarray, *, batch_size: int = 128,
                            uint8: Optional[bool] = None, query_noise: bool = True) -> np.ndarray:
        """Scramble embeddings as the client sends them; ``query_noise=False``: the key's exact map
        (what a key estimate is scored against: the client's fresh noise is not part of the key)."""
        u8 = self.transmit_uint8 if uint8 is None else uint8
        scr = self.scrambler
        if not query_noise and scr.noise_scale:
            scr = Scrambler(self.key, device=scr.device, query_noise=False)
        return scr.scramble(embeddings, batch_size=batch_size, verbose=False,
                            out_dtype=torch.uint8 if u8 else torch.float32)

    def _scramble(self, images: torch.Tensor) -> torch.Tensor:
        e = torch.from_numpy(self.embed(images)).to(self.scrambler.device)
        return self.scrambler(e).cpu()


class CallableChannel(Channel):
    """Any callable scrambler: float images in [0, 1] ``(N, C, H, W)`` -> images in [0, 1]."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], *, name: str, transmit_uint8: bool = True) -> None:
        self.fn, self.name, self.transmit_uint8 = fn, name, transmit_uint8

    def _scramble(self, images: torch.Tensor) -> torch.Tensor:
        y = self.fn(images)
        if not isinstance(y, torch.Tensor):
            y = torch.as_tensor(np.asarray(y))
        if y.ndim != 4 or y.shape[0] != images.shape[0]:
            raise ValueError(f"scrambler {self.name!r} returned shape {tuple(y.shape)} for a batch of "
                             f"{images.shape[0]}; expected (N, C, H, W)")
        if not torch.isfinite(y).all():
            raise ValueError(f"scrambler {self.name!r} returned NaN or infinite values")
        return y
