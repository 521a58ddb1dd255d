"""The scheme end to end: encode, scramble, query the cloud, train the internal model.

:func:`run_pipeline` measures the paper's utility table: accuracy of the internal model
from the cloud's output vector (top-k truncated to each output size), with and without
the embedding, against a plaintext model of the same capacity and the embedding alone.
The internal model decodes the embedding from the outputs first (``RunConfig.decoder``,
see :mod:`owsd.internal`).
Cloud outputs are cached on disk by (dataset, encoder, key fingerprint, cloud), in chunks
written atomically, so a rerun (or an interrupted run) does not pay the cloud again.
:func:`measure_utility` is the measurement itself, for any channel (the scheme or any
callable scrambler): ``owsd run`` and the audit (:mod:`analysis.audit.utility`) both call it.

Example:
    >>> import tempfile, warnings
    >>> with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     res = run_pipeline(RunConfig(out=d, n_train=200, n_test=100, output_sizes=(10,), seed=0,
    ...                                  epochs=2, verbose=False, cache_dir=d))
    >>> sorted(res["accuracy"])
    ['cloud_only', 'cloud_plus_embedding', 'embedding_only', 'plaintext']
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from owsd import provenance
from owsd.channel import CallableChannel, Channel, OwsdChannel
from owsd.cloud import Cloud, default_cache_dir, fit_cloud, make_cloud, truncate_topk  # noqa: F401 (doctest)
from owsd.cloud_sources import open_cloud
from owsd.data import ImageDataset, load_splits
from owsd.encoder import Encoder, make_encoder
from owsd.internal import DECODERS, Classifier, InternalModel, centered_logits
from owsd.io import atomic_write_json, load_npz, save_npz
from owsd.keys import Key, generate_key
from owsd.presets import get_preset
from owsd.scrambler import Scrambler
from owsd.spec import ScramblerSpec
from owsd.stats import wilson_interval
from owsd.transmission import parse_format, transmit
from owsd.utility_plot import plot_utility

log = logging.getLogger(__name__)

CHUNK = 1024
MIN_DECODER_TRAIN = 10  # the decoder's 5-fold cross-validation needs two examples a fold


@dataclass
class RunConfig:
    """Settings of one ``owsd run``."""

    out: str | Path = "owsd-run"
    dataset: str | Path = "digits"
    data_dir: Optional[str | Path] = None
    image_size: Optional[int] = None
    cloud: "str | Cloud" = "tiny"
    #: keyword arguments of :func:`owsd.cloud_sources.open_cloud` (interface, threads, HTTP settings)
    cloud_options: Optional[dict] = None
    #: a cloud of another input size: ``bilinear`` (resize, as a service would) or ``refuse``
    cloud_resize: str = "bilinear"
    #: how the scrambled images travel: ``float32``, ``png8`` or ``jpeg:Q`` (:mod:`owsd.transmission`)
    transmit: str = "float32"
    output_sizes: tuple[int, ...] = (10, 100, 1000)
    n_train: Optional[int] = None
    n_test: Optional[int] = None
    key: Optional[str | Path | Key] = None
    seed: Optional[int] = None
    preset: str = "default"
    spec: Optional[str | Path] = None
    encoder: str = "pca"
    classifier: str = "mlp"
    decoder: str = "embedding"
    epochs: int = 30
    batch_size: int = 64
    cache_dir: Optional[str | Path] = None
    device: str = "cpu"
    verbose: bool = True


def resolve_key(cfg: RunConfig) -> Key:
    """The key of a run: ``cfg.key`` (a :class:`Key` or a key file), else a new one (seeded if ``cfg.seed``)."""
    if isinstance(cfg.key, Key):
        return cfg.key
    if cfg.key is not None:
        return Key.load(cfg.key)
    spec = ScramblerSpec.load(cfg.spec) if cfg.spec else get_preset(cfg.preset)
    return generate_key(spec, seed=cfg.seed)


def scramble_and_query(scrambler: Scrambler, cloud: Cloud, embeddings: np.ndarray, *,
                       batch_size: int = 64, transmit_format: str = "float32",
                       out_dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, float, float]:
    """Scramble ``embeddings`` batch by batch and send each batch to the cloud.

    The scrambler writes ``out_dtype`` images (float32; ``torch.uint8``: 8-bit images, as a
    client that sends bytes does), then ``transmit_format`` applies (:func:`owsd.transmission.transmit`).

    Returns ``(probabilities (N, K), scramble seconds, cloud seconds)``.  Cached and uncached
    measurements both scramble this way, with a fresh scrambler per split, so they agree to the
    bit: the scrambler's path, and so its last-bit rounding, depends on the batch and on how many
    images it has seen (:meth:`owsd.scrambler.Scrambler.uses_collapse`; a cache chunk recomputed
    after an interruption is scrambled by a scrambler that has not seen the chunks before it).
    """
    probs, t_s, t_c = [], 0.0, 0.0
    for s in range(0, len(embeddings), batch_size):
        t0 = time.perf_counter()
        with torch.no_grad():
            img = scrambler(torch.from_numpy(embeddings[s:s + batch_size]).to(scrambler.device), out_dtype=out_dtype)
        t1 = time.perf_counter()
        probs.append(cloud.predict(transmit(img.cpu(), transmit_format), batch_size=batch_size, verbose=False))
        t_s += t1 - t0
        t_c += time.perf_counter() - t1
    return np.concatenate(probs), t_s, t_c


class CloudOutputCache:
    """Cloud outputs on disk in atomically written chunks, resumable after interruption."""

    def __init__(self, root: Path, tag: str) -> None:
        self.dir = Path(root) / "outputs" / tag

    def chunk_path(self, start: int) -> Path:
        return self.dir / f"chunk_{start:08d}.npz"

    def query(self, scrambler: Scrambler, cloud: Cloud, embeddings: np.ndarray, *,
              batch_size: int = 64, verbose: bool = True, transmit_format: str = "float32",
              out_dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, dict[str, float]]:
        """Outputs for all embeddings; chunks already on disk are read, not recomputed."""
        n = len(embeddings)
        parts, secs = [], {"scramble": 0.0, "cloud": 0.0}
        cached = 0
        chunk = int(getattr(cloud, "cache_chunk", CHUNK))  # a remote cloud saves its answers more often
        for start in tqdm(range(0, n, chunk), desc="cloud chunks", disable=not verbose, unit="chunk"):
            stop = min(n, start + chunk)
            path = self.chunk_path(start)
            if path.is_file():
                try:
                    z = load_npz(path)
                    if z["probs"].shape[0] == stop - start:
                        parts.append(z["probs"])
                        secs["scramble"] += float(z["scramble_s"])
                        secs["cloud"] += float(z["cloud_s"])
                        cached += stop - start
                        continue
                except (ValueError, KeyError):
                    log.warning("recomputing unreadable cache chunk %s", path)
            p, t_s, t_c = scramble_and_query(scrambler, cloud, embeddings[start:stop], batch_size=batch_size,
                                             transmit_format=transmit_format, out_dtype=out_dtype)
            save_npz(path, probs=p, scramble_s=np.float64(t_s), cloud_s=np.float64(t_c))
            parts.append(p)
            secs["scramble"] += t_s
            secs["cloud"] += t_c
        if cached:
            log.info("read %d of %d cloud outputs from cache %s", cached, n, self.dir)
        return np.concatenate(parts), secs


def cache_tag(split: str, ds: ImageDataset, enc: Encoder, key: Key, cloud: Cloud,
              transmit_format: str = "float32", out_dtype: torch.dtype = torch.float32) -> str:
    """Directory name of a split's cached cloud outputs: dataset content, encoder, key fingerprint, cloud,
    and how the images are sent (scrambler output dtype, transmission format) when not float32.

    The cloud enters by :attr:`~owsd.cloud.Cloud.digest`, a hash of the model itself (weights,
    file bytes, or endpoint and reported version), never by its name alone.
    """
    raw = f"{ds.name}|{split}|{ds.digest()}|{enc.digest()}|{key.fingerprint}|{cloud.digest}|{cloud.num_outputs}"
    if transmit_format != "float32":
        raw += f"|{transmit_format}"
    if out_dtype != torch.float32:
        raw += f"|{out_dtype}"
    safe = lambda t: re.sub(r"[^A-Za-z0-9._-]", "_", t)[:40]  # noqa: E731 - names of user data and models
    return f"{safe(ds.name)}-{split}-{key.fingerprint}-{safe(cloud.name)}-" + hashlib.sha256(raw.encode()).hexdigest()[:12]


def cloud_outputs(split: str, ds: ImageDataset, encoder: Encoder, key: Key, cloud: Cloud, *,
                  embeddings: Optional[np.ndarray] = None, cache_dir: Optional[str | Path] = None,
                  device: str = "cpu", batch_size: int = 64, verbose: bool = True,
                  transmit_format: str = "float32",
                  out_dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, dict[str, float]]:
    """The cloud's outputs for a split's scrambled embeddings, through the on-disk cache.

    Returns ``(probabilities (N, K), seconds {"scramble", "cloud"})``; the seconds of cached
    chunks are those recorded when they were computed.  ``embeddings`` defaults to
    ``encoder.encode(ds.flat())``.  ``out_dtype``: the scrambled images' dtype as the client
    sends them (``torch.uint8``: bytes, as ``owsd bench --transmit uint8``); ``owsd run``, the
    audit and the benchmark all read their cached outputs here.
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    e = encoder.encode(ds.flat()) if embeddings is None else embeddings
    if len(e) != len(ds):
        raise ValueError(f"{len(e)} embeddings for the {len(ds)} images of {ds.name!r} {split}: "
                         "outputs would be cached under the wrong tag")
    return CloudOutputCache(root, cache_tag(split, ds, encoder, key, cloud, transmit_format, out_dtype)).query(
        Scrambler(key, device=device), cloud, e, batch_size=batch_size, verbose=verbose,
        transmit_format=transmit_format, out_dtype=out_dtype)


