"""How much labelled data does the internal model need?  Accuracy against training-set size.

Re-uses the cloud outputs that ``owsd run --dataset D --data-dir DIR --cloud efficientnet-lite0
--seed S`` (full training set) cached on disk: the encoder is fitted on the full training split
exactly as the run did, so the cache key matches and no cloud call is paid again (a cache miss
would query the cloud: about 70,000 images).  For each size ``n`` the internal model (the run's:
embedding decoder and MLP, or ``--decoder none``) is trained on the first ``n`` training outputs
and scored on the whole test split, cloud only at the chosen output size, beside the plaintext
model of the same capacity and the embedding-only model on the same ``n`` images.  Wilson 95%
intervals.

    python benchmarks/internal_data_curve.py --dataset mnist --data-dir ../shared/data \\
        --sizes 1000,3000,10000,30000,60000 --json docs/results/mnist/data_curve.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0, help="key seed of the cached run")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--sizes", default="1000,3000,10000,30000,60000")
    ap.add_argument("--output-size", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--decoder", default="embedding", choices=("embedding", "none"))  # owsd.internal.DECODERS
    ap.add_argument("--json", type=Path, required=True)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from owsd import provenance
    from owsd.stats import wilson_interval
    from owsd.cloud import make_cloud, truncate_topk
    from owsd.data import load_splits
    from owsd.encoder import make_encoder
    from owsd.internal import Classifier, InternalModel
    from owsd.io import atomic_write_json
    from owsd.keys import generate_key
    from owsd.pipeline import cloud_outputs
    from owsd.presets import get_preset

    prov = provenance.record()  # machine and load at the start, versions, date, command
    train, test = load_splits(a.dataset, a.data_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the seeded key of the cached experiment
        key = generate_key(get_preset(a.preset), seed=a.seed)
    cloud = make_cloud("efficientnet-lite0")
    xtr, xte = train.flat(), test.flat()
    encoder = make_encoder("pca", key.spec.embedding_dim).fit(xtr)
    etr, ete = encoder.encode(xtr), encoder.encode(xte)
    ptr, _ = cloud_outputs("train", train, encoder, key, cloud, embeddings=etr)
    pte, _ = cloud_outputs("test", test, encoder, key, cloud, embeddings=ete)
    qtr, qte = truncate_topk(ptr, a.output_size), truncate_topk(pte, a.output_size)
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        n = min(n, len(train))
        t0 = time.perf_counter()
        m = InternalModel(decoder=a.decoder, epochs=a.epochs, verbose=False).fit(qtr[:n], train.labels[:n], etr[:n])
        k_cloud = int((m.predict(qte) == test.labels).sum())
        t1 = time.perf_counter()
        p = Classifier(epochs=a.epochs, verbose=False).fit(xtr[:n], train.labels[:n])
        k_plain = int((p.predict(xte) == test.labels).sum())
        t2 = time.perf_counter()
        k_emb = int((Classifier(epochs=a.epochs, verbose=False).fit(etr[:n], train.labels[:n]).predict(ete)
                     == test.labels).sum())
        row = {"n_train": n, "cloud_only": k_cloud / len(test), "cloud_only_ci95": wilson_interval(k_cloud, len(test)),
               "plaintext": k_plain / len(test), "plaintext_ci95": wilson_interval(k_plain, len(test)),
               "embedding_only": k_emb / len(test), "embedding_only_ci95": wilson_interval(k_emb, len(test)),
               "seconds_internal": t1 - t0, "seconds_plaintext": t2 - t1}
        rows.append(row)
        logging.info("n=%d: cloud only %.4f, plaintext %.4f, embedding only %.4f", n, row["cloud_only"],
                     row["plaintext"], row["embedding_only"])
        atomic_write_json(a.json, {"dataset": a.dataset, "key_fingerprint": key.fingerprint, "cloud": cloud.name,
                                   "output_size": a.output_size, "n_test": len(test), "epochs": a.epochs,
                                   "decoder": a.decoder, "rows": rows, **prov,
                                   "load_average_now": provenance.load_average()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
