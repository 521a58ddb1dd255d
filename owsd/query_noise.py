"""Fresh randomness per query: where the scrambler's query noise comes from.

A spec with ``query_noise > 0`` adds ``query_noise`` times standard normal noise to every
embedding before it is scrambled (the embeddings have unit variance per coordinate, so the
value is the noise-to-signal ratio of each coordinate).  The noise must be fresh for every
query: the same image sent twice gives two different scrambled images.

By default every scrambling call draws its noise generator's seed from :mod:`secrets` (as a
real client must: noise an attacker can predict is no noise).  Simulations that must be
reproducible (the audit, the sweep) call :func:`seed_query_noise` before each piece of work;
the calls after it then draw their seeds from a stream derived from that seed, with a
warning that the noise is not secret.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     seed_query_noise(7)
    ...     a = next_noise_seed(); seed_query_noise(7); b = next_noise_seed()
    >>> a == b, is_seeded()
    (True, True)
    >>> seed_query_noise(None); is_seeded()
    False
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import warnings
from typing import Optional

import torch

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_STATE: dict[str, Optional[int]] = {"seed": None, "count": 0}


class SeededNoiseWarning(UserWarning):
    """Query noise drawn from a seeded stream: reproducible, therefore not secret."""


def seed_query_noise(seed: Optional[int]) -> None:
    """Draw the query noise of this process from a stream seeded by ``seed`` (``None``: secure again)."""
    with _LOCK:
        _STATE["seed"], _STATE["count"] = (None if seed is None else int(seed)), 0
    if seed is not None:
        warnings.warn("query noise is seeded: reproducible for a simulation, NOT secret",
                      SeededNoiseWarning, stacklevel=2)


def is_seeded() -> bool:
    """Whether query noise currently comes from a seeded stream."""
    return _STATE["seed"] is not None


def next_noise_seed() -> int:
    """The seed of the next scrambling call's noise: secure random, or the seeded stream's next."""
    with _LOCK:
        seed = _STATE["seed"]
        if seed is None:
            return secrets.randbits(63)
        n = _STATE["count"]
        _STATE["count"] = n + 1
    return int.from_bytes(hashlib.sha256(f"owsd-query-noise|{seed}|{n}".encode()).digest()[:8], "big") >> 1


def draw_query_noise(shape: tuple[int, ...], *, scale: float, device: torch.device,
                     dtype: torch.dtype) -> torch.Tensor:
    """``scale`` times standard normal noise of ``shape``, from a fresh generator (see the module)."""
    gen = torch.Generator(device=device).manual_seed(next_noise_seed())
    return torch.randn(shape, generator=gen, device=device, dtype=dtype) * scale