@dataclass(frozen=True)
class UtilityMeasurement:
    """What :func:`measure_utility` measured: accuracies with Wilson 95% CIs, decoder fit, timings.

    ``accuracy`` / ``accuracy_ci95`` hold ``plaintext``, ``embedding_only`` (a channel with an
    embedding), ``cloud_only`` and ``cloud_plus_embedding`` (with an embedding), the last two
    per output size (``"10"``, ``"1000"``, ...).  ``decoder_test_r2``: per output size, the
    test-set R^2 of the cloud-only model's decoded embeddings (averaged over dimensions;
    ``decoder="embedding"`` only).  ``seconds``: ``embed``, ``scramble``, ``cloud``,
    ``baselines`` (plaintext and embedding-only models), ``internal``, ``total``.
    """

    n_train: int
    n_test: int
    num_classes: int
    output_sizes: tuple[int, ...]
    decoder: str
    transmitted: str
    accuracy: dict
    accuracy_ci95: dict
    decoder_test_r2: dict[str, float]
    seconds: dict[str, float]
    #: accuracy of always answering the training set's most frequent label (the real label distribution)
    chance: float


def majority_chance(train_labels: np.ndarray, test_labels: np.ndarray) -> float:
    """Test accuracy of a model that always answers the most frequent training label.

    Example:
        >>> majority_chance(np.array([0, 0, 1]), np.array([0, 1, 1, 1]))
        0.25
    """
    majority = np.bincount(np.asarray(train_labels)).argmax()
    return float(np.mean(np.asarray(test_labels) == majority))


