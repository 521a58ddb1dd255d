"""The scheme end to end: encode, scramble, query the cloud, train the internal model.

:func:`run_pipeline` measures the paper's utility table: accuracy of the internal model
from the cloud's output vector (top-k truncated to each output size), with and without
the embedding, against a plaintext model of the same capacity and the embedding alone.
The internal model decodes the embedding from the outputs first (``RunConfig.decoder``,
see :mod:`owsd.internal`).
Cloud outputs are cached on disk by (dataset, encoder, key fingerprint, cloud), in chunks
written atomically, so a rerun (or an interrupted run) does not pay the cloud again.

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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from owsd import provenance
from owsd.stats import wilson_interval
from owsd.cloud import Cloud, default_cache_dir, make_cloud, truncate_topk
from owsd.data import ImageDataset, load_splits
from owsd.encoder import Encoder, make_encoder
from owsd.internal import DECODERS, Classifier, InternalModel, centered_logits
from owsd.io import atomic_write_json, load_npz, save_npz
from owsd.keys import Key, generate_key
from owsd.presets import get_preset
from owsd.scrambler import Scrambler

log = logging.getLogger(__name__)

CHUNK = 1024
MIN_DECODER_TRAIN = 10  # the decoder's 5-fold cross-validation needs two examples a fold


@dataclass
class RunConfig:
    """Settings of one ``owsd run``."""

    out: str | Path = "owsd-run"
    dataset: str = "digits"
    data_dir: Optional[str | Path] = None
    cloud: str = "tiny"
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
    from owsd.spec import ScramblerSpec

    spec = ScramblerSpec.load(cfg.spec) if cfg.spec else get_preset(cfg.preset)
    return generate_key(spec, seed=cfg.seed)


class CloudOutputCache:
    """Cloud outputs on disk in atomically written chunks, resumable after interruption."""

    def __init__(self, root: Path, tag: str) -> None:
        self.dir = Path(root) / "outputs" / tag

    def chunk_path(self, start: int) -> Path:
        return self.dir / f"chunk_{start:08d}.npz"

    def query(self, scrambler: Scrambler, cloud: Cloud, embeddings: np.ndarray, *,
              batch_size: int = 64, verbose: bool = True) -> tuple[np.ndarray, dict[str, float]]:
        """Outputs for all embeddings; chunks already on disk are read, not recomputed."""
        n = len(embeddings)
        parts, secs = [], {"scramble": 0.0, "cloud": 0.0}
        cached = 0
        for start in tqdm(range(0, n, CHUNK), desc="cloud chunks", disable=not verbose, unit="chunk"):
            stop = min(n, start + CHUNK)
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
            probs, t_s, t_c = [], 0.0, 0.0
            e = embeddings[start:stop]
            for s in range(0, len(e), batch_size):
                t0 = time.perf_counter()
                with torch.no_grad():
                    img = scrambler(torch.from_numpy(e[s:s + batch_size]).to(scrambler.device))
                t1 = time.perf_counter()
                probs.append(cloud.predict(img.cpu(), batch_size=batch_size, verbose=False))
                t_s += t1 - t0
                t_c += time.perf_counter() - t1
            p = np.concatenate(probs)
            save_npz(path, probs=p, scramble_s=np.float64(t_s), cloud_s=np.float64(t_c))
            parts.append(p)
            secs["scramble"] += t_s
            secs["cloud"] += t_c
        if cached:
            log.info("read %d of %d cloud outputs from cache %s", cached, n, self.dir)
        return np.concatenate(parts), secs


def cache_tag(split: str, ds: ImageDataset, enc: Encoder, key: Key, cloud: Cloud) -> str:
    """Directory name of a split's cached cloud outputs: dataset content, encoder, key fingerprint, cloud."""
    raw = f"{ds.name}|{split}|{ds.digest()}|{enc.digest()}|{key.fingerprint}|{cloud.name}|{cloud.num_outputs}"
    return f"{ds.name}-{split}-{key.fingerprint}-{cloud.name}-" + hashlib.sha256(raw.encode()).hexdigest()[:12]


