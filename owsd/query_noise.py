"""Fresh randomness per query: where the scrambler's query noise comes from.

A spec with ``query_noise > 0`` adds ``query_noise`` times standard normal noise to every
embedding before it is scrambled (the embeddings have unit variance per coordinate, so the
value is the noise-to-signal ratio of each coordinate).  The noise must be fresh for every
query: the same image sent twice gives two different scrambled images.

By default every scrambling call draws its noise generator's seed from :mod:`secrets` (as a
real client must: noise an attacker can predict is no noise).  Simulations that must be
reproducible (the audit, the sweep) run each piece of work inside :func:`seeded_query_noise`
(or call :func:`seed_query_noise`, with a warning that the noise is then not secret).  In a
seeded stream a call's seed derives from the stream's seed, the embeddings it scrambles and how
many times the stream has scrambled those same embeddings before: the same image sent twice
gets fresh noise, and a rerun, or a resumed run that skips batches it had cached, gives every
batch the noise it had the first time.

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
    >>> with seeded_query_noise(7):
    ...     x = next_noise_seed(b"batch"); y = next_noise_seed(b"batch")
    >>> x != y, is_seeded()
    (True, False)
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import warnings
from typing import Iterator, Optional

import torch

_LOCK = threading.Lock()
#: the seeded stream: its seed (``None``: secure) and how often each batch digest was drawn
_STATE: dict = {"seed": None, "seen": {}}


class SeededNoiseWarning(UserWarning):
    """Query noise drawn from a seeded stream: reproducible, therefore not secret."""


def _set(seed: Optional[int]) -> dict:
    with _LOCK:
        before = {"seed": _STATE["seed"], "seen": _STATE["seen"]}
        _STATE["seed"], _STATE["seen"] = (None if seed is None else int(seed)), {}
    return before


def seed_query_noise(seed: Optional[int]) -> None:
    """Draw the query noise of this process from a stream seeded by ``seed`` (``None``: secure again)."""
    _set(seed)
    if seed is not None:
        warnings.warn("query noise is seeded: reproducible for a simulation, NOT secret",
                      SeededNoiseWarning, stacklevel=2)


@contextlib.contextmanager
def seeded_query_noise(seed: Optional[int]) -> Iterator[None]:
    """Within the block, query noise comes from the stream of ``seed``; the previous state after it."""
    before = _set(seed)
    try:
        yield
    finally:
        with _LOCK:
            _STATE.update(before)


def is_seeded() -> bool:
    """Whether query noise currently comes from a seeded stream."""
    return _STATE["seed"] is not None


def next_noise_seed(content: bytes = b"") -> int:
    """The seed of the next call's noise: secure random, or the seeded stream's for ``content``."""
    with _LOCK:
        seed = _STATE["seed"]
        if seed is None:
            return secrets.randbits(63)
        digest = hashlib.sha256(content).hexdigest()[:32]
        n = _STATE["seen"].get(digest, 0)
        _STATE["seen"][digest] = n + 1
    return int.from_bytes(hashlib.sha256(f"owsd-query-noise|{seed}|{digest}|{n}".encode()).digest()[:8], "big") >> 1


def draw_query_noise(embeddings: torch.Tensor, *, scale: float) -> torch.Tensor:
    """``scale`` times standard normal noise shaped as ``embeddings``, from a fresh generator.

    In a seeded stream the generator's seed follows the embeddings' bytes (see the module).
    """
    content = embeddings.detach().cpu().numpy().tobytes() if is_seeded() else b""
    gen = torch.Generator(device=embeddings.device).manual_seed(next_noise_seed(content))
    return torch.randn(tuple(embeddings.shape), generator=gen, device=embeddings.device,
                       dtype=embeddings.dtype) * scale