def utility_split(dataset: str | Path, data_dir: Optional[str | Path] = None, *, n_train: Optional[int] = None,
                  n_test: Optional[int] = None, image_size: Optional[int] = None) -> tuple[ImageDataset, ImageDataset]:
    """The train and test images of a utility measurement: seeded random subsets (all if ``None``)."""
    rng = np.random.default_rng(0)
    train, test = load_splits(dataset, data_dir, image_size=image_size)
    return train.subset(n_train, rng=rng), test.subset(n_test, rng=rng)


def _output_sizes(output_sizes: Sequence[int], cloud: Cloud) -> tuple[int, ...]:
    """The distinct output sizes, sorted; each must lie within the cloud's outputs."""
    sizes = tuple(sorted({int(k) for k in output_sizes}))
    if not sizes or sizes[0] < 1 or sizes[-1] > cloud.num_outputs:
        raise ValueError(f"output sizes must lie in [1, {cloud.num_outputs}], got {tuple(output_sizes)}")
    return sizes


def _check_decoder_data(decoder: str, n_train: int) -> None:
    if decoder == "embedding" and n_train < MIN_DECODER_TRAIN:
        raise ValueError(f"the embedding decoder needs at least {MIN_DECODER_TRAIN} training images, "
                         f"got {n_train} (or use decoder='none')")


