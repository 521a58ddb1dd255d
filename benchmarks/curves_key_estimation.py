"""Produce the key-estimation curves of docs/key-estimation.md (JSON + PNG figures).

Usage:
    python benchmarks/curves_key_estimation.py --data-dir ../shared/data --out /tmp/keycurves
    # one longer surrogate fit of the grey-sigmoid spec (known pairs only):
    python benchmarks/curves_key_estimation.py --data-dir ../shared/data --out /tmp/keylong \\
        --parts default-known --surrogate-points 1024 --steps 1500
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
from owsd import provenance  # noqa: E402
from owsd.presets import get_preset  # noqa: E402

log = logging.getLogger("curves")
PARTS = ("linear", "default-known", "default-chosen", "ciphertext-default", "grey-sigmoid-known",
         "grey-sigmoid-chosen", "ciphertext")


def _err_plot(ax, series: dict, xlabel: str) -> None:
    for label, pts in series.items():
        xs = [p["n"] for p in pts]
        ys = [p["functional_error"] for p in pts]
        lo = [p["ci"][0] for p in pts]
        hi = [p["ci"][1] for p in pts]
        ax.errorbar(xs, ys, yerr=[[y - l for y, l in zip(ys, lo)], [h - y for y, h in zip(ys, hi)]], marker="o",
                    capsize=2, label=label)
    ax.axhline(1.0, color="grey", ls="--", lw=1, label="chance: constant predictor")
    # the default's random key has another carrier (error ~1e4): only the carrier-free specs' line is drawn
    rk = [p["chance_random_key"] for label, pts in series.items() if not label.startswith("default")
          for p in pts if p.get("chance_random_key")]
    if rk:
        ax.axhline(sum(rk) / len(rk), color="k", ls=":", lw=1, label="chance: random key (linear, grey-sigmoid)")
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
    ap.add_argument("--preset", default="grey-sigmoid",
                    help="--replot only: the name given to 'default' series of JSON files made before "
                         "2026-11-24 06:19 (9b0b769), when 'default' was the sigmoid spec now called grey-sigmoid")
    ap.add_argument("--steps", type=int, default=400, help="surrogate Adam steps for grey-sigmoid")
    ap.add_argument("--restarts", type=int, default=1, help="surrogate restarts for grey-sigmoid")
    ap.add_argument("--surrogate-points", type=int, nargs="+", default=[64, 256, 1024],
                    help="pairs / queries at which the grey-sigmoid surrogate is fitted")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                    help="what to run (all by default; default-* and ciphertext-default: the current default "
                         "preset; grey-sigmoid-*: surrogate fits of the previous default); figures are drawn "
                         "from what was run")
    ap.add_argument("--replot", type=Path, nargs="+", default=None, metavar="JSON",
                    help="run nothing: redraw the figures into --out from key_curves.json files, the first "
                         "the main run, the others added (surrogate series labelled with their steps)")
    args = ap.parse_args()
    if args.replot:
        def load(path: Path) -> dict:
            r = json.loads(path.read_text())
            if "preset" not in r.get("args", {}):  # made before 9b0b769: "default" was the sigmoid spec
                for part in ("known_plaintext", "chosen_plaintext", "ciphertext_only"):
                    r[part] = {(args.preset + k[len("default"):] if k.startswith("default") else k): v
                               for k, v in r.get(part, {}).items()}
            return r
        res = load(args.replot[0])
        for extra in args.replot[1:]:
            more = load(extra)
            for label, pts in more["known_plaintext"].items():
                suffix = f", {more['args']['steps']} steps" if "surrogate" in label else ""
                res["known_plaintext"][label + suffix] = pts
            for part in ("known_plaintext_images", "chosen_plaintext", "ciphertext_only"):
                res[part].update({k: v for k, v in more.get(part, {}).items() if k not in res[part]})
        args.out.mkdir(parents=True, exist_ok=True)
        plot(res, args.out, [16, 32, 64, 128, 256])
        return
    import torch

    torch.set_num_threads(1)  # small problems on shared cores
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    warnings.simplefilter("ignore")
    args.out.mkdir(parents=True, exist_ok=True)
    kw = dict(dataset=args.dataset, data_dir=args.data_dir, n_fit=4000)
    t0 = time.time()
    res: dict = {**provenance.record(), "args": {  # date, command, machine, versions: measured, not typed in
        "steps": args.steps, "restarts": args.restarts, "surrogate_points": args.surrogate_points,
        "parts": args.parts, "preset": "default = linear standardized texture carrier (9b0b769)"}}
    res.update(known_plaintext={}, known_plaintext_images={}, chosen_plaintext={}, ciphertext_only={})
    n_priv = max(256, max(args.surrogate_points))
    lin = (small_victim(preset="linear", seed=0, n_private=256, n_public=1000, n_heldout=64, **kw)
           if "linear" in args.parts or "ciphertext" in args.parts else None)
    sur = dict(steps=args.steps, restarts=args.restarts, batch_size=32, n_invert=8, invert_steps=30)
    if "linear" in args.parts:
        res["known_plaintext"].update({
            "linear (receptive-field LS)": error_vs_pairs(lin, [8, 12, 14, 15, 16, 20, 32, 64], n_invert=16),
            "linear (dense LS, 65 unknowns)": error_vs_pairs(lin, [48, 60, 64, 66, 72, 128], structure="dense",
                                                             n_invert=16)})
        res["known_plaintext_images"]["linear, image pairs (reduced-rank LS)"] = error_vs_pairs(
            lin, [64, 128, 256], pair_input="image", n_invert=16)
        res["chosen_plaintext"]["linear (Hadamard design)"] = error_vs_queries(
            lin, [16, 32, 48, 63, 64, 96, 128], n_invert=16)
    if "default-known" in args.parts or "default-chosen" in args.parts:
        dft = small_victim(preset="default", seed=0, n_private=512, n_public=16, n_heldout=64, **kw)
        if "default-known" in args.parts:
            res["known_plaintext"]["default (standardized estimator)"] = error_vs_pairs(
                dft, [64, 66, 67, 70, 80, 100, 128, 256], n_invert=16)
            res["known_plaintext_images"]["default, image pairs (standardized, own PCA)"] = error_vs_pairs(
                dft, [128, 256, 512], pair_input="image", n_invert=16)
        if "default-chosen" in args.parts:
            res["chosen_plaintext"]["default (zero + Hadamard + random signs)"] = error_vs_queries(
                dft, [32, 64, 65, 66, 67, 70, 128], n_invert=16)
        del dft
    if "grey-sigmoid-known" in args.parts or "grey-sigmoid-chosen" in args.parts:
        gsg = small_victim(preset="grey-sigmoid", seed=0, n_private=n_priv, n_public=1000, n_heldout=64, **kw)
        if "grey-sigmoid-known" in args.parts:
            res["known_plaintext"]["grey-sigmoid (surrogate GD)"] = error_vs_pairs(gsg, args.surrogate_points, **sur)
        if "grey-sigmoid-chosen" in args.parts:
            res["chosen_plaintext"]["grey-sigmoid (surrogate GD)"] = error_vs_queries(gsg, args.surrogate_points, **sur)
        del gsg  # its scrambled private images are large; ciphertext-only uses 256 private images
    pools = [16, 32, 64, 128, 256]
    co = dict(n_aux=1000, n_keys=12, n_train=64, trials=2, restarts=4, refine=5)

    def fresh(base: Victim, preset: str) -> Victim:
        return Victim(dataset=base.dataset, channel=FreshKeyChannel(base.encoder, get_preset(preset), seed=0),
                      private=base.private, public=base.public, heldout=base.heldout)
    if "ciphertext-default" in args.parts:
        dco = small_victim(preset="default", seed=0, n_private=256, n_public=1000, n_heldout=8, **kw)
        res["ciphertext_only"].update({
            "default (carrier = mean of targets)": reid_vs_pool(dco, pools, **co),
            "default, fresh key per image (negative control)": reid_vs_pool(fresh(dco, "default"), pools, **co)})
        del dco
    if "ciphertext" in args.parts:
        gco = small_victim(preset="grey-sigmoid", seed=0, n_private=256, n_public=1000, n_heldout=64, **kw)
        res["ciphertext_only"].update({
            "linear": reid_vs_pool(lin, pools, **co), "grey-sigmoid": reid_vs_pool(gco, pools, **co),
            "grey-sigmoid, fresh key per image (norm leak)": reid_vs_pool(fresh(gco, "grey-sigmoid"), pools, **co),
            "small-signal, fresh key per image (negative control)": reid_vs_pool(fresh(gco, "small-signal"), pools,
                                                                                 **co)})
    res["total_seconds"] = time.time() - t0
    (args.out / "key_curves.json").write_text(json.dumps(res, indent=1, default=float))
    plot(res, args.out, pools)
    log.info("done in %.0f s", res["total_seconds"])


def plot(res: dict, out: Path, pools: list) -> None:
    """key_functional_error.png and key_reidentification.png from the results (parts that were run)."""
    steps = res.get("args", {}).get("steps")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    _err_plot(axes[0], {**res["known_plaintext"], **res["known_plaintext_images"]}, "known pairs N")
    axes[0].set_title("known-plaintext (MNIST)")
    _err_plot(axes[1], res["chosen_plaintext"], "chosen queries")
    axes[1].set_title("chosen-plaintext (MNIST)")
    ax = axes[2]
    series = {f"known pairs, {label}" + ("" if "steps" in label else f", {steps} steps"): pts
              for label, pts in res["known_plaintext"].items() if "surrogate" in label}
    series.update({f"chosen queries, {label}, {steps} steps": pts
                   for label, pts in res["chosen_plaintext"].items() if "surrogate" in label})
    for label, pts in series.items():
        xs, ys = [p["n"] for p in pts], [p["functional_error"] for p in pts]
        ax.errorbar(xs, ys, yerr=[[y - p["ci"][0] for y, p in zip(ys, pts)], [p["ci"][1] - y for y, p in zip(ys, pts)]],
                    marker="o", capsize=2, label=label)
    ax.axhline(1.0, color="grey", ls="--", lw=1, label="chance: constant predictor")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.3)
    ax.set_xlabel("pairs or queries")
    ax.set_ylabel("functional error (linear scale)")
    ax.set_title("grey-sigmoid (the previous default): surrogate fit (MNIST)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "key_functional_error.png", dpi=90)
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
    fig.savefig(out / "key_reidentification.png", dpi=90)


if __name__ == "__main__":
    main()