def cloud_outputs(split: str, ds: ImageDataset, encoder: Encoder, key: Key, cloud: Cloud, *,
                  embeddings: Optional[np.ndarray] = None, cache_dir: Optional[str | Path] = None,
                  device: str = "cpu", batch_size: int = 64,
                  verbose: bool = True) -> tuple[np.ndarray, dict[str, float]]:
    """The cloud's outputs for a split's scrambled embeddings, through the on-disk cache.

    Returns ``(probabilities (N, K), seconds {"scramble", "cloud"})``; the seconds of cached
    chunks are those recorded when they were computed.  ``embeddings`` defaults to
    ``encoder.encode(ds.flat())``.
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    e = encoder.encode(ds.flat()) if embeddings is None else embeddings
    if len(e) != len(ds):
        raise ValueError(f"{len(e)} embeddings for the {len(ds)} images of {ds.name!r} {split}: "
                         "outputs would be cached under the wrong tag")
    return CloudOutputCache(root, cache_tag(split, ds, encoder, key, cloud)).query(
        Scrambler(key, device=device), cloud, e, batch_size=batch_size, verbose=verbose)


def _accuracy(clf_pred: np.ndarray, labels: np.ndarray) -> dict:
    correct = int((clf_pred == labels).sum())
    lo, hi = wilson_interval(correct, len(labels))
    return {"accuracy": correct / len(labels), "ci95": [lo, hi]}


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
    out = Path(cfg.out)
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    rng = np.random.default_rng(0)
    train, test = load_splits(cfg.dataset, cfg.data_dir)
    train, test = train.subset(cfg.n_train, rng=rng), test.subset(cfg.n_test, rng=rng)
    key = resolve_key(cfg)
    spec = key.spec
    cloud = make_cloud(cfg.cloud)
    if spec.output_shape() != (3, *cloud.input_size):
        raise ValueError(f"the key's scrambler makes {spec.output_shape()} images but cloud {cloud.name!r} "
                         f"expects (3, {cloud.input_size[0]}, {cloud.input_size[1]})")
    sizes = tuple(sorted(set(int(k) for k in cfg.output_sizes)))
    if not sizes or sizes[0] < 1 or sizes[-1] > cloud.num_outputs:
        raise ValueError(f"output sizes must lie in [1, {cloud.num_outputs}], got {cfg.output_sizes}")
    if cfg.decoder == "embedding" and len(train) < MIN_DECODER_TRAIN:
        raise ValueError(f"the embedding decoder needs at least {MIN_DECODER_TRAIN} training images, "
                         f"got {len(train)} (or use decoder='none')")
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to be usable
    log.info("run: %s (%d train, %d test), cloud %s, key %s", cfg.dataset, len(train), len(test),
             cloud.name, key.fingerprint)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    xtr, xte = train.flat(), test.flat()
    enc_kwargs = {"verbose": cfg.verbose, "device": cfg.device} if cfg.encoder == "autoencoder" else {}
    encoder = make_encoder(cfg.encoder, spec.embedding_dim, **enc_kwargs).fit(xtr)
    etr, ete = encoder.encode(xtr), encoder.encode(xte)
    seconds["encode"] = time.perf_counter() - t0
    encoder.save(out / "encoder.npz")

    query = dict(cache_dir=cache_root, device=cfg.device, batch_size=cfg.batch_size, verbose=cfg.verbose)
    ptr, s_tr = cloud_outputs("train", train, encoder, key, cloud, embeddings=etr, **query)
    pte, s_te = cloud_outputs("test", test, encoder, key, cloud, embeddings=ete, **query)
    seconds["scramble"] = s_tr["scramble"] + s_te["scramble"]
    seconds["cloud"] = s_tr["cloud"] + s_te["cloud"]

    clf_kw = dict(kind=cfg.classifier, epochs=cfg.epochs, device=cfg.device, verbose=cfg.verbose)
    acc: dict = {"cloud_only": {}, "cloud_plus_embedding": {}}
    t0 = time.perf_counter()
    acc["plaintext"] = _accuracy(Classifier(**clf_kw).fit(xtr, train.labels).predict(xte), test.labels)
    acc["embedding_only"] = _accuracy(Classifier(**clf_kw).fit(etr, train.labels).predict(ete), test.labels)
    t_internal = 0.0
    decoder_r2: dict[str, float] = {}
    for k in sizes:
        qtr, qte = truncate_topk(ptr, k), truncate_topk(pte, k)
        first = None  # both models read the same outputs: the decoder is fitted once (and logged once)
        for name, use_emb in (("cloud_only", False), ("cloud_plus_embedding", True)):
            t1 = time.perf_counter()
            m = InternalModel(use_embedding=use_emb, decoder=cfg.decoder, **clf_kw).fit(
                qtr, train.labels, etr, decoder_from=first)
            first = first or m
            t_internal += time.perf_counter() - t1
            acc[name][str(k)] = _accuracy(m.predict(qte, ete), test.labels)
            if cfg.decoder == "embedding" and not use_emb:
                decoder_r2[str(k)] = float(m.embedding_decoder.r2(centered_logits(qte), ete).mean())
    seconds["internal"] = t_internal
    seconds["baselines"] = time.perf_counter() - t0 - t_internal
    n_all = len(train) + len(test)

    results = {
        "dataset": cfg.dataset,
        "cloud": cloud.name,
        "n_train": len(train),
        "n_test": len(test),
        "num_classes": train.num_classes,
        "chance": 1.0 / train.num_classes,
        "key_fingerprint": key.fingerprint,
        "key_seeded": key.seeded,
        "spec": spec.to_dict(),
        "encoder": {"kind": cfg.encoder, "dim": spec.embedding_dim},
        "classifier": {"kind": cfg.classifier, "epochs": cfg.epochs},
        # the internal model's decoder and, for cloud-only, the test-set R^2 of its decoded
        # embeddings (per embedding dimension, then averaged)
        "internal": {"decoder": cfg.decoder, "decoder_test_r2": decoder_r2},
        "output_sizes": list(sizes),
        "accuracy": {
            "plaintext": acc["plaintext"]["accuracy"],
            "embedding_only": acc["embedding_only"]["accuracy"],
            "cloud_only": {k: v["accuracy"] for k, v in acc["cloud_only"].items()},
            "cloud_plus_embedding": {k: v["accuracy"] for k, v in acc["cloud_plus_embedding"].items()},
        },
        "accuracy_ci95": {
            "plaintext": acc["plaintext"]["ci95"],
            "embedding_only": acc["embedding_only"]["ci95"],
            "cloud_only": {k: v["ci95"] for k, v in acc["cloud_only"].items()},
            "cloud_plus_embedding": {k: v["ci95"] for k, v in acc["cloud_plus_embedding"].items()},
        },
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


def plot_utility(results: dict, path: Path) -> None:
    """Accuracy against output size, with the plaintext and embedding-only baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc, ci = results["accuracy"], results["accuracy_ci95"]
    ks = [int(k) for k in acc["cloud_only"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, style in (("cloud_only", "o-"), ("cloud_plus_embedding", "s--")):
        ys = [acc[name][str(k)] for k in ks]
        err = np.array([[y - ci[name][str(k)][0], ci[name][str(k)][1] - y] for k, y in zip(ks, ys)]).T
        ax.errorbar(ks, ys, yerr=err, fmt=style, capsize=3, label=name.replace("_", " "))
    ax.axhline(acc["plaintext"], color="k", lw=1, label=f"plaintext ({acc['plaintext']:.3f})")
    ax.axhline(acc["embedding_only"], color="g", lw=1, ls=":", label=f"embedding only ({acc['embedding_only']:.3f})")
    ax.axhline(results["chance"], color="r", lw=1, ls="-.", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("cloud output size (top-k returned)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{results['dataset']} / {results['cloud']} / spec {results['spec']['name']} "
                 f"(n_train={results['n_train']})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    from owsd.io import atomic_write_bytes
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