def _score(pred: np.ndarray, labels: np.ndarray) -> tuple[float, list[float]]:
    correct = int((pred == labels).sum())
    return correct / len(labels), list(wilson_interval(correct, len(labels)))


def _outputs(ch: Channel, cloud: Cloud, train: ImageDataset, test: ImageDataset, etr, ete, *,
             cache_dir: Optional[str | Path], batch_size: int, device: str, verbose: bool,
             transmit_format: str = "float32") -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """The cloud's outputs for both splits as the channel sends them, and the seconds spent.

    The scheme sending float32 (an :class:`OwsdChannel`): each split's embeddings scrambled by a
    fresh scrambler (:func:`scramble_and_query`), through the on-disk cache with ``cache_dir``;
    any other channel: its own :meth:`~owsd.channel.Channel.scramble_images`.
    """
    if isinstance(ch, OwsdChannel) and not ch.transmit_uint8:
        if cache_dir is not None:
            q = dict(cache_dir=cache_dir, device=device, batch_size=batch_size, verbose=verbose,
                     transmit_format=transmit_format)
            ptr, s_tr = cloud_outputs("train", train, ch.encoder, ch.key, cloud, embeddings=etr, **q)
            pte, s_te = cloud_outputs("test", test, ch.encoder, ch.key, cloud, embeddings=ete, **q)
            return ptr, pte, {k: s_tr[k] + s_te[k] for k in ("scramble", "cloud")}
        q = dict(batch_size=batch_size, transmit_format=transmit_format)
        ptr, s_tr, c_tr = scramble_and_query(Scrambler(ch.key, device=device), cloud, etr, **q)
        pte, s_te, c_te = scramble_and_query(Scrambler(ch.key, device=device), cloud, ete, **q)
        return ptr, pte, {"scramble": s_tr + s_te, "cloud": c_tr + c_te}
    if cache_dir is not None:
        raise ValueError(f"cache_dir caches the float32 outputs of an OwsdChannel; channel {ch.name!r} is not one")
    if transmit_format != "float32":
        raise ValueError(f"a transmission format ({transmit_format}) applies to the scheme's float32 images; channel "
                         f"{ch.name!r} sends its own")
    t0 = time.perf_counter()
    str_, ste = ch.scramble_images(train.images), ch.scramble_images(test.images)
    t1 = time.perf_counter()
    ptr = cloud.predict(str_, batch_size=batch_size, verbose=verbose)
    pte = cloud.predict(ste, batch_size=batch_size, verbose=verbose)
    return ptr, pte, {"scramble": t1 - t0, "cloud": time.perf_counter() - t1}


