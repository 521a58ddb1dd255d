"""Key augmentation: the attacker scrambles its own public images under keys of its own.

It knows the public architecture (the spec), not the victim's key.  It fits its own
encoder of the scheme's public kind (PCA, ``spec.embedding_dim`` components) on its public
images, draws ``n_keys`` random keys of the spec (kept in memory only, never written), and
scrambles every image ``copies`` times, each time under a key drawn at random, quantized to
uint8 as the scheme transmits.

Example:
    >>> import numpy as np, warnings
    >>> from owsd.data import load_splits
    >>> from owsd.presets import get_preset
    >>> train, _ = load_splits("digits")
    >>> imgs = train.images[:80]
    >>> spec = get_preset("linear")
    >>> enc = attacker_encoder(imgs, spec)
    >>> keys = own_keys(spec, 2, np.random.default_rng(0))
    >>> batches = list(scramble_under_own_keys(imgs[:6], enc, keys, copies=1, rng=np.random.default_rng(0)))
    >>> sum(len(i) for i, _ in batches), batches[0][1].dtype
    (6, dtype('uint8'))
"""

from __future__ import annotations

import logging
import warnings
from typing import Iterator, Optional

import numpy as np
import torch

from owsd.encoder import Encoder, make_encoder
from owsd.keys import SECRET_BYTES, Key, SeededKeyWarning, generate_key
from owsd.scrambler import Scrambler
from owsd.spec import ScramblerSpec

log = logging.getLogger(__name__)


def attacker_encoder(images: np.ndarray, spec: ScramblerSpec, *, known: Optional[Encoder] = None) -> Encoder:
    """The victim's encoder when the attacker knows it, else a PCA fitted on its own images."""
    if known is not None:
        return known
    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
    dim = min(spec.embedding_dim, len(flat) - 1, flat.shape[1])
    if dim < spec.embedding_dim:
        raise ValueError(f"fitting a {spec.embedding_dim}-dim PCA needs more than {spec.embedding_dim} auxiliary "
                         f"images and pixels; got {flat.shape}")
    return make_encoder("pca", spec.embedding_dim).fit(flat)


KEY_SOURCES = ("random", "seeded")


def own_keys(spec: ScramblerSpec, n: int, rng: np.random.Generator, *, source: str = "random") -> list[Key]:
    """``n`` keys of ``spec`` of the attacker's own (never saved).

    ``source="random"``: secrets drawn from ``rng``; ``source="seeded"``: the keys
    :func:`owsd.keys.generate_key` derives from the seeds ``0 .. n-1`` (the weak-key
    setting: a victim whose key came from a small experiment seed lies among them).
    """
    if n < 1:
        raise ValueError(f"need at least one key, got {n}")
    if source == "seeded":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeededKeyWarning)
            return [generate_key(spec, seed=i) for i in range(n)]
    if source != "random":
        raise ValueError(f"key source must be one of {KEY_SOURCES}, got {source!r}")
    return [Key(spec=spec, secret=rng.bytes(SECRET_BYTES)) for _ in range(n)]


def scramble_under_own_keys(images: np.ndarray, encoder: Encoder, keys: list[Key], *, copies: int,
                            rng: np.random.Generator, batch_size: int = 128,
                            device: str = "cpu") -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(image indices, uint8 scrambled batch)``: every image ``copies`` times, random keys."""
    emb = encoder.encode(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    scramblers: dict[int, Scrambler] = {}
    for _ in range(copies):
        assign = rng.integers(0, len(keys), size=len(images))
        for k in np.unique(assign):
            if int(k) not in scramblers:
                scramblers[int(k)] = Scrambler(keys[int(k)], device=device)
            idx = np.flatnonzero(assign == k)
            for s in range(0, len(idx), batch_size):
                b = idx[s:s + batch_size]
                with torch.no_grad():
                    y = scramblers[int(k)](torch.from_numpy(emb[b]).to(device))
                yield b, torch.round(y.clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()


def aux_description(p: dict) -> str:
    """The threat model's text for auxiliary data scrambled under the attacker's own keys."""
    keys = "keys seeded 0..n-1 (weak-key guess)" if p["key_source"] == "seeded" else "random keys"
    return f"public images of the victim's kind, scrambled under {p['n_keys']} own {keys}"
