"""The utility study: what must scrambled images look like for the cloud's outputs to carry the label?

Each configuration scrambles PCA-64 embeddings of MNIST (first N train, first 1,000 test
images) with a random transposed-convolution stack, sends the images (float, 224x224) to
EfficientNet-Lite0 (onnxruntime), and scores a logistic regression on the log-probabilities
(C=1 and C=0.01) against chance (0.1), the same regression on the embedding, and on raw
pixels.  ``--spectra`` prints, per stack and activation, how alike the scrambled images of
different embeddings are (mean |cosine| after removing each image's mean), how much power
the mean image holds, and the fraction of power below 16 cycles per image.

Results go to ``--json`` (one entry per configuration, written after each, so an
interrupted study resumes).  The exploratory runs of 2026-11-24 whose logs are in
``docs/results/study-logs/`` used this code, split over several scripts.

    python benchmarks/utility_study.py --data-dir ../shared/data --json study.json
    python benchmarks/utility_study.py --spectra
    python benchmarks/utility_study.py --phase --json phase.json
    python benchmarks/utility_study.py --linearity --json linearity.json
    python benchmarks/utility_study.py --plot study.json linearity.json utility_study.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# name: (stack, kernel smoothing as a fraction of kernel size, activation, normalization, gain[, carrier])
CONFIGS = {
    "naive-sigmoid (grey-sigmoid preset, the previous default)": ("deep6", 0.0, "leaky_relu", "sigmoid", 1.0),
    "std-g0.25": ("deep6", 0.0, "leaky_relu", "standardize", 0.25),
    "std-g0.05 (small-signal preset)": ("deep6", 0.0, "leaky_relu", "standardize", 0.05),
    "std-g0.01": ("deep6", 0.0, "leaky_relu", "standardize", 0.01),
    "std-g1": ("deep6", 0.0, "leaky_relu", "standardize", 1.0),
    "deep6-linear-g0.05 (deep-linear preset)": ("deep6", 0.0, "none", "standardize", 0.05),
    "dense1-linear-g0.05": ("dense1", 0.0, "none", "standardize", 0.05),
    "smooth3-lrelu-g0.25": ("smooth3", 0.0, "leaky_relu", "standardize", 0.25),
    "blob2-linear-smoothed-g0.25": ("blob2", 0.15, "none", "standardize", 0.25),
    "blob3-lrelu-smoothed-g0.25": ("blob3", 0.15, "leaky_relu", "standardize", 0.25),
    "tile7-lrelu-g0.25 (texture)": ("tile7", 0.0, "leaky_relu", "standardize", 0.25),
    "tiles8-linear-g0.25 (amplitude tiles)": ("tiles8", 0.0, "none", "standardize", 0.25),
    "deep6-linear-g0.005": ("deep6", 0.0, "none", "standardize", 0.005),
    "std-g0.005": ("deep6", 0.0, "leaky_relu", "standardize", 0.005),
    "tile7-linear-g0.005 (period-32 texture, low contrast)": ("tile7", 0.0, "none", "standardize", 0.005),
    "texture-carrier-linear-g0.002 (default preset)": ("deep6", 0.0, "none", "standardize", 0.002, "texture"),
    "texture-carrier-linear-g0.005": ("deep6", 0.0, "none", "standardize", 0.005, "texture"),
    "texture-carrier-linear-g0.001": ("deep6", 0.0, "none", "standardize", 0.001, "texture"),
    "texture-carrier-linear-g0.02": ("deep6", 0.0, "none", "standardize", 0.02, "texture"),
    "texture-carrier-lrelu-g0.005": ("deep6", 0.0, "leaky_relu", "standardize", 0.005, "texture"),
}


def carrier_image(kind: str, seed: int = 1):
    """The carrier of a seeded key of kind ``kind`` (``none``, ``key`` or ``texture``), or None."""
    import dataclasses
    import warnings

    from owsd.keys import generate_key
    from owsd.presets import get_preset

    if kind == "none":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seeded key: an experiment
        return generate_key(dataclasses.replace(get_preset("deep-linear"), carrier=kind), seed=seed).carrier()


def smooth_kernels(w: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-blur every k x k kernel slice (sigma in pixels), keeping the overall std."""
    if sigma <= 0:
        return w
    k = w.shape[-1]
    r = int(np.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    flat = w.reshape(-1, 1, k, k)
    flat = F.pad(flat, (r, r, r, r), mode="circular" if r < k else "replicate")
    flat = F.conv2d(F.conv2d(flat, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    out = flat.reshape(w.shape)
    return out * (w.std() / out.std())


def stack(name: str, smoothing: float, seed: int = 1):
    """(weights, [(kernel, stride, padding)], input shape, tile) of a study stack."""
    g = torch.Generator().manual_seed(seed)
    tile = 1
    if name == "deep6":
        chans, layers, shape = [64, 32, 16, 16, 8, 8, 3], [(7, 1, 0)] + [(4, 2, 1)] * 5, (64, 1, 1)
    elif name == "dense1":
        chans, layers, shape = [64, 3], [(224, 1, 0)], (64, 1, 1)
    elif name == "smooth3":
        chans, layers, shape = [64, 16, 8, 3], [(7, 1, 0), (8, 4, 2), (32, 8, 12)], (64, 1, 1)
    elif name == "blob2":
        chans, layers, shape = [64, 16, 3], [(14, 1, 0), (16, 16, 0)], (64, 1, 1)
    elif name == "blob3":
        chans, layers, shape = [64, 32, 16, 3], [(7, 1, 0), (4, 2, 1), (16, 16, 0)], (64, 1, 1)
    elif name == "tiles8":
        chans, layers, shape = [1, 3], [(28, 28, 0)], (1, 8, 8)
    elif name.startswith("tile"):
        tile = int(name[4:])
        nl = {7: 5, 14: 4, 28: 3}[tile]
        chans, layers, shape = [64, 32, 16, 16, 8, 8][:nl] + [3], [(4, 2, 1)] * nl, (64, 1, 1)
    else:
        raise ValueError(f"unknown stack {name!r}")
    ws = []
    for i, (k, s, _) in enumerate(layers):
        w = torch.randn(chans[i], chans[i + 1], k, k, generator=g)
        ws.append(smooth_kernels(w, smoothing * k) / (chans[i] * max(1, (k / s) ** 2)) ** 0.5)
    return ws, layers, shape, tile


def scramble(e: np.ndarray, cfg: tuple) -> torch.Tensor:
    from owsd.ops.reference import fused_scramble_ref

    name, smoothing, act, norm, gain = cfg[:5]
    carrier = carrier_image(cfg[5] if len(cfg) > 5 else "none")
    ws, layers, shape, tile = stack(name, smoothing)
    z = torch.tensor(e, dtype=torch.float32).reshape(-1, *shape)
    if tile > 1:
        z = z.repeat(1, 1, tile, tile)
    n = len(ws)
    return fused_scramble_ref(z, ws, [None] * n, strides=[l[1] for l in layers], paddings=[l[2] for l in layers],
                              output_paddings=[0] * n, activations=[act] * (n - 1) + ["none"],
                              normalization=norm, gain=gain, carrier=carrier)


def logreg(a, b, ytr, yte, C=1.0) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(a)
    m = LogisticRegression(max_iter=3000, C=C).fit(sc.transform(a), ytr)
    return float(m.score(sc.transform(b), yte))


def spectra(seed: int = 1) -> None:
    e = torch.randn(200, 64, 1, 1, generator=torch.Generator().manual_seed(seed))
    for st in ("deep6", "dense1", "smooth3"):
        for act in ("leaky_relu", "none", "tanh"):
            ws, layers, _, _ = stack(st, 0.0)
            x = e
            for i, (w, (k, s, p)) in enumerate(zip(ws, layers)):
                x = F.conv_transpose2d(x, w, stride=s, padding=p)
                if i < len(ws) - 1:
                    x = F.leaky_relu(x, 0.2) if act == "leaky_relu" else torch.tanh(x) if act == "tanh" else x
            f = x.reshape(len(x), -1)
            fc = f - f.mean(1, keepdim=True)
            fc = fc / fc.norm(dim=1, keepdim=True)
            cos = (fc @ fc.T)[~torch.eye(len(x), dtype=bool)].abs().mean()
            mean_power = (f.mean(0) ** 2).sum() / (f ** 2).sum(1).mean()
            spec = torch.fft.rfft2(x).abs() ** 2
            low = spec[..., :16, :16].sum() + spec[..., -16:, :16].sum()
            sys.stdout.write(f"{st:8s} {act:10s} mean|cos| {cos:.3f}  mean-image power {mean_power:.3f}  "
                             f"power below 16 cycles {low / spec.sum():.3f}\n")


def phase_sensitivity(*, n: int = 64, seed: int = 0) -> list[dict]:
    """How much of the cloud's output is position (phase) rather than content, per preset.

    For ``n`` random embeddings and a seeded key of each preset, compares the log-probability
    distance between images of different embeddings with the distance between an image and
    (a) the same image with its 25 interior 32x32 tiles permuted (EfficientNet-Lite0 strides
    by 32 in total, so this keeps each pixel's phase on the stride grid) and (b) the same
    image circularly shifted by (5, 7) pixels (every phase changes); plus how often the
    nearest original of a changed image is its own source (re-identification, chance 1/n).
    """
    import warnings

    from owsd.cloud import efficientnet_lite0
    from owsd.keys import generate_key
    from owsd.presets import get_preset
    from owsd.scrambler import Scrambler

    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n, 64)).astype(np.float32)
    cloud = efficientnet_lite0()
    tiles = [(r, c) for r in range(1, 6) for c in range(1, 6)]
    perm = rng.permutation(len(tiles))

    def logp(a: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(cloud.predict(a, verbose=False), 1e-30))

    def nn_reid(changed: np.ndarray, orig: np.ndarray) -> float:
        d = ((changed[:, None] - orig[None]) ** 2).sum(-1)
        return float((d.argmin(1) == np.arange(len(orig))).mean())

    rows = []
    for preset in ("default", "grey-sigmoid", "small-signal", "linear", "deep-linear"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # seeded key
            s = Scrambler(generate_key(get_preset(preset), seed=seed))
        x = np.asarray(s.scramble(e, verbose=False, out_dtype=torch.float32))
        shuffled = x.copy()
        for (r, c), k in zip(tiles, perm):
            r2, c2 = tiles[k]
            shuffled[:, :, r * 32:(r + 1) * 32, c * 32:(c + 1) * 32] = x[:, :, r2 * 32:(r2 + 1) * 32,
                                                                          c2 * 32:(c2 + 1) * 32]
        shifted = np.roll(x, (5, 7), axis=(2, 3))
        lo, ls, lh = logp(x), logp(shuffled), logp(shifted)
        between = np.sqrt(((lo[:, None] - lo[None]) ** 2).sum(-1))[~np.eye(n, dtype=bool)].mean()
        row = {"preset": preset, "pixel_std": float(x.std(axis=(1, 2, 3)).mean()),
               "between_embeddings": float(between),
               "tile_shuffle": float(np.sqrt(((lo - ls) ** 2).sum(-1)).mean()),
               "tile_shuffle_reid": nn_reid(ls, lo),
               "shift_5_7": float(np.sqrt(((lo - lh) ** 2).sum(-1)).mean()),
               "shift_reid": nn_reid(lh, lo), "chance_reid": 1.0 / n}
        sys.stdout.write(f"{preset:13s} pixel std {row['pixel_std']:.4f} | log-prob distance between embeddings "
                         f"{between:.2f} | tiles permuted {row['tile_shuffle']:.2f} (re-id {row['tile_shuffle_reid']:.2f})"
                         f" | shifted (5,7) {row['shift_5_7']:.2f} (re-id {row['shift_reid']:.2f}); "
                         f"chance re-id {1 / n:.3f}\n")
        rows.append(row)
    return rows


def linearity(*, n: int = 16, seed: int = 0) -> list[dict]:
    """How linearly the cloud's log-probabilities respond to a faint scrambled signal, per operating point.

    Operating points: mid-grey 0.5 (the ``grey-sigmoid`` and ``deep-linear`` designs), grey
    0.3, the smooth ``key`` carrier and the 1/f ``texture`` carrier.  The signal is the
    deep-linear stack's image of ``n`` random embeddings, centred and scaled to pixel std
    ``s``.  Reported per contrast ``s``: the mean L2 change of the log-probabilities, and the
    superposition error ``|f(c+d1+d2) - f(c+d1) - f(c+d2) + f(c)| / |f(c+d1+d2) - f(c)|``
    (0 for a linear response, ~1 when the response to a sum is unrelated to the parts).
    """
    import warnings

    from attacks.key_estimation.surrogate import pre_normalization
    from owsd.cloud import efficientnet_lite0
    from owsd.keys import generate_key
    from owsd.presets import get_preset

    cloud = efficientnet_lite0()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seeded key: an experiment
        key = generate_key(get_preset("deep-linear"), seed=seed)
    rng = np.random.default_rng(seed)
    e = torch.tensor(rng.standard_normal((2 * n, 64)), dtype=torch.float32)
    d = pre_normalization(key.spec, key.weights(), key.biases(), e).double().numpy()
    d = d - d.mean(axis=(1, 2, 3), keepdims=True)
    d = d / d.std(axis=(1, 2, 3), keepdims=True)
    d1, d2 = d[:n], d[n:]
    points = {"grey 0.5": np.full((1, 3, 224, 224), 0.5), "grey 0.3": np.full((1, 3, 224, 224), 0.3),
              "smooth key carrier": carrier_image("key").double().numpy()[None],
              "1/f texture carrier": carrier_image("texture").double().numpy()[None]}

    def logp(x: np.ndarray) -> np.ndarray:
        p = cloud.predict(np.clip(x, 0.0, 1.0).astype(np.float32), verbose=False)
        return np.log(np.maximum(p.astype(np.float64), 1e-30))

    rows = []
    for name, c in points.items():
        f0 = logp(c)
        for s in (5e-5, 5e-4, 1.5e-3, 5e-3, 1.5e-2):
            fa, fb, fab = logp(c + s * d1), logp(c + s * d2), logp(c + s * (d1 + d2))
            change = float(np.linalg.norm(fa - f0, axis=1).mean())
            sup = np.linalg.norm(fab - fa - fb + f0, axis=1) / np.maximum(np.linalg.norm(fab - f0, axis=1), 1e-12)
            row = {"operating_point": name, "contrast": s, "logprob_change": change,
                   "superposition_error": float(np.median(sup)),
                   "logit_range_at_point": [float(f0.min()), float(f0.max())]}
            rows.append(row)
            sys.stdout.write(f"{name:20s} contrast {s:.1e}: |d log p| {change:9.4f}   superposition error "
                             f"{row['superposition_error']:.3f}\n")
    return rows


def plot(study: Path, linearity_json: Path, out: Path) -> None:
    """Two panels: accuracy per design (with baselines), and the cloud's linearity per operating point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = json.loads(study.read_text())
    rows = sorted(d["configs"].items(), key=lambda kv: kv[1]["logreg_C1"])
    lin = json.loads(linearity_json.read_text())["linearity"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [1.25, 1]})
    colors = ["tab:green" if "texture-carrier" in k else "tab:gray" for k, _ in rows]
    a.barh(range(len(rows)), [v["logreg_C1"] for _, v in rows], color=colors)
    a.set_yticks(range(len(rows)), [k for k, _ in rows], fontsize=7)
    for name, val, style in (("embedding", d["baselines"]["embedding_logreg"], "--"),
                             ("plaintext", d["baselines"]["plaintext_logreg"], ":"),
                             ("chance", d["baselines"]["chance"], "-.")):
        a.axvline(val, color="k", ls=style, lw=1, label=f"{name} {val:.3f}")
    a.set_xlabel("accuracy of a logistic regression on the 1,000 log-probabilities")
    a.set_title("MNIST, 2,000 train / 1,000 test (green: texture carrier)")
    a.legend(loc="lower right", fontsize=8)
    for point in dict.fromkeys(r["operating_point"] for r in lin):
        pts = [r for r in lin if r["operating_point"] == point]
        b.loglog([r["contrast"] for r in pts], [r["logprob_change"] for r in pts], "o-", label=point)
    xs = np.array([5e-5, 1.5e-2])
    b.loglog(xs, 0.0061 * xs / 5e-5, "k:", lw=1, label="slope 1 (linear response)")
    b.set_xlabel("pixel std of the scrambled signal (contrast)")
    b.set_ylabel("mean L2 change of the 1,000 log-probabilities")
    b.set_title("the cloud's response around each operating point")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--json", type=Path, help="results file (study default: utility_study.json)")
    ap.add_argument("--only", nargs="*", help="configuration names to run")
    ap.add_argument("--spectra", action="store_true")
    ap.add_argument("--phase", action="store_true", help="position vs content sensitivity of the cloud")
    ap.add_argument("--linearity", action="store_true", help="linearity of the cloud at several operating points")
    ap.add_argument("--plot", nargs=3, type=Path, metavar=("STUDY_JSON", "LINEARITY_JSON", "OUT_PNG"),
                    help="draw the study figure from saved results")
    a = ap.parse_args()
    if a.spectra:
        spectra()
        return 0
    if a.plot:
        plot(*a.plot)
        return 0
    if a.phase or a.linearity:
        from owsd import provenance
        from owsd.io import atomic_write_json

        prov = provenance.record()  # machine and load at the start, versions, date, command
        rows = phase_sensitivity() if a.phase else linearity()
        if a.json:
            atomic_write_json(a.json, {"phase_sensitivity" if a.phase else "linearity": rows, "provenance": prov})
        return 0
    a.json = a.json or Path("utility_study.json")
    if a.data_dir is None:
        ap.error("--data-dir (holding mnist/) is needed for the cloud study")
    from sklearn.decomposition import PCA
    from tqdm.auto import tqdm

    from owsd import provenance
    from owsd.cloud import efficientnet_lite0
    from owsd.data import load_splits
    from owsd.io import atomic_write_json

    train, test = load_splits("mnist", a.data_dir)
    xtr, ytr = train.flat()[: a.train].astype(np.float64), train.labels[: a.train]
    xte, yte = test.flat()[:1000].astype(np.float64), test.labels[:1000]
    pca = PCA(64, random_state=0).fit(xtr)
    etr, ete = pca.transform(xtr), pca.transform(xte)
    s = etr.std(0)
    etr, ete = etr / s, ete / s
    done = json.loads(a.json.read_text()) if a.json.is_file() else {}
    done.setdefault("baselines", {"plaintext_logreg": logreg(xtr, xte, ytr, yte),
                                  "embedding_logreg": logreg(etr, ete, ytr, yte), "chance": 0.1})
    cloud = efficientnet_lite0()
    for name, cfg in tqdm(CONFIGS.items(), desc="configurations"):
        if (a.only and name not in a.only) or name in done.get("configs", {}):
            continue
        prov = provenance.record()  # each configuration's machine, load, versions, date, command
        t0 = time.perf_counter()
        ptr = np.concatenate([cloud.predict(scramble(etr[i:i + 256], cfg), verbose=False)
                              for i in range(0, len(etr), 256)])
        pte = cloud.predict(scramble(ete, cfg), verbose=False)
        ltr, lte = np.log(np.maximum(ptr, 1e-12)), np.log(np.maximum(pte, 1e-12))
        done.setdefault("configs", {})[name] = {
            "config": cfg, "n_train": len(etr), "n_test": len(ete),
            "logreg_C1": logreg(ltr, lte, ytr, yte), "logreg_C0.01": logreg(ltr, lte, ytr, yte, 0.01),
            "distinct_top1": int(len(set(ptr.argmax(1)))), "seconds": time.perf_counter() - t0, "provenance": prov}
        atomic_write_json(a.json, done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
