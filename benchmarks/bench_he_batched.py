"""The amortized HE baseline (images along the CKKS slots) beside the single-image one, per image.

Same network, parameters and data as ``owsd bench`` (the square-activation CNN, loaded from the
same cache: ``owsd_bench.he_side.he_network``).  One batch of ``--batch`` test images (4,096
fill the slots) through :mod:`owsd_bench.he_batched`, and ``--single-images`` images through the
single-image pipeline of :mod:`owsd_bench.ckks`, in the same run; the plaintext network on the
same images (torch, one thread) is the baseline of each overhead factor.  Reported per image:
latency (what one image waits: the whole batch for the batched scheme), amortized seconds
(batch time / batch), overhead factor (amortized / plaintext), bytes on the wire (serialized
ciphertexts; keys once), accuracy of the decrypted scores.

Usage:
    python benchmarks/bench_he_batched.py --data-dir ../shared/data --json out.json [--batch 4096]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from owsd import provenance  # noqa: E402
from owsd import threads as owsd_threads  # noqa: E402
from owsd.cloud import default_cache_dir  # noqa: E402
from owsd.data import load_splits  # noqa: E402
from owsd.io import atomic_write_json  # noqa: E402
from owsd_bench.ckks import HeClient, HeServer  # noqa: E402
from owsd_bench.config import BenchConfig  # noqa: E402
from owsd_bench.he_batched import BatchedHeClient, BatchedHeServer, operation_count  # noqa: E402
from owsd_bench.he_side import he_network, he_round  # noqa: E402
from owsd_bench.measure import accuracy  # noqa: E402
from owsd_bench.network import plaintext_logits  # noqa: E402

log = logging.getLogger("bench_he_batched")


def plaintext_seconds(net, images: np.ndarray, repeats: int = 3) -> float:
    """Seconds an image of the plaintext network on ``images`` (best of ``repeats``, one thread)."""
    best = float("inf")
    with owsd_threads.limit(1):
        for _ in range(repeats):
            t0 = time.perf_counter()
            plaintext_logits(net, images)
            best = min(best, time.perf_counter() - t0)
    return best / len(images)


def main(argv: Optional[List[str]] = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, help="folder holding mnist/ (default: sklearn digits)")
    ap.add_argument("--batch", type=int, default=4096, help="images in the batched ciphertexts (<= 4,096)")
    ap.add_argument("--single-images", type=int, default=2, help="images through the single-image pipeline")
    ap.add_argument("--cache-dir", type=Path, help="cache of the HE network (default $OWSD_CACHE)")
    ap.add_argument("--json", type=Path, help="write the result here (atomically)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prov = provenance.record(extra_packages=("tenseal",))
    cfg = BenchConfig(data_dir=args.data_dir, cache_dir=args.cache_dir, verbose=False)
    if args.data_dir is None:
        train, test = load_splits("digits")
    else:
        train, test = load_splits("mnist", args.data_dir)
    net, _, _, cached = he_network(cfg, train, Path(args.cache_dir) if args.cache_dir else default_cache_dir())
    log.info("HE network %s (%s)", net.describe(), "cached" if cached else "trained")
    batch = test.subset(min(args.batch, len(test)), rng=np.random.default_rng(0))
    images, labels = batch.images, batch.labels
    n = len(images)
    plain_s = plaintext_seconds(net, images)
    plain_pred = plaintext_logits(net, images)

    client = BatchedHeClient(net.geometry)
    public = client.public_context()
    server = BatchedHeServer(net, public)
    t0 = time.perf_counter()
    up = client.encrypt(images)
    t1 = time.perf_counter()
    down = server.infer(up)
    t2 = time.perf_counter()
    scores = client.decrypt(down, n=n)
    t3 = time.perf_counter()
    total = t3 - t0
    log.info("batched: %d images, encrypt %.1f s, server %.1f s, decrypt %.2f s", n, t1 - t0, t2 - t1, t3 - t2)
    batched = {
        "images": n, "slots": client.params.slots, "operations": operation_count(net),
        "seconds": {"encrypt": t1 - t0, "server": t2 - t1, "decrypt": t3 - t2, "total": total,
                    "server_stages": server.stage_seconds},
        "latency_seconds_per_image": total, "amortized_seconds_per_image": total / n,
        "amortized_images_per_s": n / total,
        "overhead_vs_plaintext": (total / n) / plain_s,
        "bytes": {"client_to_server_per_image": sum(map(len, up)) / n,
                  "server_to_client_per_image": sum(map(len, down)) / n,
                  "client_to_server_per_batch": sum(map(len, up)), "server_to_client_per_batch": sum(map(len, down)),
                  "keys_one_time": len(public),
                  "definition": "serialized CKKS ciphertexts (one a pixel up, one a class down) over the batch's "
                                "images; keys: public and relinearization keys (no Galois keys: no rotations)"},
        "accuracy": accuracy(scores.argmax(1), labels),
        "argmax_agreement_with_plaintext": float((scores.argmax(1) == plain_pred.argmax(1)).mean()),
        "max_abs_error_vs_plaintext": float(np.abs(scores - plain_pred).max()),
    }

    sc = HeClient(net.geometry)
    s_public = sc.public_context()
    single = he_round(sc, HeServer(net, s_public), images[:args.single_images])
    per = single["encrypt"] + single["server"] + single["decrypt"]
    single_doc = {"images": int(len(per)), "latency_seconds_per_image": float(np.median(per)),
                  "amortized_seconds_per_image": float(np.median(per)),
                  "overhead_vs_plaintext": float(np.median(per)) / plain_s,
                  "bytes": {"client_to_server_per_image": float(single["bytes_up"].mean()),
                            "server_to_client_per_image": float(single["bytes_down"].mean()),
                            "keys_one_time": len(s_public)},
                  "accuracy": accuracy(single["scores"].argmax(1), labels[:args.single_images])}
    res = {**prov, "network": net.describe(), "data": "mnist" if args.data_dir else "digits",
           "plaintext": {"seconds_per_image": plain_s, "threads": 1, "accuracy": accuracy(plain_pred.argmax(1), labels)},
           "he_batched": batched, "he_single": single_doc,
           "batched_over_single_amortized": single_doc["amortized_seconds_per_image"] /
           batched["amortized_seconds_per_image"],
           "load_average_end": provenance.load_average()}
    if args.json:
        atomic_write_json(args.json, res)
        log.info("wrote %s", args.json)
    print(json.dumps({k: res[k] for k in ("plaintext", "he_batched", "he_single", "batched_over_single_amortized")},
                     indent=1, default=str))
    return res


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
