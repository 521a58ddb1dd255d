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
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from owsd import provenance  # noqa: E402
from owsd.cloud import default_cache_dir  # noqa: E402
from owsd.data import load_splits  # noqa: E402
from owsd.io import atomic_write_json  # noqa: E402
from owsd_bench.ckks import HeClient, HeServer  # noqa: E402
from owsd_bench.config import BenchConfig  # noqa: E402
from owsd_bench.he_batched import batched_round, plaintext_seconds  # noqa: E402
from owsd_bench.he_side import he_network, he_round  # noqa: E402
from owsd_bench.measure import accuracy  # noqa: E402
from owsd_bench.network import plaintext_logits  # noqa: E402

log = logging.getLogger("bench_he_batched")


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

    batched = batched_round(net, images, labels, plain_seconds=plain_s)
    log.info("batched: %d images, %s", n, {k: round(v, 2) for k, v in batched["seconds"].items()
                                           if isinstance(v, float)})

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
           "plaintext": {"seconds_per_image": plain_s, "threads": 1,
                         "accuracy": accuracy(plain_pred.argmax(1), labels)},
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
