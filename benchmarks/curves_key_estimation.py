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
from owsd.presets import get_preset  # noqa: E402

log = logging.getLogger("curves")
PARTS = ("linear", "default-known", "default-chosen", "ciphertext")


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
    ap.add_argument("--preset", default="grey-sigmoid",
                    help="the nonlinear spec attacked by surrogate fits and ciphertext-only (the docs' figures: "
                         "grey-sigmoid, which was the default preset when they were measured)")
    ap.add_argument("--steps", type=int, default=400, help="surrogate Adam steps for the nonlinear spec")
    ap.add_argument("--restarts", type=int, default=1, help="surrogate restarts for the default spec")
    ap.add_argument("--surrogate-points", type=int, nargs="+", default=[64, 256, 1024],
                    help="pairs / queries at which the default spec's surrogate is fitted")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                    help="what to run (all by default; default-* are the surrogate fits of --preset); "
                         "figures are drawn from what was run")
    ap.add_argument("--replot", type=Path, nargs="+", default=None, metavar="JSON",
                    help="run nothing: redraw the figures into --out from key_curves.json files, the first "
                         "the main run, the others (--parts default-known runs) added as longer fits")
    args = ap.parse_args()
    if args.replot:
        res = json.loads(args.replot[0].read_text())
        for extra in args.replot[1:]:
            more = json.loads(extra.read_text())
            for label, pts in more["known_plaintext"].items():
                res["known_plaintext"][f"{label}, {more['args']['steps']} steps"] = pts
        # runs made before --preset existed name the sigmoid spec "default" (it was, then)
        name = res.get("args", {}).get("preset", args.preset)
        for part in ("known_plaintext", "chosen_plaintext", "ciphertext_only"):
            res[part] = {(name + k[len("default"):] if k.startswith("default") else k): v
                         for k, v in res[part].items()}
        args.out.mkdir(parents=True, exist_ok=True)
        res.setdefault("args", {})["preset"] = name
        plot(res, args.out, [16, 32, 64, 128, 256])
        return
    import torch

    torch.set_num_threads(1)  # small problems on shared cores
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    warnings.simplefilter("ignore")
    args.out.mkdir(parents=True, exist_ok=True)
    kw = dict(dataset=args.dataset, data_dir=args.data_dir, n_fit=4000)
    t0 = time.time()
    res: dict = {"machine": "2-core shared CPU, no GPU", "date": "2026-11-24", "args": {
        "steps": args.steps, "restarts": args.restarts, "surrogate_points": args.surrogate_points,
        "parts": args.parts, "preset": args.preset}}
    res.update(known_plaintext={}, known_plaintext_images={}, chosen_plaintext={}, ciphertext_only={})
    n_priv = max(256, max(args.surrogate_points))
    lin = small_victim(preset="linear", seed=0, n_private=256, n_public=1000, n_heldout=64, **kw)
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
        dft = small_victim(preset=args.preset, seed=0, n_private=n_priv, n_public=1000, n_heldout=64, **kw)
        if "default-known" in args.parts:
            res["known_plaintext"][f"{args.preset} (surrogate GD)"] = error_vs_pairs(dft, args.surrogate_points, **sur)
        if "default-chosen" in args.parts:
            res["chosen_plaintext"][f"{args.preset} (surrogate GD)"] = error_vs_queries(dft, args.surrogate_points, **sur)
        del dft  # its scrambled private images are large; ciphertext-only uses 256 private images
    pools = [16, 32, 64, 128, 256]
    if "ciphertext" in args.parts:
        dco = small_victim(preset=args.preset, seed=0, n_private=256, n_public=1000, n_heldout=64, **kw)

        def fresh(preset: str) -> Victim:
            return Victim(dataset=dco.dataset, channel=FreshKeyChannel(dco.encoder, get_preset(preset), seed=0),
                          private=dco.private, public=dco.public, heldout=dco.heldout)
        co = dict(n_aux=1000, n_keys=12, n_train=64, trials=2, restarts=4, refine=5)
        res["ciphertext_only"] = {
            "linear": reid_vs_pool(lin, pools, **co), args.preset: reid_vs_pool(dco, pools, **co),
            f"{args.preset}, fresh key per image (norm leak)": reid_vs_pool(fresh(args.preset), pools, **co),
            "small-signal, fresh key per image (negative control)": reid_vs_pool(fresh("small-signal"), pools, **co)}
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
              for label, pts in res["known_plaintext"].items() if not label.startswith("linear")}
    series.update({f"chosen queries, {label}, {steps} steps": pts
                   for label, pts in res["chosen_plaintext"].items() if not label.startswith("linear")})
    for label, pts in series.items():
        xs, ys = [p["n"] for p in pts], [p["functional_error"] for p in pts]
        ax.errorbar(xs, ys, yerr=[[y - p["ci"][0] for y, p in zip(ys, pts)], [p["ci"][1] - y for y, p in zip(ys, pts)]],
                    marker="o", capsize=2, label=label)
    ax.axhline(1.0, color="grey", ls="--", lw=1, label="chance: constant predictor")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.3)
    ax.set_xlabel("pairs or queries")
    ax.set_ylabel("functional error (linear scale)")
    ax.set_title(f"{res.get('args', {}).get('preset', 'grey-sigmoid')} spec: surrogate fit (MNIST)")
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
