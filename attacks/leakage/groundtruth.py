"""The challenger's side of the leakage games: fresh traffic drawn from the victim.

Only scorers call these (they hold the :class:`~attacks.victim.Victim`); attack code never
does.  Everything is seeded, so a result is reproducible from its output.

* :func:`augment`: near-duplicates of images (pixel noise, brightness, a one-pixel shift);
* :func:`other_key_channel`: the victim's scheme under another key (another organization);
* :func:`uniform_noise_images`: the random-noise reference, distributed as the noise control;
* :func:`internal_model_for`: the victim's internal model, trained on the cloud outputs of a
  random half of its private images (members); :func:`with_null_internal_model` gives a
  victim whose internal model is trained on disjoint images (no target is a member).

Example:
    >>> import numpy as np
    >>> x = np.full((2, 1, 8, 8), 100, np.uint8)
    >>> a, kinds = augment(x, np.random.default_rng(0))
    >>> a.shape, a.dtype, sorted(set(kinds)) <= sorted(AUGMENTATIONS)
    ((2, 1, 8, 8), dtype('uint8'), True)
"""

from __future__ import annotations

import copy
import logging
from typing import Optional

import numpy as np
import torch

from attacks.controls import (FreshKeyChannel, identity_channel, noise_channel, permutation_channel)
from attacks.leakage.common import INTERNAL_RECIPE, classifier_validation_positions
from attacks.oracles import QueryMeter
from attacks.victim import Victim
from owsd.channel import CallableChannel, Channel, OwsdChannel
from owsd.internal import InternalModel
from owsd.keys import SECRET_BYTES, Key

log = logging.getLogger(__name__)

AUGMENTATIONS = ("noise", "brightness", "shift")
MEMBER_SEED = 20261124


