"""The OWSD side of the benchmark: set up the client, time it against each cloud, describe it.

:func:`setup_owsd` draws the (seeded, experiment) key of a preset, fits the PCA encoder and
trains the internal models on cloud outputs cached on disk
(:func:`owsd.pipeline.cloud_outputs`, as ``owsd run``); :func:`owsd_round` times the client (encode,
scramble to what is sent, internal model) and each cloud, on the scrambled and on the plain
image; :func:`owsd_documents` turns the rounds into the ``owsd`` and ``plaintext`` parts of
the result.

Example:
    >>> import numpy as np
    >>> idx, scores = topk_reply(np.linspace(0, 1, 1000, dtype=np.float32), 10)
    >>> int(idx[0]), idx.nbytes + scores.nbytes  # what a top-10 reply weighs
    (999, 60)
    >>> tuple(grey_to_cloud_input(np.zeros((2, 1, 28, 28), np.uint8), (224, 224)).shape)
    (2, 3, 224, 224)
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from owsd.cloud import Cloud, make_cloud
from owsd.data import ImageDataset
from owsd.encoder import PCAEncoder
from owsd.internal import Classifier, InternalModel
from owsd.keys import Key, generate_key
from owsd.pipeline import cloud_outputs
from owsd.presets import get_preset
from owsd.scrambler import Scrambler
from owsd.spec import ScramblerSpec
from owsd_bench.config import BenchConfig
from owsd_bench.measure import accuracy, summarize

log = logging.getLogger(__name__)


def grey_to_cloud_input(images: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Plaintext path: grey uint8 ``(N, 1, h, w)`` to float RGB ``(N, 3, H, W)`` in [0, 1] (bilinear)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
    return x.expand(-1, 3, -1, -1)


def topk_reply(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """What a top-k API returns for one output vector: uint16 class indices and float32 scores."""
    idx = np.argsort(-probs)[:k]
    return idx.astype(np.uint16), probs[idx].astype(np.float32)


def wire_dtype(transmit: str) -> torch.dtype:
    """The dtype of the scrambled image as sent: ``uint8`` or ``float32``."""
    return torch.uint8 if transmit == "uint8" else torch.float32


@dataclass
class OwsdParty:
    """The OWSD client of one run and the clouds it buys from, with the accuracies measured."""

    spec: ScramblerSpec
    key: Key
    encoder: PCAEncoder
    scrambler: Scrambler
    clouds: dict[str, Cloud]
    #: the cloud-only internal model of each cloud (what the timing rounds run)
    internal: dict[str, InternalModel]
    #: per cloud: ``cloud_only`` and ``cloud_plus_embedding`` accuracies
    accuracy: dict[str, dict]
    embedding_only: dict
    #: one-time seconds: ``encoder_fit``, ``accuracy_stage_incl_cached_cloud_outputs``
    setup_seconds: dict


def owsd_accuracy(cfg: BenchConfig, key: Key, encoder: PCAEncoder, cloud: Cloud, *,
                  train: ImageDataset, test: ImageDataset, etr: np.ndarray, ete: np.ndarray,
                  cache_root: Path) -> tuple[dict, dict]:
    """Internal models (cloud only; cloud + embedding) trained on cached cloud outputs (the images as sent)."""
    q = dict(cache_dir=cache_root, batch_size=cfg.batch_size, verbose=cfg.verbose, out_dtype=wire_dtype(cfg.transmit))
    ptr, _ = cloud_outputs("train", train, encoder, key, cloud, embeddings=etr, **q)
    pte, _ = cloud_outputs("test", test, encoder, key, cloud, embeddings=ete, **q)
    kw = dict(kind="mlp", epochs=cfg.epochs, seed=cfg.seed, verbose=cfg.verbose)
    models, acc = {}, {}
    for name, use_emb in (("cloud_only", False), ("cloud_plus_embedding", True)):
        m = InternalModel(use_embedding=use_emb, **kw).fit(ptr, train.labels, etr,
                                                           decoder_from=models.get("cloud_only"))
        acc[name] = accuracy(m.predict(pte, ete), test.labels)
        models[name] = m
    return acc, models


def setup_owsd(cfg: BenchConfig, *, train: ImageDataset, test: ImageDataset, cache_root: Path) -> OwsdParty:
    """Key, encoder, clouds and internal models (``test``: the accuracy images), costs measured."""
    spec = get_preset(cfg.preset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a seeded key: reproducible, recorded as such in the result
        key = generate_key(spec, seed=cfg.seed)
    t0 = time.perf_counter()
    encoder = PCAEncoder(spec.embedding_dim).fit(train.flat())
    etr, ete = encoder.encode(train.flat()), encoder.encode(test.flat())
    fit_s = time.perf_counter() - t0
    scrambler = Scrambler(key)
    clouds = {name: make_cloud(name) for name in cfg.clouds}
    for name, cloud in clouds.items():
        if spec.output_shape() != (3, *cloud.input_size):
            raise ValueError(f"preset {cfg.preset!r} makes {spec.output_shape()} images; cloud {name!r} "
                             f"expects (3, {cloud.input_size[0]}, {cloud.input_size[1]})")
    t0 = time.perf_counter()
    acc, internal = {}, {}
    for name, cloud in clouds.items():
        acc[name], models = owsd_accuracy(cfg, key, encoder, cloud, train=train, test=test,
                                          etr=etr, ete=ete, cache_root=cache_root)
        internal[name] = models["cloud_only"]
    emb_only = accuracy(Classifier(kind="mlp", epochs=cfg.epochs, seed=cfg.seed, verbose=cfg.verbose)
                        .fit(etr, train.labels).predict(ete), test.labels)
    return OwsdParty(spec=spec, key=key, encoder=encoder, scrambler=scrambler, clouds=clouds, internal=internal,
                     accuracy=acc, embedding_only=emb_only,
                     setup_seconds={"encoder_fit": fit_s,
                                    "accuracy_stage_incl_cached_cloud_outputs": time.perf_counter() - t0})


def owsd_round(encoder: PCAEncoder, scrambler: Scrambler, clouds: dict[str, Cloud],
               internal: dict[str, InternalModel], images: ImageDataset, *, batch_size: int, topk: int,
               verbose: bool = False, transmit: str = "float32") -> dict:
    """Time the client (encode, scramble, internal model) and each cloud, scrambled and plain."""
    wire = wire_dtype(transmit)
    n = len(images)
    flat = images.flat()
    t = {"encode": 0.0, "scramble": 0.0}
    t.update({f"cloud:{c}": 0.0 for c in clouds})
    t.update({f"internal:{c}": 0.0 for c in clouds})
    t.update({f"plain_cloud:{c}": 0.0 for c in clouds})
    t["plain_prep"] = 0.0
    preds: dict[str, list] = {c: [] for c in clouds}
    up = down = topk_bytes = 0
    # the client's send buffer, reused batch after batch (a fresh 602 KB an image costs page faults)
    send = torch.empty((min(batch_size, n), *scrambler.spec.output_shape()), dtype=wire)
    with torch.no_grad():
        for s in tqdm(range(0, n, batch_size), desc="OWSD timing", disable=not verbose, unit="batch"):
            t0 = time.perf_counter()
            emb = encoder.encode(flat[s:s + batch_size])
            t1 = time.perf_counter()
            sent = scrambler(torch.from_numpy(emb), out_dtype=wire, out=send[:len(emb)]).numpy()  # the wire
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


def client_per_round(per: list[dict], cloud: str) -> list[float]:
    """OWSD client seconds per image in each round: encode + scramble + the internal model for ``cloud``."""
    return [p["encode"] + p["scramble"] + p[f"internal:{cloud}"] for p in per]


def owsd_documents(cfg: BenchConfig, party: OwsdParty, rounds: list[dict], *, he_total: list[float],
                   train_images: int, test_images: int, timing_images: int) -> tuple[dict, dict]:
    """The ``owsd`` and ``plaintext`` parts of the result (``he_total``: HE seconds per image, by round)."""
    primary = cfg.clouds[0]
    per = [o["per_image"] for o in rounds]
    clouds_doc, plain_clouds = {}, {}
    for name in party.clouds:
        client_r = client_per_round(per, name)
        cloud_r = [p[f"cloud:{name}"] for p in per]
        total_r = [a + b for a, b in zip(client_r, cloud_r)]
        plain_r = [p["plain_prep"] + p[f"plain_cloud:{name}"] for p in per]
        clouds_doc[name] = {
            "client_seconds_per_image": summarize(client_r)["median"],
            "cloud_seconds_per_image": summarize(cloud_r)["median"],
            "seconds_per_image": summarize(total_r)["median"],
            "timing": {"client": summarize(client_r), "cloud": summarize(cloud_r), "total": summarize(total_r),
                       "internal_model": summarize([p[f"internal:{name}"] for p in per])},
            "accuracy": party.accuracy[name]["cloud_only"]["accuracy"],
            "accuracy_detail": party.accuracy[name],
            "accuracy_on_timing_images": float(np.median([o["accuracy"][name] for o in rounds])),
            "ratio": {"client_over_cloud": summarize([c / k for c, k in zip(client_r, cloud_r)]),
                      "over_plaintext": summarize([t / p for t, p in zip(total_r, plain_r)]),
                      "he_over_owsd": summarize([h / t for h, t in zip(he_total, total_r)])},
        }
        plain_clouds[name] = {
            "client_seconds_per_image": summarize([p["plain_prep"] for p in per])["median"],
            "cloud_seconds_per_image": summarize([p[f"plain_cloud:{name}"] for p in per])["median"],
            "seconds_per_image": summarize(plain_r)["median"],
            "timing": {"cloud": summarize([p[f"plain_cloud:{name}"] for p in per]), "total": summarize(plain_r)},
        }
    o0 = rounds[0]
    pc = clouds_doc[primary]
    spec, key = party.spec, party.key
    owsd_doc = {
        "cloud": primary, "spec": spec.name, "key_fingerprint": key.fingerprint, "key_seeded": key.seeded,
        "encoder": f"pca-{spec.embedding_dim}",
        "internal_model": f"ridge decoder to the embedding, then mlp, {cfg.epochs} epochs",
        "train_images": train_images, "test_images": test_images, "timing_images": timing_images,
        "batch_size": cfg.batch_size, "repeats": cfg.repeats,
        "client_seconds_per_image": pc["client_seconds_per_image"],
        "cloud_seconds_per_image": pc["cloud_seconds_per_image"],
        "seconds_per_image": pc["seconds_per_image"],
        "client_stages": {k: summarize([p[k] for p in per]) for k in ("encode", "scramble")},
        "accuracy": pc["accuracy"],
        "accuracy_embedding_only": party.embedding_only,
        "bytes": {"client_to_server_per_image": o0["bytes_up"], "server_to_client_per_image": o0["bytes_down"],
                  "server_to_client_topk": {"k": cfg.topk, "bytes": o0["bytes_down_topk"]},
                  "transmit": cfg.transmit,
                  "definition": f"up: the scrambled image as sent, raw {cfg.transmit} 3x224x224 (no PNG/JPEG, "
                                "no headers); down: the cloud's output vector, float32 x 1000; top-k: k uint16 "
                                "class indices plus k float32 scores"},
        "clouds": clouds_doc,
        "setup_seconds": dict(party.setup_seconds),
    }
    pp = plain_clouds[primary]
    plain_doc = {"cloud": primary, "client_seconds_per_image": pp["client_seconds_per_image"],
                 "cloud_seconds_per_image": pp["cloud_seconds_per_image"], "seconds_per_image": pp["seconds_per_image"],
                 "client_to_server_per_image": int(3 * np.prod(party.clouds[primary].input_size)),
                 "note": "the same cloud on the unscrambled image (grey resized bilinearly to 224x224, replicated "
                         "to RGB; the resize is the client cost); no accuracy: the ImageNet cloud has no digit head",
                 "clouds": plain_clouds}
    return owsd_doc, plain_doc


def cloud_model_documents(clouds: dict[str, Cloud], plain_doc: dict, *, peak: dict, batch_size: int) -> dict:
    """Per ONNX cloud: FLOPs an image (counted from its graph), session settings, and the rate its plaintext
    timing reached as a fraction of the ``torch.mm`` peak measured in the same run (``peak``)."""
    out = {}
    for name, cloud in clouds.items():
        if not hasattr(cloud, "flops_per_image"):
            continue
        fl = cloud.flops_per_image()
        secs = plain_doc["clouds"][name]["cloud_seconds_per_image"]
        rate = fl["flops"] / secs
        out[name] = {"flops_per_image": fl["flops"], "flops_by_op": fl["by_op"],
                     "flops_counted": "2 x multiply-adds of every Conv and Gemm, shapes measured by running the "
                                      "graph once (owsd.onnx_flops); elementwise ops not counted",
                     "session": dict(getattr(cloud, "session_settings", {})), "batch_size": batch_size,
                     "seconds_per_image_incl_validation_and_softmax": secs, "achieved_flops_per_s": rate,
                     "matmul_peak": peak, "fraction_of_matmul_peak": rate / peak["flops_per_s"]}
    return out