def measure_utility(*, train: ImageDataset, test: ImageDataset, channel: Channel | Callable, cloud: Cloud,
                    output_sizes: Sequence[int] = (10, 100, 1000), classifier: str = "mlp", epochs: int = 30,
                    decoder: str = "embedding", device: str = "cpu", cache_dir: Optional[str | Path] = None,
                    batch_size: int = 64, verbose: bool = False,
                    transmit_format: str = "float32") -> UtilityMeasurement:
    """The scheme's utility: accuracy of the internal model from the cloud's output (``owsd run``, the audit).

    ``channel`` is a :class:`~owsd.channel.Channel` (the scheme: an
    :class:`~owsd.channel.OwsdChannel`, its encoder already fitted) or any callable scrambler
    (float images ``(N, C, H, W)`` in [0, 1] to images in [0, 1]).  The internal model
    (:class:`~owsd.internal.InternalModel` with ``decoder``; both models of an output size
    share one decoder fit) learns the label from the cloud's output top-k truncated to each
    of ``output_sizes``, alone and, for a channel with an embedding, with it; baselines: a
    plaintext model of the same capacity and the embedding alone.  The scheme's images are
    scrambled from the embeddings in batches of ``batch_size`` (cloud outputs cached on disk
    under ``cache_dir`` if given: :func:`cloud_outputs`); any other channel scrambles the
    images as it sends them.

    Example:
        >>> import torch.nn.functional as F
        >>> train, test = utility_split("digits", n_train=100, n_test=50)
        >>> grey_224 = lambda x: F.interpolate(x.expand(-1, 3, -1, -1), size=(224, 224))
        >>> m = measure_utility(train=train, test=test, channel=grey_224, cloud=make_cloud("tiny"),
        ...                     output_sizes=(10,), epochs=2, decoder="none")
        >>> sorted(m.accuracy), m.transmitted, len(m.accuracy_ci95["cloud_only"]["10"])
        (['cloud_only', 'plaintext'], 'uint8', 2)
    """
    t_all = time.perf_counter()
    ch = channel if isinstance(channel, Channel) else CallableChannel(
        channel, name=getattr(channel, "__name__", "scrambler"))
    sizes = _output_sizes(output_sizes, cloud)
    has_emb = hasattr(ch, "embed")
    if decoder not in DECODERS or (decoder == "embedding" and not has_emb):
        raise ValueError(f"decoder must be one of {DECODERS} ('embedding' needs a channel with an embedding), "
                         f"got {decoder!r} for channel {ch.name!r}")
    _check_decoder_data(decoder, len(train))
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    etr = ch.embed(train.images) if has_emb else None
    ete = ch.embed(test.images) if has_emb else None
    secs["embed"] = time.perf_counter() - t0
    parse_format(transmit_format)
    ptr, pte, s = _outputs(ch, cloud, train, test, etr, ete, cache_dir=cache_dir, batch_size=batch_size,
                           device=device, verbose=verbose, transmit_format=transmit_format)
    secs.update(s)

    kw = dict(kind=classifier, epochs=epochs, device=device, verbose=verbose)
    t0 = time.perf_counter()
    a: dict = {}
    ci: dict = {}
    a["plaintext"], ci["plaintext"] = _score(
        Classifier(**kw).fit(train.flat(), train.labels).predict(test.flat()), test.labels)
    if has_emb:
        a["embedding_only"], ci["embedding_only"] = _score(
            Classifier(**kw).fit(etr, train.labels).predict(ete), test.labels)
    names = ("cloud_only", "cloud_plus_embedding") if has_emb else ("cloud_only",)
    for name in names:
        a[name], ci[name] = {}, {}
    r2: dict[str, float] = {}
    t_internal = 0.0
    for k in sizes:
        qtr, qte = truncate_topk(ptr, k), truncate_topk(pte, k)
        first = None  # both models read the same outputs: the decoder is fitted once (and logged once)
        for name in names:
            t1 = time.perf_counter()
            m = InternalModel(use_embedding=name == "cloud_plus_embedding", decoder=decoder, **kw).fit(
                qtr, train.labels, etr, decoder_from=first)
            first = first or m
            t_internal += time.perf_counter() - t1
            a[name][str(k)], ci[name][str(k)] = _score(m.predict(qte, ete), test.labels)
            if decoder == "embedding" and name == "cloud_only":
                r2[str(k)] = float(m.embedding_decoder.r2(centered_logits(qte), ete).mean())
    secs["baselines"] = time.perf_counter() - t0 - t_internal
    secs["internal"] = t_internal
    secs["total"] = time.perf_counter() - t_all
    return UtilityMeasurement(n_train=len(train), n_test=len(test), num_classes=train.num_classes,
                              output_sizes=sizes, decoder=decoder,
                              transmitted="uint8" if ch.transmit_uint8 else transmit_format, accuracy=a,
                              accuracy_ci95=ci, decoder_test_r2=r2, seconds=secs,
                              chance=majority_chance(train.labels, test.labels))


def check_config(cfg: RunConfig) -> None:
    """Refuse counts that would silently give meaningless results (0 epochs: chance-level models)."""
    if cfg.decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {cfg.decoder!r}")
    for name in ("epochs", "batch_size", "n_train", "n_test"):
        v = getattr(cfg, name)
        if v is None and name.startswith("n_"):
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    sizes = tuple(cfg.output_sizes)
    if not sizes or any(not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1 for k in sizes):
        raise ValueError(f"output sizes must be positive integers, got {cfg.output_sizes}")


