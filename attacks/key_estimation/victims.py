"""Small victims for tests, curves and notebooks (encoder fitted on a subset, for speed).

:meth:`attacks.victim.Victim.build` fits the victim's PCA on its whole training split (60,000
MNIST images: minutes on a shared 2-core machine).  :func:`small_victim` builds the same
deployment with the encoder fitted on ``n_fit`` training images, disjoint splits as in
``Victim.build``.

Example:
    >>> v = small_victim(dataset="digits", preset="linear", seed=0, n_private=8, n_public=8, n_heldout=8)
    >>> v.private_scrambled().shape
    (8, 3, 224, 224)
"""

from __future__ import annotations

import warnings

import numpy as np

from attacks.victim import Victim
from owsd.channel import OwsdChannel
from owsd.data import ImageDataset, load_splits
from owsd.encoder import make_encoder
from owsd.keys import SeededKeyWarning, generate_key
from owsd.presets import get_preset


def small_victim(*, dataset: str = "digits", data_dir=None, preset: str = "linear", seed: int = 0,
                 n_private: int = 256, n_public: int = 512, n_heldout: int = 128, n_fit: int = 4000,
                 split_seed: int = 0) -> Victim:
    """An OWSD victim whose PCA encoder is fitted on ``n_fit`` of its training images."""
    train, test = load_splits(dataset, data_dir)
    rng = np.random.default_rng(split_seed)
    perm = rng.permutation(len(train))
    if n_private + n_public > len(train):
        raise ValueError(f"{dataset}: {n_private} + {n_public} images exceed the {len(train)} training images")
    pick = lambda idx: ImageDataset(train.name, train.images[idx], train.labels[idx], train.num_classes)  # noqa: E731
    private = pick(np.sort(perm[:n_private]))
    public = pick(np.sort(perm[n_private:n_private + n_public]))
    heldout = test.subset(min(n_heldout, len(test)), rng=rng)
    rest = perm[n_private + n_public:]
    fit_idx = np.concatenate([perm[:n_private], rest[:max(0, n_fit - n_private)]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeededKeyWarning)
        key = generate_key(get_preset(preset), seed=seed)
    enc = make_encoder("pca", key.spec.embedding_dim).fit(pick(fit_idx).flat())
    return Victim(dataset=dataset, channel=OwsdChannel(key, enc), private=private, public=public, heldout=heldout)
