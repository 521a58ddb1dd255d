"""How much fresh query noise hides: re-identification and linking by an attacker who knows the key.

The frontier study (``docs/frontier.md``) found ``structure-ciphertext-only`` at chance on the
``query_noise = 1`` design although ``leak-equality`` still linked re-sends.  This measures the
bound that explains it: a linear kernel is injective on the embedding, so an attacker holding the
key (or a perfect estimate of it, which ``key-known-plaintext`` gets from 128 pairs) reads back
``e + n`` exactly.  With it, for each noise level:

* **re-identification**: the target's original picked from a pool (the target among
  ``pool - 1`` distractors, each an image of the same data) by the nearest embedding, as
  ``structure-ciphertext-only`` scores it (chance 1/pool);
* **linking**: a re-send (``e + n'``) told from a never-sent image by its nearest earlier query,
  as ``leak-equality`` scores it (AUC, chance 0.5);
* the **utility** such noise leaves a classifier on the embeddings alone (logistic regression on
  ``e + n``, trained and tested with fresh noise): what the internal model could reach at best.

No scrambling and no cloud are needed: the figures are those of the embedding space.

    python benchmarks/noise_reid_bound.py --data-dir ../shared/data --out docs/results/frontier/noise_bound.json

Example (digits, two noise levels):
    >>> r = noise_bounds("digits", None, sigmas=(0.0, 100.0), n_targets=50, pool=16, n_train=300, n_test=100)
    >>> r["0.0"]["reid_accuracy"], r["100.0"]["reid_accuracy"] < 0.5
    (1.0, True)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from attacks.leakage.features import pairwise_sq_dists
from owsd import provenance
from owsd.data import load_splits
from owsd.encoder import PCAEncoder
from owsd.io import atomic_write_json


def _nearest(queries: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = pairwise_sq_dists(queries, pool)
    return d.argmin(1), d.min(1)


def noise_bounds(dataset: str, data_dir: Optional[str], *, sigmas: Sequence[float], dim: int = 64,
                 n_targets: int = 1000, pool: int = 1024, n_train: int = 2000, n_test: int = 1000,
                 seed: int = 0) -> dict:
    """Per noise level: re-identification at ``pool``, linking AUC and embedding-only accuracy."""
    rng = np.random.default_rng(seed)
    train, test = load_splits(dataset, data_dir)
    x_tr = train.flat()[rng.permutation(len(train))[:max(n_train, 4 * dim)]]
    enc = PCAEncoder(dim=dim).fit(x_tr)
    idx = rng.permutation(len(test))
    need = n_targets + pool - 1
    if len(idx) < need:
        raise ValueError(f"{dataset}: {len(idx)} test images, {need} needed")
    e = enc.encode(test.flat()[idx[:need]])
    targets, distractors = e[:n_targets], e[n_targets:]
    tr = rng.permutation(len(train))[:n_train]
    e_tr, y_tr = enc.encode(train.flat()[tr]), train.labels[tr]
    e_te, y_te = enc.encode(test.flat()[idx[:n_test]]), test.labels[idx[:n_test]]
    out = {}
    for s in sigmas:
        noisy = targets + s * rng.standard_normal(targets.shape).astype(np.float32)
        hits = 0
        for i in range(n_targets):  # the target among pool - 1 distractors
            cand = np.vstack([targets[i:i + 1], distractors[rng.choice(len(distractors), pool - 1, replace=False)]])
            hits += int(_nearest(noisy[i:i + 1], cand)[0][0] == 0)
        half = n_targets // 2  # the first half was sent; its re-sends against the never-sent second half
        resend = targets[:half] + s * rng.standard_normal((half, dim)).astype(np.float32)
        new = targets[half:2 * half] + s * rng.standard_normal((half, dim)).astype(np.float32)
        _, d_re = _nearest(resend, noisy[:half])
        _, d_new = _nearest(new, noisy[:half])
        auc = roc_auc_score(np.r_[np.ones(half), np.zeros(half)], -np.r_[d_re, d_new])
        clf = LogisticRegression(max_iter=2000).fit(e_tr + s * rng.standard_normal(e_tr.shape), y_tr)
        acc = float(clf.score(e_te + s * rng.standard_normal(e_te.shape), y_te))
        out[str(float(s))] = {"reid_accuracy": hits / n_targets, "reid_chance": 1 / pool,
                              "reid_p": float(stats.binomtest(hits, n_targets, 1 / pool, alternative="greater").pvalue),
                              "link_auc": float(auc), "embedding_accuracy": acc}
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--sigmas", default="0,0.25,0.5,1,2,4")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    sig = [float(s) for s in a.sigmas.split(",")]
    res = noise_bounds(a.dataset, a.data_dir, sigmas=sig)
    doc = {"dataset": a.dataset, "embedding": "PCA-64, whitened", "pool": 1024, "n_targets": 1000,
           "utility_sizes": [2000, 1000], "results": res, "provenance": provenance.record()}
    atomic_write_json(Path(a.out), doc)
    for s, r in res.items():
        print(f"sigma {s}: reid@1024 {r['reid_accuracy']:.3f} (chance {r['reid_chance']:.4f}, p {r['reid_p']:.2g}), "
              f"link AUC {r['link_auc']:.3f}, embedding-only accuracy {r['embedding_accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
