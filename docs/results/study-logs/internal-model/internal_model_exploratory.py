"""Exploratory study of the internal model on cached Fashion-MNIST cloud outputs (2026-11-24).

What limits cloud-only accuracy at 1,000 outputs (0.870 with an MLP on the 1,000 standardized
log-probabilities, against 0.891 for the embedding and 0.899 for the plaintext model)?  Reads the
cloud outputs cached by ``owsd run --dataset fashion-mnist --data-dir ../shared/data --cloud
efficientnet-lite0 --seed 0`` (key a88b108a045e6833) and tries read-outs of them, each followed
by the same MLP (owsd.internal.Classifier, 30 epochs).  Results: ``exploratory.log`` beside it.

    python docs/results/study-logs/internal-model/internal_model_exploratory.py ../shared/data
"""

import glob
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from owsd.cloud import default_cache_dir, truncate_topk
from owsd.data import load_splits
from owsd.encoder import make_encoder
from owsd.internal import Classifier
from owsd.io import load_npz
from owsd.keys import generate_key
from owsd.presets import get_preset

data_dir = sys.argv[1]
tr, te = load_splits("fashion-mnist", data_dir)
out = {}
for split in ("train", "test"):
    d = glob.glob(f"{default_cache_dir()}/outputs/fashion-mnist-{split}-a88b108a045e6833-efficientnet-lite0-*")
    out[split] = np.concatenate([load_npz(f)["probs"] for f in sorted(glob.glob(d[0] + "/chunk_*.npz"))])
xtr, xte = tr.flat(), te.flat()
enc = make_encoder("pca", 64).fit(xtr)
etr, ete = enc.encode(xtr), enc.encode(xte)


def fit(name, a, b):
    t = time.time()
    m = Classifier(epochs=30, verbose=False).fit(a, tr.labels)
    print(f"{name}: {m.score(b, te.labels):.4f} ({time.time() - t:.0f} s)", flush=True)


L = lambda p: np.log(np.maximum(p, 1e-12)).astype(np.float64)
ftr, fte = L(out["train"]), L(out["test"])
ctr, cte = ftr - ftr.mean(1, keepdims=True), fte - fte.mean(1, keepdims=True)
mu, sd = ctr.mean(0), ctr.std(0) + 1e-9
A, At = (ctr - mu) / sd, (cte - mu) / sd


def ridge(target, lam=1e-6):
    bm = target.mean(0)
    W = np.linalg.solve(A.T @ A + lam * len(A) * np.eye(A.shape[1]), A.T @ (target - bm))
    pred_tr, pred_te = A @ W + bm, At @ W + bm
    return pred_tr.astype(np.float32), pred_te.astype(np.float32)


def r2(pred, target):
    return 1 - ((pred - target) ** 2).sum(0) / ((target - target.mean(0)) ** 2).sum(0)


# 1. the per-image standardization divides out s(e) = std of the scrambler's pre-image: does losing
#    the norm hurt?  s(e)^2 = e' G e with G from the key's linear stack.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    key = generate_key(get_preset("default"), seed=0)
x = torch.eye(64, dtype=torch.float64).reshape(-1, *key.spec.input_shape)
for w, lay in zip(key.weights(dtype=torch.float64), key.spec.layers):
    x = F.conv_transpose2d(x, w, stride=lay.stride, padding=lay.padding, output_padding=lay.output_padding)
M = x.reshape(64, -1)
Mc = M - M.mean(1, keepdim=True)
G = (Mc @ Mc.T / Mc.shape[1]).numpy()
s = lambda e: np.sqrt(np.einsum("ij,jk,ik->i", e, G, e))
ntr, nte = (etr / s(etr.astype(np.float64))[:, None]).astype(np.float32), \
    (ete / s(ete.astype(np.float64))[:, None]).astype(np.float32)
fit("embedding", etr, ete)
fit("embedding / s(e) (what the image carries)", ntr, nte)
# 2. read-outs of the cloud outputs
fit("log-probabilities (the previous internal model)", ftr.astype(np.float32), fte.astype(np.float32))
fit("centered log-probabilities", ctr.astype(np.float32), cte.astype(np.float32))
c0 = A.mean(0)
U, S, Vt = np.linalg.svd(A[:30000] - c0, full_matrices=False)
for k in (64, 128, 256):
    P = Vt[:k].T / S[:k] * np.sqrt(30000)
    fit(f"PCA-{k} whitened centered log-probabilities", ((A - c0) @ P).astype(np.float32),
        ((At - c0) @ P).astype(np.float32))
a, b = ridge(etr.astype(np.float64))
print(f"ridge -> embedding: test R^2 mean {r2(b, ete).mean():.4f}", flush=True)
fit("ridge decoder -> embedding", a, b)
a, b = ridge(ntr.astype(np.float64))
print(f"ridge -> embedding / s(e): test R^2 mean {r2(b, nte).mean():.4f}", flush=True)
fit("ridge decoder -> embedding / s(e)", a, b)