def run_pipeline(cfg: RunConfig) -> dict:
    """Run the scheme end to end and write ``results.json`` and ``utility.png`` to ``cfg.out``."""
    check_config(cfg)
    parse_format(cfg.transmit)
    out = Path(cfg.out)
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    train, test = utility_split(cfg.dataset, cfg.data_dir, n_train=cfg.n_train, n_test=cfg.n_test,
                                image_size=cfg.image_size)
    key = resolve_key(cfg)
    spec = key.spec
    cloud = cfg.cloud if isinstance(cfg.cloud, Cloud) else open_cloud(cfg.cloud, **(cfg.cloud_options or {}))
    try:
        return _run_with_cloud(cfg, fit_cloud(cloud, spec.output_shape(), resize=cfg.cloud_resize), train, test, key,
                               out, cache_root)
    finally:
        if cloud is not cfg.cloud:  # opened here (a served cloud's connections): closed here
            cloud.close()


def _run_with_cloud(cfg: RunConfig, cloud: Cloud, train, test, key, out: Path, cache_root: Path) -> dict:
    """:func:`run_pipeline` once its inputs are checked and its cloud is open."""
    spec = key.spec
    sizes = _output_sizes(cfg.output_sizes, cloud)
    _check_decoder_data(cfg.decoder, len(train))  # before the encoder is fitted and the cloud paid
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to be usable
    log.info("run: %s (%d train, %d test), cloud %s, key %s", cfg.dataset, len(train), len(test),
             cloud.name, key.fingerprint)

    t0 = time.perf_counter()
    enc_kwargs = {"verbose": cfg.verbose, "device": cfg.device} if cfg.encoder == "autoencoder" else {}
    encoder = make_encoder(cfg.encoder, spec.embedding_dim, **enc_kwargs).fit(train.flat())
    t_fit = time.perf_counter() - t0
    encoder.save(out / "encoder.npz")
    m = measure_utility(train=train, test=test, channel=OwsdChannel(key, encoder, device=cfg.device), cloud=cloud,
                        output_sizes=sizes, classifier=cfg.classifier, epochs=cfg.epochs, decoder=cfg.decoder,
                        device=cfg.device, cache_dir=cache_root, batch_size=cfg.batch_size, verbose=cfg.verbose,
                        transmit_format=cfg.transmit)
    seconds = {"encode": t_fit + m.seconds["embed"], "scramble": m.seconds["scramble"], "cloud": m.seconds["cloud"],
               "internal": m.seconds["internal"], "baselines": m.seconds["baselines"]}
    n_all = len(train) + len(test)
    results = {
        "dataset": str(cfg.dataset),
        "image_shape": list(train.images.shape[1:]),
        "cloud": cloud.name,
        "cloud_model": cloud.describe(),
        "transmitted": m.transmitted,
        "n_train": len(train),
        "n_test": len(test),
        "num_classes": train.num_classes,
        "chance": m.chance,
        "key_fingerprint": key.fingerprint,
        "key_seeded": key.seeded,
        "spec": spec.to_dict(),
        "encoder": {"kind": cfg.encoder, "dim": spec.embedding_dim},
        "classifier": {"kind": cfg.classifier, "epochs": cfg.epochs},
        # the internal model's decoder and, for cloud-only, the test-set R^2 of its decoded
        # embeddings (per embedding dimension, then averaged)
        "internal": {"decoder": cfg.decoder, "decoder_test_r2": m.decoder_test_r2},
        "output_sizes": list(sizes),
        "accuracy": m.accuracy,
        "accuracy_ci95": m.accuracy_ci95,
        "seconds": seconds,
        "seconds_per_image": {"encode": seconds["encode"] / n_all, "scramble": seconds["scramble"] / n_all,
                              "cloud": seconds["cloud"] / n_all,
                              "internal_train": seconds["internal"] / max(1, 2 * len(sizes) * len(train))},
        **provenance.record(),  # date, command, machine, versions (with the git commit)
    }
    atomic_write_json(out / "results.json", results)
    plot_utility(results, out / "utility.png")
    log.info("wrote %s", out / "results.json")
    return results
