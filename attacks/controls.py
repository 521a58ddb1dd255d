"""Control targets: scramblers every attack must break, and ones it must not.

* :func:`identity_victim` (positive control): the image itself, resized to the cloud's size;
* :func:`permutation_victim` (positive control): a fixed secret permutation of pixels;
* :func:`fresh_key_victim` (negative control): every image scrambled under a fresh random
  key of the same spec (no fixed key to estimate);
* :func:`noise_victim` (negative control): fresh noise independent of the input.

The OWSD ``linear`` preset (:func:`owsd.presets.get_preset`) is the weak OWSD control.

Example:
    >>> v = identity_victim(dataset="digits", n_private=4, n_public=4, n_heldout=4)
    >>> v.private_scrambled().shape
    (4, 3, 224, 224)
"""

from __future__ import annotations

import secrets
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from attacks.victim import Victim
from owsd.channel import CallableChannel, Channel
from owsd.keys import Key, SECRET_BYTES
from owsd.presets import get_preset
from owsd.scrambler import Scrambler
from owsd.spec import ScramblerSpec
from owsd.validation import as_image_batch


def _to_rgb(x: torch.Tensor, size: int) -> torch.Tensor:
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def identity_channel(size: int = 224) -> Channel:
    return CallableChannel(lambda x: _to_rgb(x, size), name="control:identity")


def permutation_channel(size: int = 224, *, seed: int = 0) -> Channel:
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(3 * size * size))

    def fn(x: torch.Tensor) -> torch.Tensor:
        y = _to_rgb(x, size).reshape(len(x), -1)
        return y[:, perm].reshape(len(x), 3, size, size)
    return CallableChannel(fn, name="control:permutation")


def noise_channel(size: int = 224, *, seed: Optional[int] = None) -> Channel:
    g = torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(62))
    return CallableChannel(lambda x: torch.rand(len(x), 3, size, size, generator=g), name="control:noise")


class FreshKeyChannel(Channel):
    """Each image is scrambled under its own fresh random key of ``spec`` (negative control)."""

    transmit_uint8 = False  # as the OWSD channel it stands in for

    def __init__(self, encoder, spec: ScramblerSpec, *, seed: Optional[int] = None) -> None:
        self.encoder, self.spec = encoder, spec
        self.name = f"control:fresh-key:{spec.name}"
        self._rng = np.random.default_rng(seed)

    def embed(self, images) -> np.ndarray:
        x = as_image_batch(images)
        return self.encoder.encode(x.reshape(len(x), -1).numpy())

    def _fresh(self, e: torch.Tensor, *, query_noise: bool = True) -> torch.Tensor:
        outs = []
        for i in range(len(e)):
            key = Key(spec=self.spec, secret=self._rng.bytes(SECRET_BYTES))
            # one image a key: no collapse
            outs.append(Scrambler(key, collapse="never", query_noise=query_noise)(e[i:i + 1]))
        return torch.cat(outs)

    def scramble_embeddings(self, embeddings: np.ndarray, *, batch_size: int = 128,
                            uint8: Optional[bool] = None, query_noise: bool = True) -> np.ndarray:
        with torch.no_grad():
            y = self._fresh(torch.from_numpy(np.asarray(embeddings, np.float32)), query_noise=query_noise)
        u8 = self.transmit_uint8 if uint8 is None else uint8
        return torch.round(y * 255).to(torch.uint8).numpy() if u8 else y.numpy()

    def _scramble(self, images: torch.Tensor) -> torch.Tensor:
        return self._fresh(torch.from_numpy(self.embed(images)))


def _victim_with(channel_fn, **kwargs) -> Victim:
    base = Victim.build(**{"preset": "linear", "seed": 0, **kwargs})
    return Victim(dataset=base.dataset, channel=channel_fn(base), private=base.private, public=base.public,
                  heldout=base.heldout, cloud=base.cloud)


def identity_victim(**kwargs) -> Victim:
    return _victim_with(lambda b: identity_channel(), **kwargs)


def permutation_victim(**kwargs) -> Victim:
    return _victim_with(lambda b: permutation_channel(), **kwargs)


def noise_victim(**kwargs) -> Victim:
    return _victim_with(lambda b: noise_channel(seed=0), **kwargs)


def fresh_key_victim(*, preset: str = "default", **kwargs) -> Victim:
    return _victim_with(lambda b: FreshKeyChannel(b.encoder, get_preset(preset), seed=0), **kwargs)
