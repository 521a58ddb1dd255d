"""The HE side of the benchmark: set up the party, time encrypted inference, describe it.

:func:`setup_he` trains (or loads from the cache) the square-activation CNN, makes the
client's keys and hands the server the public context; :func:`he_round` times encrypted
inference image by image (client encrypt, server evaluate, client decrypt) and records the
serialized lengths; :func:`he_document` turns the rounds into the ``he`` part of the result.

Example:
    >>> import numpy as np
    >>> from owsd_bench.ckks import HeClient, HeServer
    >>> from owsd_bench.network import SquareConvNet
    >>> net = SquareConvNet(image_size=8, channels=1, hidden=4).eval()
    >>> client = HeClient(net.geometry)
    >>> server = HeServer(net, client.public_context())
    >>> r = he_round(client, server, np.zeros((2, 1, 8, 8), np.uint8))
    >>> r["scores"].shape, bool(r["bytes_up"].min() > 1000)
    ((2, 10), True)
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm.auto import tqdm

from owsd.data import ImageDataset
from owsd_bench.ckks import CkksParams, HeClient, HeServer
from owsd_bench.config import BenchConfig
from owsd_bench.measure import accuracy, summarize
from owsd_bench.network import SquareConvNet, load_net, save_net, train_square_net

log = logging.getLogger(__name__)


@dataclass
class HeParty:
    """The HE side of one run: network, client (secret key), server (public context), setup costs."""

    net: SquareConvNet
    train_images: int
    loaded_from_cache: bool
    params: CkksParams
    client: HeClient
    server: HeServer
    public_context_bytes: int
    #: one-time seconds: ``keygen``, ``serialize_public_context``, ``server_load_keys``, ``train_network``
    setup_seconds: dict


def he_network(cfg: BenchConfig, train: ImageDataset, cache_root: Path) -> tuple[SquareConvNet, int, float, bool]:
    """Train the square-activation CNN (cached on disk by data, settings and seed).

    Returns the network, its training-set size, the training seconds (0 when loaded) and
    whether it came from the cache.
    """
    data = train.subset(cfg.he_train, rng=np.random.default_rng(cfg.seed + 1))
    tag = hashlib.sha256(f"{data.digest()}|{cfg.he_epochs}|{cfg.seed}|v1".encode()).hexdigest()[:16]
    path = cache_root / "bench" / f"he-net-{train.name}-{tag}.npz"
    if path.is_file():
        try:
            net = load_net(path)
            log.info("loaded HE network from %s", path)
            return net, len(data), 0.0, True
        except (ValueError, KeyError, RuntimeError):
            log.warning("retraining: unreadable HE network cache %s", path)
    t0 = time.perf_counter()
    net = train_square_net(data.images, data.labels, epochs=cfg.he_epochs, seed=cfg.seed,
                           num_classes=train.num_classes, verbose=cfg.verbose)
    secs = time.perf_counter() - t0
    save_net(net, path)
    return net, len(data), secs, False


def setup_he(cfg: BenchConfig, train_all: ImageDataset, cache_root: Path) -> HeParty:
    """Network, CKKS keys and server, each one-time cost measured."""
    net, n_train, train_s, cached = he_network(cfg, train_all, cache_root)
    params = CkksParams()
    client = HeClient(net.geometry, params=params)
    t0 = time.perf_counter()
    public = client.public_context()
    serialize_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    server = HeServer(net, public)
    load_s = time.perf_counter() - t0
    return HeParty(net=net, train_images=n_train, loaded_from_cache=cached, params=params, client=client,
                   server=server, public_context_bytes=len(public),
                   setup_seconds={"keygen": client.keygen_seconds, "serialize_public_context": serialize_s,
                                  "server_load_keys": load_s, "train_network": train_s})


def he_round(client: HeClient, server: HeServer, images: np.ndarray, *, verbose: bool = False) -> dict:
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


def he_per_round(rounds: list[dict]) -> dict[str, list[float]]:
    """Mean seconds per image in each round: ``client`` (encrypt + decrypt), ``server``, ``total``."""
    client = [float((h["encrypt"] + h["decrypt"]).mean()) for h in rounds]
    server = [float(h["server"].mean()) for h in rounds]
    return {"client": client, "server": server, "total": [c + s for c, s in zip(client, server)]}


def he_document(cfg: BenchConfig, party: HeParty, rounds: list[dict], *, images: ImageDataset,
                test_all: ImageDataset, plain_scores: np.ndarray, plain_full_pred: np.ndarray,
                tenseal_version: Optional[str]) -> dict:
    """The ``he`` part of the result: timings, bytes, setup costs and accuracies.

    ``plain_scores``: the plaintext network on ``images`` (the encrypted ones);
    ``plain_full_pred``: its predictions on all of ``test_all``.
    """
    n = len(images)
    per = he_per_round(rounds)
    dec_pred = [h["scores"].argmax(1) for h in rounds]
    up_all = np.concatenate([h["bytes_up"] for h in rounds])
    down_all = np.concatenate([h["bytes_down"] for h in rounds])
    stage_total = {k: v / (n * len(rounds)) for k, v in party.server.stage_seconds.items()}
    he_acc = accuracy(dec_pred[0], images.labels)
    net = party.net
    return {
        "library": f"tenseal {tenseal_version}", "scheme": "CKKS", "params": party.params.to_dict(),
        "network": {"layers": net.describe(), "train_images": party.train_images, "epochs": cfg.he_epochs,
                    "loaded_from_cache": party.loaded_from_cache,
                    "parameters": int(sum(p.numel() for p in net.parameters()))},
        "n_images": n, "repeats": cfg.repeats,
        "seconds_per_image": summarize(per["total"])["median"],
        "client_seconds_per_image": summarize(per["client"])["median"],
        "server_seconds_per_image": summarize(per["server"])["median"],
        "timing": {"total": summarize(per["total"]), "client": summarize(per["client"]),
                   "server": summarize(per["server"]),
                   "encrypt": summarize([float(h["encrypt"].mean()) for h in rounds]),
                   "decrypt": summarize([float(h["decrypt"].mean()) for h in rounds]),
                   "server_stages_mean": stage_total},
        "bytes": {"client_to_server_per_image": float(up_all.mean()),
                  "client_to_server_range": [int(up_all.min()), int(up_all.max())],
                  "server_to_client_per_image": float(down_all.mean()),
                  "server_to_client_range": [int(down_all.min()), int(down_all.max())],
                  "keys_one_time": party.public_context_bytes,
                  "definition": "lengths of the serialized CKKS ciphertexts (im2col-encoded image up, 10 scores "
                                "down); keys_one_time: the serialized public context (public, relinearization "
                                "and Galois keys, no secret key) uploaded once"},
        "setup_seconds": dict(party.setup_seconds),
        "accuracy": he_acc["accuracy"],
        "accuracy_detail": {
            "decrypted": he_acc,
            "plaintext_same_images": accuracy(plain_scores.argmax(1), images.labels),
            "plaintext_full_test": accuracy(plain_full_pred, test_all.labels),
            "argmax_agreement_with_plaintext": float((dec_pred[0] == plain_scores.argmax(1)).mean()),
            "max_abs_error_vs_plaintext": float(max(np.abs(h["scores"] - plain_scores).max() for h in rounds)),
            "stable_across_repeats": bool(all((p == dec_pred[0]).all() for p in dec_pred)),
        },
    }
