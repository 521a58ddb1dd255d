"""The price of privacy, measured: OWSD against homomorphic-encryption inference.

One run, one machine, one data set (MNIST from ``--data-dir``; scikit-learn's digits when
no directory is given, with a note in the JSON):

* **HE**: the square-activation CNN of TenSEAL's encrypted-MNIST tutorial
  (:mod:`owsd.he`), CKKS.  Per image: client seconds (encode + encrypt + serialize;
  deserialize + decrypt), server seconds (deserialize, evaluate, serialize), bytes each
  way (lengths of the serialized ciphertexts), the one-time public-key upload (length of
  the serialized public context), accuracy of the decrypted scores against the same
  network in plaintext.
* **OWSD**: per image, client seconds (PCA encode, scramble with the ``default`` preset's
  key to the uint8 image that is sent, internal model on the reply), cloud seconds for
  each cloud (EfficientNet-Lite0 via onnxruntime, the tiny cloud), bytes each way
  (the raw uint8 3x224x224 image, no PNG/JPEG; the float32 output vector, and its top-k),
  and the internal model's accuracy, trained on a training subset whose cloud outputs are
  cached on disk (:class:`owsd.pipeline.CloudOutputCache`).
* **Plaintext**: the same clouds on the unscrambled image (grey 28x28 resized to
  224x224 RGB): the floor.

Timings are repeated ``repeats`` times (HE and OWSD rounds interleaved, so both see the
same machine load); each figure is the median over the rounds with its min..max spread,
and every ratio is computed per round from the measured numbers, then summarized.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:  # doctest: +SKIP
    ...     res = run_benchmark(BenchConfig(he_images=2, owsd_images=8, repeats=2, train=200, test=50,
    ...                                     clouds=("tiny",), he_epochs=1, epochs=2, verbose=False,
    ...                                     cache_dir=d))
    >>> res["ratio"]["he_over_owsd"] > 1  # doctest: +SKIP
    True
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import hashlib
import logging
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from owsd.cloud import CLOUD_NAMES, Cloud, default_cache_dir, make_cloud
from owsd.data import ImageDataset, load_splits
from owsd.encoder import PCAEncoder
from owsd.internal import Classifier, InternalModel
from owsd.io import atomic_write_json
from owsd.keys import generate_key
from owsd.pipeline import CloudOutputCache, wilson_interval
from owsd.presets import get_preset
from owsd.scrambler import Scrambler

log = logging.getLogger(__name__)

SCHEMA = "owsd-bench-he-vs-owsd/1"
#: accuracy gap (absolute) within which two pipelines count as "comparable" for the targets
COMPARABLE_GAP = 0.05


@dataclass
class BenchConfig:
    """Settings of one ``owsd bench`` run (defaults: ~10 minutes on 2 cores, first run)."""

    data_dir: Optional[str | Path] = None
    he_images: int = 20
    owsd_images: int = 256
    repeats: int = 3
    train: int = 3000
    test: int = 1000
    clouds: tuple[str, ...] = ("efficientnet-lite0", "tiny")
    he_epochs: int = 3
    he_train: Optional[int] = None
    epochs: int = 20
    batch_size: int = 64
    topk: int = 10
    preset: str = "default"
    seed: int = 0
    cache_dir: Optional[str | Path] = None
    verbose: bool = True
    #: what is sent to the cloud: float32 tensors (the scheme's setting, as in ``owsd run``) or uint8
    transmit: str = "float32"

    def validate(self) -> None:
        if self.transmit not in ("float32", "uint8"):
            raise ValueError(f"transmit must be 'float32' or 'uint8', got {self.transmit!r}")
        for name in ("he_images", "owsd_images", "repeats", "train", "test", "he_epochs", "epochs",
                     "batch_size", "topk"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not self.clouds:
            raise ValueError("at least one cloud is needed")
        for c in self.clouds:
            if c not in CLOUD_NAMES:
                raise ValueError(f"unknown cloud {c!r}; expected some of {CLOUD_NAMES}")


# --- small helpers --------------------------------------------------------------------
def summarize(values: Sequence[float]) -> dict:
    """Median, min, max, relative spread ``(max - min) / median`` and the values themselves.

    Example:
        >>> summarize([1.0, 3.0, 2.0])["median"], summarize([1.0, 3.0, 2.0])["rel_spread"]
        (2.0, 1.0)
    """
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        raise ValueError("nothing to summarize")
    med = float(np.median(a))
    return {"median": med, "min": float(a.min()), "max": float(a.max()),
            "rel_spread": float((a.max() - a.min()) / med) if med else 0.0,
            "runs": [float(v) for v in a]}


def machine_info() -> dict:
    """CPU model (``lscpu``'s model name), cores usable, threads and library versions."""
    model = None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name:")), None)
    except (OSError, subprocess.SubprocessError):
        pass
    if not model:
        try:
            text = Path("/proc/cpuinfo").read_text()
            model = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name")), None)
        except OSError:
            pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("onnxruntime", "tenseal"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    return {"cpu_model": model or platform.processor() or platform.machine(), "cores": cores,
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(), "versions": versions}


def _loadavg() -> Optional[list[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def grey_to_cloud_input(images: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Plaintext path: grey uint8 ``(N, 1, h, w)`` to float RGB ``(N, 3, H, W)`` in [0, 1] (bilinear)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
    return x.expand(-1, 3, -1, -1)


def topk_reply(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """What a top-k API returns for one output vector: uint16 class indices and float32 scores."""
    idx = np.argsort(-probs)[:k]
    return idx.astype(np.uint16), probs[idx].astype(np.float32)


def _wire_dtype(transmit: str) -> torch.dtype:
    return torch.uint8 if transmit == "uint8" else torch.float32


class _Transmitted:
    """The scrambler as the client uses it: the image that is sent (for the output cache)."""

    def __init__(self, scrambler: Scrambler, transmit: str) -> None:
        self.scrambler, self.device, self.dtype = scrambler, scrambler.device, _wire_dtype(transmit)

    def __call__(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.scrambler(embeddings, out_dtype=self.dtype)


def _accuracy(pred: np.ndarray, labels: np.ndarray) -> dict:
    correct = int((np.asarray(pred) == np.asarray(labels)).sum())
    return {"accuracy": correct / len(labels), "ci95": list(wilson_interval(correct, len(labels))),
            "n": int(len(labels))}


def _load_data(cfg: BenchConfig) -> tuple[ImageDataset, ImageDataset, dict]:
    if cfg.data_dir is None:
        train, test = load_splits("digits")
        note = ("no --data-dir given: scikit-learn's 8x8 digits stand in for MNIST (the HE network then uses "
                "a 3x3 stride-1 convolution); pass --data-dir DIR holding mnist/ for the MNIST benchmark")
        log.warning(note)
        return train, test, {"dataset": "digits", "data_dir": None, "note": note}
    train, test = load_splits("mnist", cfg.data_dir)
    return train, test, {"dataset": "mnist", "data_dir": str(cfg.data_dir), "note": None}


# --- the HE side ----------------------------------------------------------------------
def _he_network(cfg: BenchConfig, train: ImageDataset, cache_root: Path):
    """Train the square-activation CNN (cached on disk by data, settings and seed)."""
    from owsd import he

    data = train.subset(cfg.he_train, rng=np.random.default_rng(cfg.seed + 1))
    tag = hashlib.sha256(f"{data.digest()}|{cfg.he_epochs}|{cfg.seed}|v1".encode()).hexdigest()[:16]
    path = cache_root / "bench" / f"he-net-{train.name}-{tag}.npz"
    if path.is_file():
        try:
            net = he.load_net(path)
            log.info("loaded HE network from %s", path)
            return net, len(data), 0.0, True
        except (ValueError, KeyError, RuntimeError):
            log.warning("retraining: unreadable HE network cache %s", path)
    t0 = time.perf_counter()
    net = he.train_square_net(data.images, data.labels, epochs=cfg.he_epochs, seed=cfg.seed,
                              num_classes=train.num_classes, verbose=cfg.verbose)
    secs = time.perf_counter() - t0
    he.save_net(net, path)
    return net, len(data), secs, False


def he_round(client, server, images: np.ndarray, *, verbose: bool = False) -> dict:
    """Encrypted inference of each image; per-image seconds, bytes (serialized lengths) and scores."""
    enc_s, srv_s, dec_s, up, down, scores = [], [], [], [], [], []
    for img in tqdm(images, desc="HE inference", disable=not verbose, unit="img"):
        t0 = time.perf_counter()
        payload_up = client.encrypt(img[0])
        t1 = time.perf_counter()
        payload_down = server.infer(payload_up)
        t2 = time.perf_counter()
        s = client.decrypt(payload_down)
        t3 = time.perf_counter()
        enc_s.append(t1 - t0)
        srv_s.append(t2 - t1)
        dec_s.append(t3 - t2)
        up.append(len(payload_up))
        down.append(len(payload_down))
        scores.append(s)
    return {"encrypt": np.array(enc_s), "server": np.array(srv_s), "decrypt": np.array(dec_s),
            "bytes_up": np.array(up), "bytes_down": np.array(down), "scores": np.stack(scores)}


# --- the OWSD side --------------------------------------------------------------------
def owsd_round(encoder, scrambler: Scrambler, clouds: dict[str, Cloud], internal: dict[str, InternalModel],
               images: ImageDataset, *, batch_size: int, topk: int, verbose: bool = False,
               transmit: str = "float32") -> dict:
    """Time the client (encode, scramble, internal model) and each cloud, scrambled and plain."""
    wire = _wire_dtype(transmit)
    n = len(images)
    flat = images.flat()
    t = {"encode": 0.0, "scramble": 0.0}
    t.update({f"cloud:{c}": 0.0 for c in clouds})
    t.update({f"internal:{c}": 0.0 for c in clouds})
    t.update({f"plain_cloud:{c}": 0.0 for c in clouds})
    t["plain_prep"] = 0.0
    preds: dict[str, list] = {c: [] for c in clouds}
    up = down = topk_bytes = 0
    with torch.no_grad():
        for s in tqdm(range(0, n, batch_size), desc="OWSD timing", disable=not verbose, unit="batch"):
            t0 = time.perf_counter()
            emb = encoder.encode(flat[s:s + batch_size])
            t1 = time.perf_counter()
            sent = scrambler(torch.from_numpy(emb), out_dtype=wire).numpy()  # what goes on the wire
            t2 = time.perf_counter()
            t["encode"] += t1 - t0
            t["scramble"] += t2 - t1
            up = sent[0].nbytes
            for name, cloud in clouds.items():
                t0 = time.perf_counter()
                reply = cloud.predict(torch.from_numpy(sent), batch_size=batch_size, verbose=False).astype(np.float32)
                t1 = time.perf_counter()
                preds[name].append(internal[name].predict(reply))
                t2 = time.perf_counter()
                t[f"cloud:{name}"] += t1 - t0
                t[f"internal:{name}"] += t2 - t1
                down = reply[0].nbytes
                topk_bytes = sum(a.nbytes for a in topk_reply(reply[0], topk))
            t0 = time.perf_counter()
            some_cloud = next(iter(clouds.values()))
            plain = grey_to_cloud_input(images.images[s:s + batch_size], some_cloud.input_size)
            t["plain_prep"] += time.perf_counter() - t0
            for name, cloud in clouds.items():
                t0 = time.perf_counter()
                cloud.predict(plain, batch_size=batch_size, verbose=False)
                t[f"plain_cloud:{name}"] += time.perf_counter() - t0
    return {"per_image": {k: v / n for k, v in t.items()}, "bytes_up": int(up), "bytes_down": int(down),
            "bytes_down_topk": int(topk_bytes),
            "accuracy": {c: float((np.concatenate(p) == images.labels).mean()) for c, p in preds.items()}}


def _owsd_accuracy(cfg: BenchConfig, key, encoder, scrambler: Scrambler, cloud: Cloud, train: ImageDataset,
                   test: ImageDataset, etr: np.ndarray, ete: np.ndarray, cache_root: Path) -> tuple[dict, dict]:
    """Internal models (cloud only; cloud + embedding) trained on cached cloud outputs."""
    sent = _Transmitted(scrambler, cfg.transmit)
    wire = "u8" if cfg.transmit == "uint8" else "f32"

    def tag(split: str, ds: ImageDataset) -> str:
        raw = f"bench|{wire}|{ds.name}|{split}|{ds.digest()}|{encoder.digest()}|{key.fingerprint}|{cloud.name}"
        return (f"bench-{ds.name}-{split}-{key.fingerprint}-{cloud.name}-{wire}-"
                + hashlib.sha256(raw.encode()).hexdigest()[:12])

    ptr, _ = CloudOutputCache(cache_root, tag("train", train)).query(
        sent, cloud, etr, batch_size=cfg.batch_size, verbose=cfg.verbose)
    pte, _ = CloudOutputCache(cache_root, tag("test", test)).query(
        sent, cloud, ete, batch_size=cfg.batch_size, verbose=cfg.verbose)
    kw = dict(kind="mlp", epochs=cfg.epochs, seed=cfg.seed, verbose=cfg.verbose)
    models, acc = {}, {}
    for name, use_emb in (("cloud_only", False), ("cloud_plus_embedding", True)):
        m = InternalModel(use_embedding=use_emb, **kw).fit(ptr, train.labels, etr,
                                                           decoder_from=models.get("cloud_only"))
        acc[name] = _accuracy(m.predict(pte, ete), test.labels)
        models[name] = m
    return acc, models


# --- the run --------------------------------------------------------------------------
def run_benchmark(cfg: BenchConfig) -> dict:
    """Run the whole comparison and return the result document (see ``docs/he-vs-owsd.md``)."""
    cfg.validate()
    from owsd import he

    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    started = time.perf_counter()
    machine = machine_info()
    machine["loadavg_start"] = _loadavg()
    train_all, test_all, data_info = _load_data(cfg)
    rng = np.random.default_rng(cfg.seed)
    train = train_all.subset(cfg.train, rng=rng)
    test = test_all.subset(max(cfg.test, cfg.owsd_images, cfg.he_images), rng=rng)
    acc_test = test.subset(cfg.test)
    timing_set = test.subset(cfg.owsd_images)
    he_set = test.subset(cfg.he_images)
    setup: dict[str, float] = {}

    # HE: network, keys, server
    net, he_train_n, setup["he_train"], he_cached = _he_network(cfg, train_all, cache_root)
    params = he.CkksParams()
    client = he.HeClient(net.geometry, params)
    t0 = time.perf_counter()
    public = client.public_context()
    setup["he_public_context_serialize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    server = he.HeServer(net, public)
    setup["he_server_load_keys"] = time.perf_counter() - t0
    setup["he_keygen"] = client.keygen_seconds
    plain_full = he.plaintext_logits(net, test_all.images).argmax(1)
    plain_he_scores = he.plaintext_logits(net, he_set.images)

    # OWSD: key, encoder, clouds, internal models (cloud outputs cached)
    spec = get_preset(cfg.preset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a seeded key: reproducible, recorded as such below
        key = generate_key(spec, seed=cfg.seed)
    t0 = time.perf_counter()
    encoder = PCAEncoder(spec.embedding_dim).fit(train.flat())
    etr, ete = encoder.encode(train.flat()), encoder.encode(acc_test.flat())
    setup["owsd_encoder_fit"] = time.perf_counter() - t0
    scrambler = Scrambler(key)
    clouds = {name: make_cloud(name) for name in cfg.clouds}
    for name, cloud in clouds.items():
        if spec.output_shape() != (3, *cloud.input_size):
            raise ValueError(f"preset {cfg.preset!r} makes {spec.output_shape()} images; cloud {name!r} "
                             f"expects (3, {cloud.input_size[0]}, {cloud.input_size[1]})")
    t0 = time.perf_counter()
    owsd_acc, internal = {}, {}
    for name, cloud in clouds.items():
        owsd_acc[name], models = _owsd_accuracy(cfg, key, encoder, scrambler, cloud, train, acc_test,
                                                etr, ete, cache_root)
        internal[name] = models["cloud_only"]
    emb_only = _accuracy(Classifier(kind="mlp", epochs=cfg.epochs, seed=cfg.seed, verbose=cfg.verbose)
                         .fit(etr, train.labels).predict(ete), acc_test.labels)
    setup["owsd_accuracy_stage"] = time.perf_counter() - t0

    # warm-up (first calls load kernels and allocate; not timed)
    owsd_round(encoder, scrambler, clouds, internal, timing_set.subset(min(8, len(timing_set))),
               batch_size=cfg.batch_size, topk=cfg.topk, transmit=cfg.transmit)

    # timed rounds, HE and OWSD interleaved
    he_rounds, owsd_rounds = [], []
    for r in range(cfg.repeats):
        log.info("timing round %d/%d", r + 1, cfg.repeats)
        he_rounds.append(he_round(client, server, he_set.images, verbose=cfg.verbose))
        owsd_rounds.append(owsd_round(encoder, scrambler, clouds, internal, timing_set,
                                      batch_size=cfg.batch_size, topk=cfg.topk, verbose=cfg.verbose,
                                      transmit=cfg.transmit))
    machine["loadavg_end"] = _loadavg()

    res = _assemble(cfg, machine, data_info, train, acc_test, timing_set, he_set, net, he_train_n, he_cached,
                    params, public, server, plain_full, test_all, plain_he_scores, he_rounds, key, spec, clouds,
                    owsd_acc, emb_only, owsd_rounds, setup)
    res["wall_seconds"] = time.perf_counter() - started
    return res


def _assemble(cfg, machine, data_info, train, acc_test, timing_set, he_set, net, he_train_n, he_cached, params,
              public, server, plain_full, test_all, plain_he_scores, he_rounds, key, spec, clouds, owsd_acc,
              emb_only, owsd_rounds, setup) -> dict:
    primary = cfg.clouds[0]
    n_he = len(he_set)
    # --- HE
    he_client_r = [float((h["encrypt"] + h["decrypt"]).mean()) for h in he_rounds]
    he_server_r = [float(h["server"].mean()) for h in he_rounds]
    he_total_r = [c + s for c, s in zip(he_client_r, he_server_r)]
    dec_pred = [h["scores"].argmax(1) for h in he_rounds]
    up_all = np.concatenate([h["bytes_up"] for h in he_rounds])
    down_all = np.concatenate([h["bytes_down"] for h in he_rounds])
    stage_total = {k: v / (n_he * len(he_rounds)) for k, v in server.stage_seconds.items()}
    he_acc = _accuracy(dec_pred[0], he_set.labels)
    he_doc = {
        "library": f"tenseal {machine['versions'].get('tenseal')}", "scheme": "CKKS", "params": params.to_dict(),
        "network": {"layers": net.describe(), "train_images": he_train_n, "epochs": cfg.he_epochs,
                    "loaded_from_cache": he_cached,
                    "parameters": int(sum(p.numel() for p in net.parameters()))},
        "n_images": n_he, "repeats": cfg.repeats,
        "seconds_per_image": summarize(he_total_r)["median"],
        "client_seconds_per_image": summarize(he_client_r)["median"],
        "server_seconds_per_image": summarize(he_server_r)["median"],
        "timing": {"total": summarize(he_total_r), "client": summarize(he_client_r),
                   "server": summarize(he_server_r),
                   "encrypt": summarize([float(h["encrypt"].mean()) for h in he_rounds]),
                   "decrypt": summarize([float(h["decrypt"].mean()) for h in he_rounds]),
                   "server_stages_mean": stage_total},
        "bytes": {"client_to_server_per_image": float(up_all.mean()),
                  "client_to_server_range": [int(up_all.min()), int(up_all.max())],
                  "server_to_client_per_image": float(down_all.mean()),
                  "server_to_client_range": [int(down_all.min()), int(down_all.max())],
                  "keys_one_time": len(public),
                  "definition": "lengths of the serialized CKKS ciphertexts (im2col-encoded image up, 10 scores "
                                "down); keys_one_time: the serialized public context (public, relinearization "
                                "and Galois keys, no secret key) uploaded once"},
        "setup_seconds": {"keygen": setup["he_keygen"], "serialize_public_context": setup["he_public_context_serialize"],
                          "server_load_keys": setup["he_server_load_keys"], "train_network": setup["he_train"]},
        "accuracy": he_acc["accuracy"],
        "accuracy_detail": {
            "decrypted": he_acc,
            "plaintext_same_images": _accuracy(plain_he_scores.argmax(1), he_set.labels),
            "plaintext_full_test": _accuracy(plain_full, test_all.labels),
            "argmax_agreement_with_plaintext": float((dec_pred[0] == plain_he_scores.argmax(1)).mean()),
            "max_abs_error_vs_plaintext": float(max(np.abs(h["scores"] - plain_he_scores).max() for h in he_rounds)),
            "stable_across_repeats": bool(all((p == dec_pred[0]).all() for p in dec_pred)),
        },
    }
    # --- OWSD and plaintext
    per = [o["per_image"] for o in owsd_rounds]
    clouds_doc, plain_clouds = {}, {}
    for name in clouds:
        client_r = [p["encode"] + p["scramble"] + p[f"internal:{name}"] for p in per]
        cloud_r = [p[f"cloud:{name}"] for p in per]
        total_r = [a + b for a, b in zip(client_r, cloud_r)]
        plain_r = [p["plain_prep"] + p[f"plain_cloud:{name}"] for p in per]
        clouds_doc[name] = {
            "client_seconds_per_image": summarize(client_r)["median"],
            "cloud_seconds_per_image": summarize(cloud_r)["median"],
            "seconds_per_image": summarize(total_r)["median"],
            "timing": {"client": summarize(client_r), "cloud": summarize(cloud_r), "total": summarize(total_r),
                       "internal_model": summarize([p[f"internal:{name}"] for p in per])},
            "accuracy": owsd_acc[name]["cloud_only"]["accuracy"],
            "accuracy_detail": owsd_acc[name],
            "accuracy_on_timing_images": float(np.median([o["accuracy"][name] for o in owsd_rounds])),
            "ratio": {"client_over_cloud": summarize([c / k for c, k in zip(client_r, cloud_r)]),
                      "over_plaintext": summarize([t / p for t, p in zip(total_r, plain_r)]),
                      "he_over_owsd": summarize([h / t for h, t in zip(he_total_r, total_r)])},
        }
        plain_clouds[name] = {
            "client_seconds_per_image": summarize([p["plain_prep"] for p in per])["median"],
            "cloud_seconds_per_image": summarize([p[f"plain_cloud:{name}"] for p in per])["median"],
            "seconds_per_image": summarize(plain_r)["median"],
            "timing": {"cloud": summarize([p[f"plain_cloud:{name}"] for p in per]), "total": summarize(plain_r)},
        }
    o0 = owsd_rounds[0]
    pc = clouds_doc[primary]
    owsd_doc = {
        "cloud": primary, "spec": spec.name, "key_fingerprint": key.fingerprint, "key_seeded": key.seeded,
        "encoder": f"pca-{spec.embedding_dim}", "internal_model": f"ridge decoder to the embedding, then mlp, {cfg.epochs} epochs",
        "train_images": len(train), "test_images": len(acc_test), "timing_images": len(timing_set),
        "batch_size": cfg.batch_size, "repeats": cfg.repeats,
        "client_seconds_per_image": pc["client_seconds_per_image"],
        "cloud_seconds_per_image": pc["cloud_seconds_per_image"],
        "seconds_per_image": pc["seconds_per_image"],
        "client_stages": {k: summarize([p[k] for p in per]) for k in ("encode", "scramble")},
        "accuracy": pc["accuracy"],
        "accuracy_embedding_only": emb_only,
        "bytes": {"client_to_server_per_image": o0["bytes_up"], "server_to_client_per_image": o0["bytes_down"],
                  "server_to_client_topk": {"k": cfg.topk, "bytes": o0["bytes_down_topk"]},
                  "transmit": cfg.transmit,
                  "definition": f"up: the scrambled image as sent, raw {cfg.transmit} 3x224x224 (no PNG/JPEG, no headers); "
                                "down: the cloud's output vector, float32 x 1000; top-k: k uint16 class indices "
                                "plus k float32 scores"},
        "clouds": clouds_doc,
        "setup_seconds": {"encoder_fit": setup["owsd_encoder_fit"],
                          "accuracy_stage_incl_cached_cloud_outputs": setup["owsd_accuracy_stage"]},
    }
    pp = plain_clouds[primary]
    plain_doc = {"cloud": primary, "client_seconds_per_image": pp["client_seconds_per_image"],
                 "cloud_seconds_per_image": pp["cloud_seconds_per_image"], "seconds_per_image": pp["seconds_per_image"],
                 "client_to_server_per_image": int(3 * np.prod(clouds[primary].input_size)),
                 "note": "the same cloud on the unscrambled image (grey resized bilinearly to 224x224, replicated "
                         "to RGB; the resize is the client cost); no accuracy: the ImageNet cloud has no digit head",
                 "clouds": plain_clouds}
    he_over = pc["ratio"]["he_over_owsd"]
    ratio = {"he_over_owsd": he_over["median"],
             "he_client_over_owsd_client": summarize([a / (p["encode"] + p["scramble"] + p[f"internal:{primary}"])
                                                      for a, p in zip(he_client_r, per)])["median"],
             "he_server_over_owsd_cloud": summarize([a / p[f"cloud:{primary}"]
                                                     for a, p in zip(he_server_r, per)])["median"],
             "owsd_over_plaintext": pc["ratio"]["over_plaintext"]["median"],
             "owsd_client_over_cloud": pc["ratio"]["client_over_cloud"]["median"],
             "spread": {"he_over_owsd": he_over, "owsd_over_plaintext": pc["ratio"]["over_plaintext"],
                        "owsd_client_over_cloud": pc["ratio"]["client_over_cloud"]},
             "definition": "per timing round: HE seconds per image (client + server) / OWSD seconds per image "
                           "(client + cloud), OWSD / plaintext (resize + cloud), OWSD client / OWSD cloud; "
                           "median (and min..max under spread) over rounds"}
    gap = he_doc["accuracy_detail"]["plaintext_full_test"]["accuracy"] - pc["accuracy"]
    targets = {
        "owsd_client_le_10pct_of_cloud": {"target": 0.10, "measured": ratio["owsd_client_over_cloud"],
                                          "worst_round": pc["ratio"]["client_over_cloud"]["max"],
                                          "met": bool(ratio["owsd_client_over_cloud"] <= 0.10)},
        "he_over_owsd_ge_1000": {"target": 1000.0, "measured": ratio["he_over_owsd"],
                                 "worst_round": he_over["min"],
                                 "accuracy_gap_he_plaintext_minus_owsd": gap,
                                 "comparable_accuracy": bool(abs(gap) <= COMPARABLE_GAP),
                                 "comparable_definition": f"|gap| <= {COMPARABLE_GAP}",
                                 "met": bool(ratio["he_over_owsd"] >= 1000 and abs(gap) <= COMPARABLE_GAP)},
    }
    return {"schema": SCHEMA, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine, "data": data_info, "config": _config_doc(cfg),
            "he": he_doc, "owsd": owsd_doc, "plaintext": plain_doc, "ratio": ratio, "targets": targets}


def _config_doc(cfg: BenchConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["clouds"] = list(cfg.clouds)
    for k in ("data_dir", "cache_dir"):
        d[k] = None if d[k] is None else str(d[k])
    return d


# --- presentation ---------------------------------------------------------------------
def _secs(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


def _bytes(b: float) -> str:
    b = float(b)
    if b >= 1e6:
        return f"{b / 1e6:.1f} MB"
    if b >= 1e3:
        return f"{b / 1e3:.1f} kB"
    return f"{b:.0f} B"


def _spread(st: dict, fmt=_secs) -> str:
    return f"{fmt(st['median'])} ({fmt(st['min'])}–{fmt(st['max'])})"


def _pct(a: float) -> str:
    return f"{100 * a:.1f}%"


def markdown_table(res: dict) -> str:
    """The comparison as a Markdown table plus the ratio and target lines."""
    he, ow, pl, ra = res["he"], res["owsd"], res["plaintext"], res["ratio"]
    hd = he["accuracy_detail"]
    rows = ["| Pipeline (per image) | Total: median (min–max) | Client | Server / cloud | Sent up | Sent down "
            "| Accuracy |",
            "|---|---|---|---|---|---|---|",
            f"| HE: TenSEAL CKKS, square-activation CNN | {_spread(he['timing']['total'])} "
            f"| {_secs(he['client_seconds_per_image'])} | {_secs(he['server_seconds_per_image'])} "
            f"| {_bytes(he['bytes']['client_to_server_per_image'])} "
            f"| {_bytes(he['bytes']['server_to_client_per_image'])} (+ {_bytes(he['bytes']['keys_one_time'])} keys once) "
            f"| {_pct(hd['decrypted']['accuracy'])} on {hd['decrypted']['n']} (same net in plaintext: "
            f"{_pct(hd['plaintext_full_test']['accuracy'])} on {hd['plaintext_full_test']['n']:,}) |"]
    for name, c in ow["clouds"].items():
        acc = c["accuracy_detail"]
        rows.append(f"| OWSD → {name} | {_spread(c['timing']['total'])} | {_secs(c['client_seconds_per_image'])} "
                    f"| {_secs(c['cloud_seconds_per_image'])} | {_bytes(ow['bytes']['client_to_server_per_image'])} "
                    f"| {_bytes(ow['bytes']['server_to_client_per_image'])} (top-{ow['bytes']['server_to_client_topk']['k']}: "
                    f"{_bytes(ow['bytes']['server_to_client_topk']['bytes'])}) "
                    f"| {_pct(acc['cloud_only']['accuracy'])} on {acc['cloud_only']['n']:,} "
                    f"(+ embedding: {_pct(acc['cloud_plus_embedding']['accuracy'])}) |")
    for name, c in pl["clouds"].items():
        rows.append(f"| Plaintext {name} (floor) | {_spread(c['timing']['total'])} | {_secs(c['client_seconds_per_image'])} "
                    f"| {_secs(c['cloud_seconds_per_image'])} | {_bytes(pl['client_to_server_per_image'])} "
                    f"| {_bytes(ow['bytes']['server_to_client_per_image'])} | — |")
    sp = ra["spread"]
    t = res["targets"]
    x = lambda st: f"{st['median']:,.0f}x ({st['min']:,.0f}–{st['max']:,.0f})"  # noqa: E731
    lines = [
        "",
        f"HE / OWSD per image ({ow['cloud']}): {x(sp['he_over_owsd'])}; "
        f"client only: {ra['he_client_over_owsd_client']:,.0f}x; server vs cloud: {ra['he_server_over_owsd_cloud']:,.0f}x",
        f"OWSD / plaintext ({ow['cloud']}): {sp['owsd_over_plaintext']['median']:.3f}x "
        f"({sp['owsd_over_plaintext']['min']:.3f}–{sp['owsd_over_plaintext']['max']:.3f})",
        f"OWSD client / cloud ({ow['cloud']}): {_pct(sp['owsd_client_over_cloud']['median'])} "
        f"({_pct(sp['owsd_client_over_cloud']['min'])}–{_pct(sp['owsd_client_over_cloud']['max'])})",
        f"Target client <= 10% of cloud: {'MET' if t['owsd_client_le_10pct_of_cloud']['met'] else 'NOT MET'}; "
        f"target HE/OWSD >= 1,000x at comparable accuracy: "
        f"{'MET' if t['he_over_owsd_ge_1000']['met'] else 'NOT MET'} "
        f"({ra['he_over_owsd']:,.0f}x; accuracy gap {100 * t['he_over_owsd_ge_1000']['accuracy_gap_he_plaintext_minus_owsd']:+.1f} points)",
        f"Machine: {res['machine']['cpu_model']}, {res['machine']['cores']} cores; data {res['data']['dataset']}; "
        f"{res['config']['repeats']} rounds of {he['n_images']} HE / {ow['timing_images']} OWSD images",
    ]
    return "\n".join(rows + lines) + "\n"


# --- command line ---------------------------------------------------------------------
def _cloud_list(text: str) -> tuple[str, ...]:
    vals = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in vals if v not in CLOUD_NAMES]
    if not vals or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {CLOUD_NAMES}, got {text!r}")
    return vals


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``owsd bench`` (shared with ``benchmarks/bench_he_vs_owsd.py``)."""
    from owsd.argtypes import nonnegative_int as nonneg, positive_int as pos

    d = BenchConfig()
    p.add_argument("--data-dir", type=Path, help="folder holding mnist/ (IDX); without it: sklearn digits, noted")
    p.add_argument("--json", type=Path, help="write the results here (atomically)")
    p.add_argument("--he-images", type=pos, default=d.he_images, help=f"test images per HE round ({d.he_images})")
    p.add_argument("--owsd-images", type=pos, default=d.owsd_images,
                   help=f"test images per OWSD timing round ({d.owsd_images})")
    p.add_argument("--repeats", type=pos, default=d.repeats, help=f"timing rounds ({d.repeats})")
    p.add_argument("--train", type=pos, default=d.train, help=f"training images for the internal model ({d.train})")
    p.add_argument("--test", type=pos, default=d.test, help=f"test images for OWSD accuracy ({d.test})")
    p.add_argument("--cloud", type=_cloud_list, default=d.clouds,
                   help="comma-separated clouds, the first is the headline (efficientnet-lite0,tiny)")
    p.add_argument("--he-epochs", type=pos, default=d.he_epochs, help=f"HE network training epochs ({d.he_epochs})")
    p.add_argument("--he-train", type=pos, help="training images for the HE network (default: all)")
    p.add_argument("--epochs", type=pos, default=d.epochs, help=f"internal model epochs ({d.epochs})")
    p.add_argument("--batch-size", type=pos, default=d.batch_size, help=f"OWSD batch size ({d.batch_size})")
    p.add_argument("--topk", type=pos, default=d.topk, help=f"k for the top-k reply size ({d.topk})")
    p.add_argument("--preset", default=d.preset, help="scrambler preset (default: 'default')")
    p.add_argument("--seed", type=nonneg, default=d.seed, help="seed of the (non-secret, experiment) key and subsets")
    p.add_argument("--cache-dir", type=Path, help="cache of cloud outputs and the HE network "
                                                  "(default $OWSD_CACHE or ~/.cache/owsd)")
    p.add_argument("--transmit", choices=("float32", "uint8"), default=d.transmit,
                   help="what the client sends: float32 tensors (the scheme's setting) or uint8 pixels")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(a: argparse.Namespace) -> BenchConfig:
    return BenchConfig(data_dir=a.data_dir, he_images=a.he_images, owsd_images=a.owsd_images, repeats=a.repeats,
                       train=a.train, test=a.test, clouds=tuple(a.cloud), he_epochs=a.he_epochs, he_train=a.he_train,
                       epochs=a.epochs, batch_size=a.batch_size, topk=a.topk, preset=a.preset, seed=a.seed,
                       cache_dir=a.cache_dir, verbose=not a.quiet, transmit=a.transmit)


def _cmd_bench(a: argparse.Namespace) -> int:
    try:
        res = run_benchmark(config_from_args(a))
    except ImportError as exc:  # TenSEAL missing: say so, no traceback
        sys.stderr.write(f"owsd bench: error: {exc}\n")
        return 2
    if a.json is not None:
        atomic_write_json(a.json, res)
    sys.stdout.write(markdown_table(res))
    if a.json is not None:
        sys.stdout.write(f"wrote {a.json}\n")
    return 0


def register(subparsers) -> None:
    """Add ``owsd bench`` to the CLI."""
    p = subparsers.add_parser("bench", help="OWSD against homomorphic-encryption inference: time, bytes, accuracy")
    add_arguments(p)
    p.set_defaults(func=_cmd_bench)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Stand-alone entry point (``benchmarks/bench_he_vs_owsd.py``)."""
    p = argparse.ArgumentParser(prog="bench_he_vs_owsd", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.add_argument("-v", "--verbose", action="count", default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(2, a.verbose),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return _cmd_bench(a)
    except (ValueError, FileNotFoundError) as exc:
        sys.stderr.write(f"bench: error: {exc}\n")
        return 2
