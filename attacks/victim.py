"""The victim's deployment (ground truth) and the attacker's restricted view of it.

A :class:`Victim` holds everything that exists: the key, the encoder, the channel, the
victim's private images and labels, a disjoint public pool and a held-out set.  Attack code
never receives it: :meth:`Victim.view` builds an :class:`AttackerView` holding only what a
:class:`~attacks.threat.ThreatModel` grants, and scorers grade the attack's output against
the victim afterwards.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = Victim.build(dataset="digits", preset="linear", seed=0, n_private=8, n_public=8, n_heldout=8)
    >>> view = v.view(ThreatModel(known_pairs=4, pair_input="embedding"), rng=np.random.default_rng(0))
    >>> view.pairs_inputs.shape, view.key is None, view.oracle_usage()
    ((4, 64), True, {'scramble': 0, 'cloud': 0, 'internal': 0})
    >>> small = v.restrict(n_private=4)
    >>> len(small.private), len(small.public), small.private_scrambled().shape[0]
    (4, 8, 4)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Hashable, Optional, TypeVar

import numpy as np

from attacks.oracles import BudgetExceededError, ScrambleOracle  # noqa: F401  (re-exported: the contract's names)
from attacks.oracles import CloudOracle, QueryMeter, meters_for, usage
from attacks.threat import ThreatModel
from owsd.channel import Channel, OwsdChannel
from owsd.cloud import Cloud
from owsd.cloud_sources import open_cloud
from owsd.data import ImageDataset, load_splits
from owsd.encoder import Encoder, make_encoder
from owsd.keys import Key, generate_key
from owsd.presets import get_preset
from owsd.spec import ScramblerSpec

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class AttackerView:
    """Exactly what the attacker gets; data it is not granted is ``None``.

    Every oracle it offers (``oracle``: the scrambler on chosen inputs; ``cloud``: the cloud
    model on images of the attacker's choosing, offered whenever the deployment has a cloud)
    is metered by ``meters`` (:mod:`attacks.oracles`): going over the threat model's budget,
    which is 0 for what it does not declare, raises :class:`~attacks.oracles.BudgetExceededError`.
    """

    threat: ThreatModel
    spec: Optional[ScramblerSpec]
    key: Optional[Key]
    encoder: Optional[Encoder]
    pairs_inputs: Optional[np.ndarray]
    pairs_scrambled: Optional[np.ndarray]
    oracle: ScrambleOracle
    targets: Optional[np.ndarray]
    target_outputs: Optional[np.ndarray]
    labelled_indices: Optional[np.ndarray]
    labelled_labels: Optional[np.ndarray]
    auxiliary: Optional[ImageDataset]
    cloud: Optional[CloudOracle]
    num_targets: int
    image_shape: tuple[int, int, int]
    embedding_dim: Optional[int]
    meters: dict[str, QueryMeter] = field(default_factory=dict, repr=False)

    @property
    def queries_used(self) -> int:
        """Scramble-oracle queries used (chosen inputs)."""
        return self.meters["scramble"].used if "scramble" in self.meters else 0

    def oracle_usage(self) -> dict[str, int]:
        """Queries used per oracle (``scramble``, ``cloud``, ``internal``)."""
        return usage(self.meters)


@dataclass
class Victim:
    """Ground truth: the deployment under attack.  Never handed to attack code."""

    dataset: str
    channel: Channel
    private: ImageDataset
    public: ImageDataset
    heldout: ImageDataset
    cloud: Optional[Cloud] = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def key(self) -> Optional[Key]:
        return getattr(self.channel, "key", None)

    @property
    def encoder(self) -> Optional[Encoder]:
        return getattr(self.channel, "encoder", None)

    @property
    def is_owsd(self) -> bool:
        return isinstance(self.channel, OwsdChannel)

    @property
    def spec(self) -> Optional[ScramblerSpec]:
        """The public scrambler spec (also for controls that scramble embeddings)."""
        return self.key.spec if self.key is not None else getattr(self.channel, "spec", None)

    @property
    def has_embeddings(self) -> bool:
        """Whether the channel goes through an embedding (OWSD and its fresh-key control)."""
        return hasattr(self.channel, "embed") and hasattr(self.channel, "scramble_embeddings")

    @classmethod
    def build(cls, *, dataset: str = "digits", data_dir=None, key: Optional[Key] = None,
              preset: Optional[str] = None, spec: Optional[ScramblerSpec] = None, seed: Optional[int] = None,
              channel: Optional[Channel] = None, cloud: Optional[str | Cloud] = None, n_private: int = 256,
              n_public: int = 512, n_heldout: int = 128, encoder: str = "pca", split_seed: int = 0,
              n_fit: int = 10000, device: str = "cpu", image_size: Optional[int] = None) -> "Victim":
        """A victim on ``dataset``: encoder fitted on the victim's own training images.

        The training split is cut into the victim's private images (scrambled and sent) and a
        disjoint public pool (auxiliary data); the held-out set comes from the test split.  The
        encoder is fitted on the private images plus the victim's other training images, at
        most ``n_fit`` in all (the public pool is never used).
        ``channel`` replaces the OWSD scheme by any other channel (controls, other schemes).
        ``cloud`` is a cloud name or source (:func:`owsd.cloud_sources.open_cloud`) or an already built
        :class:`~owsd.cloud.Cloud` (shared).  ``dataset`` is a built-in name or a path to your own
        data (:func:`owsd.data.load_splits`); ``image_size`` resizes its images.
        """
        train, test = load_splits(dataset, data_dir, image_size=image_size)
        rng = np.random.default_rng(split_seed)
        perm = rng.permutation(len(train))
        if n_private + n_public > len(train):
            raise ValueError(f"{dataset}: {n_private} private + {n_public} public images exceed the "
                             f"{len(train)} training images")
        pick = lambda ds, idx: ImageDataset(ds.name, ds.images[idx], ds.labels[idx], ds.num_classes)  # noqa: E731
        private = pick(train, np.sort(perm[:n_private]))
        public = pick(train, np.sort(perm[n_private:n_private + n_public]))
        heldout = test.subset(min(n_heldout, len(test)), rng=rng)
        if channel is None:
            if key is None:
                key = generate_key(spec or get_preset(preset or "default"), seed=seed)
            n_rest = max(0, min(len(train) - n_private - n_public, n_fit - n_private))
            rest = pick(train, np.sort(perm[n_private + n_public:n_private + n_public + n_rest]))
            fit_on = np.concatenate([private.flat(), rest.flat()]) if n_rest else private.flat()
            enc = make_encoder(encoder, key.spec.embedding_dim).fit(fit_on)
            channel = OwsdChannel(key, enc, device=device)
        return cls(dataset=str(dataset), channel=channel, private=private, public=public, heldout=heldout,
                   cloud=(open_cloud(cloud) if isinstance(cloud, str) else cloud) if cloud else None)

    # --- cached ground truth ---------------------------------------------------------
    def private_embeddings(self) -> np.ndarray:
        if "emb" not in self._cache:
            self._cache["emb"] = self.channel.embed(self.private.images)
        return self._cache["emb"]

    def private_scrambled(self) -> np.ndarray:
        """What the victim sends for its private images (uint8 unless the channel says otherwise)."""
        if "scr" not in self._cache:
            self._cache["scr"] = self.channel.scramble_images(self.private.images)
        return self._cache["scr"]

    def private_outputs(self) -> np.ndarray:
        if self.cloud is None:
            raise ValueError("this victim has no cloud")
        if "out" not in self._cache:
            x = self.private_scrambled()
            self._cache["out"] = self.cloud.predict(x, verbose=False)
        return self._cache["out"]

    def precompute_outputs(self, n: Optional[int] = None, *, verbose: bool = False) -> np.ndarray:
        """The cloud's outputs for the first ``n`` private images (all if ``None``), computed now and kept.

        :meth:`private_outputs` reuses them when they cover every private image, and a
        :meth:`restrict`-ed victim of at most ``n`` private images inherits their prefix, so an
        audit pays the cloud once, only for the images its cloud-using attacks look at.
        """
        if self.cloud is None:
            raise ValueError("this victim has no cloud")
        n = len(self.private) if n is None else min(int(n), len(self.private))
        if n < 1:
            raise ValueError(f"precompute_outputs needs at least one image, got n={n}")
        outs = self.cloud.predict(self.private_scrambled()[:n], verbose=verbose)
        if n == len(self.private):
            self._cache["out"] = outs
        self._cache["out_prefix"] = outs
        return outs

    def restrict(self, *, n_private: Optional[int] = None, n_public: Optional[int] = None,
                 n_heldout: Optional[int] = None) -> "Victim":
        """The same deployment cut to the first ``n_*`` images of each pool (``None``: all of it).

        The channel and cloud are shared; the cached embeddings, scrambled images and cloud
        outputs of the private images are sliced, not recomputed.  Sizes beyond a pool keep all
        of it; a victim cut to its own sizes is returned as is.
        """
        want = {"private": n_private, "public": n_public, "heldout": n_heldout}
        n = {pool: len(getattr(self, pool)) if k is None else min(int(k), len(getattr(self, pool)))
             for pool, k in want.items()}
        if all(n[pool] == len(getattr(self, pool)) for pool in n):
            return self
        cut = lambda ds, k: ImageDataset(ds.name, ds.images[:k], ds.labels[:k], ds.num_classes)  # noqa: E731
        sub = Victim(dataset=self.dataset, channel=self.channel, private=cut(self.private, n["private"]),
                     public=cut(self.public, n["public"]), heldout=cut(self.heldout, n["heldout"]), cloud=self.cloud)
        for k in ("emb", "scr", "out"):
            if k in self._cache:
                sub._cache[k] = self._cache[k][:n["private"]]
        pre = self._cache.get("out_prefix")
        if "out" not in sub._cache and pre is not None and len(pre) >= n["private"]:
            sub._cache["out"] = pre[:n["private"]]  # outputs computed for a prefix of the private images
        return sub

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """Ground truth derived from this deployment (a scorer's), computed by ``compute`` once and kept."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def view(self, threat: ThreatModel, *, rng: np.random.Generator) -> AttackerView:
        """The attacker's view under ``threat``; pairs and labels are drawn with ``rng``."""
        n = len(self.private)
        need = threat.known_pairs
        if need > n:
            raise ValueError(f"threat model grants {need} known pairs but the victim has only {n} private images")
        pairs_in = pairs_out = None
        if need:
            idx = np.sort(rng.choice(n, need, replace=False))
            if threat.pair_input == "embedding":
                if not self.has_embeddings:
                    raise ValueError("embedding pairs need a channel that scrambles embeddings (OWSD)")
                pairs_in = self.private_embeddings()[idx]
            else:
                pairs_in = self.private.images[idx]
            pairs_out = self.private_scrambled()[idx]
        meters = meters_for(threat)
        oracle = ScrambleOracle(self.channel, meters["scramble"], threat.pair_input)
        lab_idx = lab = None
        if threat.labelled_examples:
            lab_idx = np.sort(rng.choice(n, min(threat.labelled_examples, n), replace=False))
            lab = self.private.labels[lab_idx]
        aux = None
        if threat.auxiliary:
            if threat.auxiliary_size > len(self.public):
                raise ValueError(f"threat model grants {threat.auxiliary_size} auxiliary images; the public pool "
                                 f"has {len(self.public)}")
            aux = self.public.subset(threat.auxiliary_size)
        key = self.key
        spec = self.spec if threat.knows_architecture else None
        shape = tuple(self.private_scrambled().shape[1:]) if threat.sees_scrambled or need else (
            tuple(spec.output_shape()) if spec else (0, 0, 0))
        return AttackerView(
            threat=threat, spec=spec, key=key if threat.knows_key else None,
            encoder=self.encoder if threat.knows_encoder else None,
            pairs_inputs=pairs_in, pairs_scrambled=pairs_out, oracle=oracle,
            targets=self.private_scrambled() if threat.sees_scrambled else None,
            target_outputs=self.private_outputs() if threat.cloud_outputs else None,
            labelled_indices=lab_idx, labelled_labels=lab, auxiliary=aux,
            cloud=CloudOracle(self.cloud, meters["cloud"]) if self.cloud is not None else None,
            num_targets=n, image_shape=shape,
            embedding_dim=self.spec.embedding_dim if self.spec is not None else None, meters=meters)
