"""Produce the key-estimation curves of docs/key-estimation.md (JSON + PNG figures).

Usage:
    python benchmarks/curves_key_estimation.py --data-dir ../shared/data --out docs/figures
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from attacks.controls import FreshKeyChannel  # noqa: E402
from attacks.key_estimation.curves import error_vs_pairs, error_vs_queries, reid_vs_pool  # noqa: E402
from attacks.key_estimation.victims import small_victim  # noqa: E402
from attacks.victim import Victim  # noqa: E402
from owsd.presets import get_preset  # noqa: E402

log = logging.getLogger("curves")


def _err_plot(ax, series: dict, xlabel: str) -> None:
    for label, pts in series.items():
        xs = [p["n"] for p in pts]
        ys = [p["functional_error"] for p in pts]
        lo = [p["ci"][0] for p in pts]
        hi = [p["ci"][1] for p in pts]
        ax.errorbar(xs, ys, yerr=[[y - l for y, l in zip(ys, lo)], [h - y for y, h in zip(ys, hi)]], marker="o",
                    capsize=2, label=label)
    ax.axhline(1.0, color="grey", ls="--", lw=1, label="chance: constant predictor")
    rk = [p["chance_random_key"] for pts in series.values() for p in pts if p.get("chance_random_key")]
    if rk:
        ax.axhline(sum(rk) / len(rk), color="k", ls=":", lw=1, label="chance: random key of the spec")
    ax.axhline(1e-4, color="red", ls="-.", lw=1, label="1e-4")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("functional error (relative MSE, held-out)")
    ax.legend(fontsize=7)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--out", type=Path, default=Path("docs/figures"))
    ap.add_argument("--steps", type=int, default=40, help="surrogate Adam steps for the default spec")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    warnings.simplefilter("ignore")
    args.out.mkdir(parents=True, exist_ok=True)
    kw = dict(dataset=args.dataset, data_dir=args.data_dir, n_fit=4000)
    t0 = time.time()
    res: dict = {"machine": "2-core shared CPU, no GPU", "date": "2026-11-24"}
    lin = small_victim(preset="linear", seed=0, n_private=256, n_public=1000, n_heldout=64, **kw)
    dft = small_victim(preset="default", seed=0, n_private=256, n_public=1000, n_heldout=64, **kw)
    sur = dict(steps=args.steps, restarts=1, batch_size=16, n_invert=8, invert_steps=10)
    res["known_plaintext"] = {
        "linear (receptive-field LS)": error_vs_pairs(lin, [12, 16, 20, 24, 28, 32, 48, 64, 128], n_invert=16),
        "linear (dense LS, 65 unknowns)": error_vs_pairs(lin, [66, 72, 80, 100, 128, 256], structure="dense",
                                                         n_invert=16),
        "default (surrogate GD)": error_vs_pairs(dft, [64, 256], **sur),
    }
    res["known_plaintext_images"] = {
        "linear, image pairs (reduced-rank LS)": error_vs_pairs(lin, [64, 128, 256], pair_input="image",
                                                                n_invert=16)}
    res["chosen_plaintext"] = {
        "linear (Hadamard design)": error_vs_queries(lin, [16, 32, 48, 64, 96, 128], n_invert=16),
        "default (surrogate GD)": error_vs_queries(dft, [64, 256], **sur),
    }
    fresh = Victim(dataset=dft.dataset, channel=FreshKeyChannel(dft.encoder, get_preset("default"), seed=0),
                   private=dft.private, public=dft.public, heldout=dft.heldout)
    pools = [16, 32, 64, 128, 256]
    co = dict(n_aux=1000, n_keys=12, n_train=64, trials=2, restarts=4, refine=5)
    res["ciphertext_only"] = {"linear": reid_vs_pool(lin, pools, **co), "default": reid_vs_pool(dft, pools, **co),
                              "default, fresh key per image (control)": reid_vs_pool(fresh, pools, **co)}
    res["total_seconds"] = time.time() - t0
    (args.out / "key_curves.json").write_text(json.dumps(res, indent=1, default=float))

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    _err_plot(axes[0], {**res["known_plaintext"], **res["known_plaintext_images"]}, "known pairs N")
    axes[0].set_title("known-plaintext (MNIST)")
    _err_plot(axes[1], res["chosen_plaintext"], "chosen queries")
    axes[1].set_title("chosen-plaintext (MNIST)")
    fig.tight_layout()
    fig.savefig(args.out / "key_functional_error.png", dpi=90)
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for label, r in res["ciphertext_only"].items():
        pts = r["points"]
        xs = [p["pool"] for p in pts]
        ys = [p["accuracy"] for p in pts]
        ax.errorbar(xs, ys, yerr=[[y - p["ci_low"] for y, p in zip(ys, pts)], [p["ci_high"] - y for y, p in zip(ys, pts)]],
                    marker="o", capsize=2, label=label)
    ax.plot(pools, [1 / k for k in pools], "k:", label="chance 1/pool")
    ax.axhline(0.05, color="green", ls="--", lw=1, label="5% (good for defender)")
    ax.axhline(0.20, color="red", ls="--", lw=1, label="20% (bad for defender)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("pool size")
    ax.set_ylabel("re-identification accuracy")
    ax.set_title("ciphertext-only (MNIST)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "key_reidentification.png", dpi=90)
    log.info("done in %.0f s", res["total_seconds"])


if __name__ == "__main__":
    main()
