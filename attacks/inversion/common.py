"""Small pieces the inversion attacks share: target selection, the public output map, nets.

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
from typing import Optional

import numpy as np
import torch

from attacks.inversion.decoder import (ImageDecoder, InversionNet, ScrambledEncoder, VectorEncoder,
                                       scrambled_features)
from attacks.inversion.training import seeded
from attacks.victim import AttackerView

#: parameters of the network and its training, shared by the learned inversion attacks
NET_PARAMS: dict[str, type | tuple] = {"epochs": int, "batch_size": int, "lr": (int, float), "pool": int, "latent": int,
                                       "hidden": int, "conv_width": int, "width": int,
                                       "max_seconds": (int, float), "max_targets": int, "patience": int,
                                       "val_fraction": (int, float)}

#: early stopping of the attacks that train on their own synthetic pairs (surrogate transfer,
#: inversion from outputs) at the standard and full budgets: hold out 10% of the training
#: examples, stop after ``patience`` epochs without a lower validation BCE, keep the best
#: weights.  Paired inversion keeps every known pair for training (they are the threat model's
#: scarce resource) and no early stopping.
EARLY_STOP: dict = {"patience": 5, "val_fraction": 0.1}


def validate_net_params(name: str, p: dict) -> None:
    """Clear errors for nonsensical network/training parameters."""
    for k in ("epochs", "batch_size", "latent", "hidden", "width"):
        if k in p and p[k] < 1:
            raise ValueError(f"{name}: {k} must be at least 1, got {p[k]}")
    if "pool" in p and not 1 <= p["pool"] <= 224:
        raise ValueError(f"{name}: pool must be in [1, 224], got {p['pool']}")
    if p.get("conv_width", 0) < 0:
        raise ValueError(f"{name}: conv_width must be >= 0 (0: no conv stack), got {p['conv_width']}")
    if p.get("conv_width", 0) and p.get("pool", 4) % 4:
        raise ValueError(f"{name}: the conv stack needs pool divisible by 4, got {p['pool']}")
    if "lr" in p and not p["lr"] > 0:
        raise ValueError(f"{name}: lr must be positive, got {p['lr']}")
    if p.get("max_seconds", 0) < 0 or p.get("max_targets", 0) < 0:
        raise ValueError(f"{name}: max_seconds and max_targets must be >= 0 (0: no limit)")
    if p.get("patience", 0) < 0:
        raise ValueError(f"{name}: patience must be >= 0 (0: no early stopping), got {p['patience']}")
    if not 0 < p.get("val_fraction", 0.1) < 1:
        raise ValueError(f"{name}: val_fraction must be in (0, 1), got {p['val_fraction']}")


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
