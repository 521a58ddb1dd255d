"""Small pieces the inversion attacks share: parameters, target selection, the public output map, nets.

Example:
    >>> from attacks.threat import ThreatModel
    >>> import numpy as np, warnings
    >>> from attacks.victim import Victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = Victim.build(dataset="digits", preset="linear", seed=0, n_private=6, n_public=8, n_heldout=8)
    >>> view = v.view(ThreatModel(known_pairs=2, pair_input="image"), rng=np.random.default_rng(0))
    >>> len(select_targets(view, max_targets=0)), len(select_targets(view, max_targets=3))
    (4, 3)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from attacks.inversion.decoder import (ImageDecoder, InversionNet, ScrambledEncoder, VectorEncoder,
                                       scrambled_features)
from attacks.inversion.own_keys import KEY_SOURCES
from attacks.inversion.training import seeded
from attacks.params import param
from attacks.victim import AttackerView

@dataclass(frozen=True, kw_only=True)
class NetParams:
    """The network and its training, shared by the learned inversion attacks."""

    epochs: int = param(doc="training epochs", ge=1)
    batch_size: int = param(doc="training batch size", ge=1)
    lr: float = param(doc="Adam learning rate", gt=0)
    pool: int = param(doc="side of the average-pooled scrambled image the encoder sees", ge=1, le=224)
    latent: int = param(doc="width of the latent code", ge=1)
    hidden: int = param(doc="width of the encoder's hidden layer", ge=1)
    conv_width: int = param(doc="channels of the encoder's conv stack (0: none)", ge=0)
    width: int = param(doc="channels of the image decoder", ge=1)
    max_seconds: float = param(doc="wall-clock limit of the training (0: none)", ge=0)
    max_targets: int = param(doc="targets reconstructed at most (0: all)", ge=0)
    patience: int = param(doc="epochs without a lower validation loss before stopping (0: no early stopping)",
                          ge=0)
    val_fraction: float = param(doc="share of the training examples held out for early stopping", gt=0, lt=1)

    def check(self) -> Optional[str]:
        if self.conv_width and self.pool % 4:
            return f"the conv stack needs pool divisible by 4, got {self.pool}"
        return None


@dataclass(frozen=True, kw_only=True)
class OwnKeyParams:
    """The attacker's own keys: public images scrambled under keys it draws itself."""

    aux: int = param(doc="public images of the victim's kind the attacker holds", ge=1)
    n_keys: int = param(doc="own keys drawn", ge=1)
    key_source: str = param(doc="how the own keys are drawn", choices=KEY_SOURCES)
    copies: int = param(doc="scrambled copies of each public image (each under a random own key)", ge=1)
    knows_encoder: bool = param(doc="whether the attacker knows the victim's fitted encoder")


def train_kwargs(p: dict) -> dict:
    """The training-budget keywords of :func:`~attacks.inversion.training.train_inversion` from params."""
    return dict(epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"], max_seconds=float(p["max_seconds"]),
                patience=int(p.get("patience", 0)), val_fraction=float(p.get("val_fraction", 0.1)))


def _digest(a: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).digest()


def select_targets(view: AttackerView, *, max_targets: int = 0,
                   rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Indices of targets to reconstruct: those not among the known pairs, at most ``max_targets``.

    The attacker can tell which targets it already holds pairs for (identical scrambled
    images); reconstructing those proves nothing (needs ``view.targets`` for that check).
    When ``max_targets`` cuts the list, a random subset is kept (``rng``; the private images
    may be ordered by class), returned sorted.
    """
    idx = np.arange(view.num_targets)
    if view.pairs_scrambled is not None and view.targets is not None:
        known = {_digest(p) for p in view.pairs_scrambled}
        idx = np.array([i for i in idx if _digest(view.targets[i]) not in known], dtype=np.int64)
    if max_targets and len(idx) > max_targets:
        idx = np.sort((rng or np.random.default_rng(0)).choice(idx, max_targets, replace=False))
    return idx


def output_map(view: AttackerView) -> tuple[Optional[str], float]:
    """The public elementwise output map (normalization, gain) when the architecture is known."""
    if view.spec is None:
        return None, 1.0
    return view.spec.normalization, float(view.spec.gain)


def features_for(view: AttackerView, scrambled, pool: int) -> torch.Tensor:
    """The fixed stem applied with what the attacker knows of the output map."""
    norm, gain = output_map(view)
    return scrambled_features(scrambled, pool=pool, normalization=norm, gain=gain)


def scrambled_net(p: dict, pool_shape: tuple[int, int, int], out_shape: tuple[int, int, int],
                  generator: torch.Generator) -> InversionNet:
    """A scrambled-image -> image network sized by the attack's parameters."""
    with seeded(generator):
        return InversionNet(ScrambledEncoder(pool_shape, pool=p["pool"], latent=p["latent"],
                                             conv_width=p["conv_width"], hidden=p["hidden"]),
                            ImageDecoder(p["latent"], out_shape, width=p["width"]))


def vector_net(p: dict, in_dim: int, out_shape: tuple[int, int, int], generator: torch.Generator) -> InversionNet:
    """An output-vector -> image network sized by the attack's parameters."""
    with seeded(generator):
        return InversionNet(VectorEncoder(in_dim, latent=p["latent"], hidden=p["hidden"]),
                            ImageDecoder(p["latent"], out_shape, width=p["width"]))


def unit_images(images: np.ndarray) -> torch.Tensor:
    """uint8 images -> float32 tensor in [0, 1]."""
    return torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0)