def augment(images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One near-duplicate per image, cycling through :data:`AUGMENTATIONS`.

    ``noise``: Gaussian pixel noise (sd 4% of the range); ``brightness``: pixels times 0.85;
    ``shift``: rolled by one pixel right (a small translation).
    """
    x = np.asarray(images).astype(np.float32)
    out = np.empty_like(x)
    kinds = np.array([AUGMENTATIONS[i % len(AUGMENTATIONS)] for i in range(len(x))])
    for i, kind in enumerate(kinds):
        if kind == "noise":
            out[i] = x[i] + rng.normal(0, 0.04 * 255, x[i].shape)
        elif kind == "brightness":
            out[i] = x[i] * 0.85
        else:
            out[i] = np.roll(x[i], 1, axis=-1)
    return np.clip(np.round(out), 0, 255).astype(np.uint8), kinds


_CONTROLS_WITH_KEYS = ("control:identity", "control:permutation", "control:noise")


def no_other_key(victim: Victim) -> Optional[str]:
    """Why :func:`other_key_channel` cannot serve ``victim`` (``None`` when it can); builds nothing."""
    ch = victim.channel
    if isinstance(ch, (OwsdChannel, FreshKeyChannel)) or getattr(ch, "name", "") in _CONTROLS_WITH_KEYS:
        return None
    if isinstance(ch, CallableChannel) and callable(getattr(ch.fn, "rekey", None)):
        return None
    return (f"no notion of 'another key' for channel {getattr(ch, 'name', '')!r} (a callable scrambler may offer "
            "one as a `rekey(seed)` attribute returning the same scheme under another key)")


def other_key_channel(victim: Victim, seed: int) -> Channel:
    """The victim's scheme under another key (``seed`` picks it), or raise ``ValueError``.

    OWSD: a fresh key of the same spec with the victim's encoder; controls: another
    permutation, another noise stream, the identity (which has no key), another fresh-key
    stream; a callable scrambler that offers ``rekey(seed)`` (the same scheme under another
    key, e.g. :mod:`analysis.reference_scramblers`): that.  Any other callable has no notion
    of another key that the toolkit can see.
    """
    ch = victim.channel
    if isinstance(ch, OwsdChannel):
        key = Key(spec=ch.key.spec, secret=np.random.default_rng(seed).bytes(SECRET_BYTES))
        return OwsdChannel(key, ch.encoder, transmit_uint8=ch.transmit_uint8)
    if isinstance(ch, FreshKeyChannel):
        return FreshKeyChannel(ch.encoder, ch.spec, seed=seed)
    rekey = getattr(getattr(ch, "fn", None), "rekey", None)
    if isinstance(ch, CallableChannel) and callable(rekey):
        return CallableChannel(rekey(seed), name=f"{ch.name}:rekeyed", transmit_uint8=ch.transmit_uint8)
    name = getattr(ch, "name", "")
    size = int(victim.private_scrambled().shape[-1])
    if name == "control:identity":
        return identity_channel(size)
    if name == "control:permutation":
        return permutation_channel(size, seed=seed)
    if name == "control:noise":
        return noise_channel(size, seed=seed)
    raise ValueError(no_other_key(victim))


def uniform_noise_images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Uniform random images, quantized as the noise control transmits them."""
    g = torch.Generator().manual_seed(seed)
    return torch.round(torch.rand(n, *shape, generator=g) * 255).to(torch.uint8).numpy()


def challenge_images(victim: Victim, n: int, seed: int) -> np.ndarray:
    """``n`` held-out (never sent) images, a seeded draw."""
    n = min(n, len(victim.heldout))
    idx = np.sort(np.random.default_rng(seed).choice(len(victim.heldout), n, replace=False))
    return victim.heldout.images[idx]


def traffic(victim: Victim, channel: Channel, images: np.ndarray, *, with_outputs: bool) -> tuple:
    """(scrambled, cloud outputs or None) of ``images`` sent through ``channel``."""
    scr = channel.scramble_images(images)
    out = victim.cloud.predict(scr, verbose=False) if with_outputs and victim.cloud is not None else None
    return scr, out


# --- the internal model (membership inference) ---------------------------------------------
def member_split(n: int) -> np.ndarray:
    """Boolean mask: which of ``n`` private images train the internal model (a fixed half)."""
    mask = np.zeros(n, bool)
    mask[np.random.default_rng(MEMBER_SEED).permutation(n)[: n // 2]] = True
    return mask


def with_null_internal_model(victim: Victim) -> Victim:
    """A copy of ``victim`` whose internal model trains on held-out images only.

    No private image is then a member, so any membership test must stay at chance: the
    negative control of the membership games (the scrambler cannot be one, see the docs).
    """
    v = copy.copy(victim)
    v.leak_internal_training = "heldout"
    return v


def internal_model_for(victim: Victim, *, seed: int = 0) -> tuple[InternalModel, np.ndarray, np.ndarray]:
    """(internal model, member mask, evaluable mask) over the victim's private images.

    Cached in the victim's ground-truth cache.  The model is :class:`owsd.internal.InternalModel`
    trained with :data:`INTERNAL_RECIPE` on the cloud outputs of the members: with the
    scheme's default embedding decoder when the victim's channel has embeddings (OWSD and
    its fresh-key control), reading the log-probabilities directly otherwise (channels
    without an embedding, such as the plaintext and pixel-scrambler controls).
    """
    mode = getattr(victim, "leak_internal_training", "members")
    return victim.memo(("leak-internal", mode, seed), lambda: _fit_internal_model(victim, mode, seed))


def _fit_internal_model(victim: Victim, mode: str, seed: int) -> tuple[InternalModel, np.ndarray, np.ndarray]:
    if victim.cloud is None:
        raise ValueError("membership inference on the internal model needs a victim with a cloud")
    n = len(victim.private)
    member = member_split(n)
    evaluable = np.ones(n, bool)
    decoder = "embedding" if victim.has_embeddings else "none"
    model = InternalModel(seed=seed, verbose=False, decoder=decoder, **INTERNAL_RECIPE)
    if mode == "members":
        idx = np.flatnonzero(member)
        emb = victim.private_embeddings()[idx] if victim.has_embeddings else None
        model.fit(victim.private_outputs()[idx], victim.private.labels[idx], emb)
        evaluable[idx[classifier_validation_positions(len(idx), seed)]] = False
    elif mode == "heldout":
        scr, out = traffic(victim, victim.channel, victim.heldout.images, with_outputs=True)
        emb = victim.channel.embed(victim.heldout.images) if victim.has_embeddings else None
        model.fit(out, victim.heldout.labels, emb)
    else:
        raise ValueError(f"unknown internal-model training mode {mode!r}")
    return model, member, evaluable


class InternalOracle:
    """Black-box query access to the internal model: cloud outputs -> probabilities.

    Queries are counted by ``meter`` (the attacker view's ``internal`` meter, whose budget is
    the threat model's ``model_queries``): over budget raises
    :class:`~attacks.oracles.BudgetExceededError`.  Without a meter, nothing is limited.
    """

    def __init__(self, model: InternalModel, meter: Optional[QueryMeter] = None) -> None:
        self._model, self._meter, self._used = model, meter, 0

    @property
    def used(self) -> int:
        return self._meter.used if self._meter is not None else self._used

    def __call__(self, outputs: np.ndarray) -> np.ndarray:
        outputs = np.asarray(outputs)
        if self._meter is not None:
            self._meter.charge(len(outputs))
        else:
            self._used += len(outputs)
        return self._model.classifier.predict_proba(self._model.features(outputs))
