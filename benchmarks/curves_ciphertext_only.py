"""Success of the structure attacks against the traffic observed and the public data held (JSON).

One victim (one key, one encoder) sends ``max(--traffic)`` scrambled images; the attacker
observes a prefix of them and holds a prefix of ``max(--public)`` public images.  Every point is
a full run of the registered attack (``structure-ciphertext-only``, or with ``--kind outputs``
``structure-cloud-outputs``) scored by its scorer: re-identification at every pool that fits
(with decoys), SSIM beside the encoder's bound, intrinsic dimension, cost.  Scrambled images are
kept in a disk-backed array under ``--scratch`` (16,000 images of the 224x224 default are 9.6 GB
of float32), so memory stays small.  The JSON is rewritten after every point; a rerun skips the
points already in it.

Usage (the figures of docs/ciphertext-only.md; ``--table FILES --figure PNG`` prints and draws them):
    python benchmarks/curves_ciphertext_only.py --data-dir ../shared/data --out /tmp/ct-default.json \\
        --traffic 256 1000 2000 4000 16000 --public 1000 4000 20000 --axes
    python benchmarks/curves_ciphertext_only.py --data-dir ../shared/data --out /tmp/ct-cloud.json \\
        --kind outputs --cloud tiny --traffic 1000 2000 4000 --public 20000

Example:
    >>> points(traffic=[256, 4000], public=[1000, 20000], axes=True)
    [(256, 20000), (4000, 1000), (4000, 20000)]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

log = logging.getLogger("curves_ciphertext_only")


def points(*, traffic: list[int], public: list[int], axes: bool) -> list[tuple[int, int]]:
    """Grid points ``(traffic, public)``: the full grid, or the two axes through the largest values."""
    if not axes:
        return sorted((t, a) for t in traffic for a in public)
    t_max, a_max = max(traffic), max(public)
    return sorted({(t, a_max) for t in traffic} | {(t_max, a) for a in public})


def _victim(args, n_traffic: int, scratch: Path):
    """The victim, its scrambled images in a disk-backed array (filled batch by batch)."""
    from attacks.victim import Victim

    from owsd.spec import ScramblerSpec

    spec = ScramblerSpec.load(args.spec) if args.spec else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = Victim.build(dataset=args.dataset, data_dir=args.data_dir, preset=None if spec else args.preset,
                         spec=spec, seed=args.key_seed,
                         n_private=n_traffic, n_public=max(args.public), n_heldout=max(args.pools) - 1,
                         n_fit=args.n_fit, cloud=args.cloud if args.kind == "outputs" else None)
    shape = tuple(v.spec.output_shape())
    t_all = t0 = time.perf_counter()
    y = np.lib.format.open_memmap(scratch / "scrambled.npy", mode="w+", dtype=np.float32,
                                  shape=(n_traffic, *shape))
    for s in range(0, n_traffic, 512):
        y[s:s + 512] = v.channel.scramble_images(v.private.images[s:s + 512])
    y.flush()
    v._cache["scr"] = np.load(scratch / "scrambled.npy", mmap_mode="r")
    log.info("victim: %d images scrambled in %.0f s", n_traffic, time.perf_counter() - t0)
    if args.kind == "outputs":
        t0 = time.perf_counter()
        v._cache["out"] = np.concatenate([v.cloud.predict(np.asarray(v._cache["scr"][s:s + 256]), verbose=False)
                                          for s in range(0, n_traffic, 256)])
        log.info("victim: cloud outputs of %d images in %.0f s", n_traffic, time.perf_counter() - t0)
    return v, time.perf_counter() - t_all


def _row(result, t: int, a: int, wall: float, load: tuple) -> dict:
    m, ci, ch, p = result.metrics, result.ci, result.chance, result.p_values
    pools = sorted(int(k.split("@")[1]) for k in m if k.startswith("reid_accuracy@"))
    s = result.curves["structure"][0]
    return {"n_traffic": t, "n_public": a,
            "reid": {str(k): {"accuracy": m[f"reid_accuracy@{k}"], "ci": list(ci[f"reid_accuracy@{k}"]),
                              "chance": ch[f"reid_accuracy@{k}"], "p_value": p[f"reid_accuracy@{k}"],
                              "decoy_accuracy": m[f"decoy_accuracy@{k}"], "decoy_ci": list(ci[f"decoy_accuracy@{k}"]),
                              "decoy_p_value": p[f"decoy_accuracy@{k}"]} for k in pools},
            "ssim_mean": m["ssim_mean"], "ssim_ci": list(ci["ssim_mean"]), "ssim_chance": ch["ssim_mean"],
            "ssim_p_value": p["ssim_mean"], "ssim_bound": m.get("ssim_bound"),
            "intrinsic_dim": m["intrinsic_dim"], "intrinsic_dim_chance": ch["intrinsic_dim"],
            "intrinsic_dim_p_value": p["intrinsic_dim"], "structure": s,
            "cost": result.cost, "wall_seconds": wall, "load_before": list(load), "load_after": list(os.getloadavg()),
            "threat_model": result.threat_model}


def _one(load) -> float:
    """The 1-minute load average (a number, or the first of ``os.getloadavg()``)."""
    return float(load[0] if isinstance(load, (list, tuple)) else load)


def table(files: list[Path]) -> str:
    """Markdown rows, one per point of the JSON files: re-identification at each pool, SSIM, cost."""
    lines = ["| source | traffic | public | " + "re-id @16 / @64 / @256 / @1024 [95% CI at the largest] | "
             "decoy at the largest | SSIM (bound) | dim (gap) | attack s | load |", "|" + "---|" * 9]
    for f in files:
        d = json.loads(Path(f).read_text())
        name = Path(d["args"]["spec"]).stem if d["args"].get("spec") not in (None, "None") else d["args"]["preset"]
        src = f"{name}, {d['args']['kind']}" + (f" ({d['args']['cloud']})"
                                                                 if d["args"]["kind"] == "outputs" else "")
        for p in d["points"]:
            pools = sorted(p["reid"], key=int)
            top = p["reid"][pools[-1]]
            acc = " / ".join(f"{100 * p['reid'][k]['accuracy']:.1f}" for k in pools)
            ci = top["ci"]
            lines.append(f"| {src} | {p['n_traffic']:,} | {p['n_public']:,} | {acc} % [{100 * ci[0]:.1f}, "
                         f"{100 * ci[1]:.1f}] (chance {100 * top['chance']:.2f} %) | {100 * top['decoy_accuracy']:.1f} % | "
                         f"{p['ssim_mean']:.3f} ({p['ssim_bound']:.3f}) | {p['intrinsic_dim']:.0f} "
                         f"({p['structure']['gap']:.2g}) | {p['cost']['seconds']:.0f} | "
                         f"{_one(p['load_before']):.1f}-{_one(p['load_after']):.1f} |")
    return "\n".join(lines)


def figure(files: list[Path], path: Path) -> Path:
    """Re-identification at the largest pool and SSIM against the traffic observed (one line per
    file and public size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for f in files:
        d = json.loads(Path(f).read_text())
        name = Path(d["args"]["spec"]).stem if d["args"].get("spec") not in (None, "None") else d["args"]["preset"]
        src = f"{name}, {'images' if d['args']['kind'] == 'scrambled' else d['args']['cloud'] + ' outputs'}"
        for a in sorted({p["n_public"] for p in d["points"]}):
            pts = sorted((p for p in d["points"] if p["n_public"] == a), key=lambda p: p["n_traffic"])
            if len(pts) < 2:
                continue
            xs = [p["n_traffic"] for p in pts]
            top = [p["reid"][max(p["reid"], key=int)] for p in pts]
            axes[0].errorbar(xs, [t["accuracy"] for t in top], yerr=[[t["accuracy"] - t["ci"][0] for t in top],
                             [t["ci"][1] - t["accuracy"] for t in top]], marker="o", capsize=2,
                             label=f"{src}, {a:,} public")
            axes[1].plot(xs, [p["ssim_mean"] for p in pts], marker="o", label=f"{src}, {a:,} public")
            axes[1].axhline(pts[-1]["ssim_bound"], color="grey", ls=":", lw=1)
    axes[0].axhline(1 / 1024, color="k", ls="--", lw=1, label="chance (pool 1,024)")
    axes[0].set_ylabel("re-identification at pool 1,024")
    axes[1].set_ylabel("mean SSIM (dotted: encoder bound)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("scrambled images observed")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--spec", type=Path, default=None, help="a scrambler spec JSON instead of --preset")
    ap.add_argument("--kind", choices=("scrambled", "outputs"), default="scrambled")
    ap.add_argument("--cloud", default="tiny", help="cloud for --kind outputs (tiny or efficientnet-lite0)")
    ap.add_argument("--traffic", type=int, nargs="+", default=[256, 1000, 2000, 4000, 16000])
    ap.add_argument("--public", type=int, nargs="+", default=[1000, 4000, 20000])
    ap.add_argument("--axes", action="store_true", help="only the two axes through the largest values")
    ap.add_argument("--pools", type=int, nargs="+", default=[16, 64, 256, 1024])
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--key-seed", type=int, default=0)
    ap.add_argument("--attack-seed", type=int, default=0)
    ap.add_argument("--n-fit", type=int, default=10000, help="images the victim's encoder is fitted on")
    ap.add_argument("--victim-traffic", type=int, default=None,
                    help="images the victim sends (default: the largest --traffic); keep it fixed across reruns "
                         "that add points, so that every point attacks the same deployment")
    ap.add_argument("--scratch", type=Path, default=None, help="folder for the disk-backed scrambled images")
    ap.add_argument("--out", type=Path, help="the JSON file (read, extended, rewritten)")
    ap.add_argument("--table", type=Path, nargs="+", default=None, metavar="JSON",
                    help="run nothing: print a markdown table of these JSON files")
    ap.add_argument("--figure", type=Path, default=None, help="with --table: also draw the curves here (PNG)")
    args = ap.parse_args(argv)
    if args.table:
        missing = [str(f) for f in args.table if not Path(f).is_file()]
        if missing:
            ap.error(f"--table: no such file: {', '.join(missing)}")
        print(table(args.table))
        if args.figure:
            figure(args.table, args.figure)
        return
    if args.out is None:
        ap.error("--out is required (or --table)")
    if min(args.traffic) < 3 or min(args.public) < 2 or min(args.pools) < 2 or args.targets < 2:
        ap.error("--traffic needs at least 3 images, --public 2, --pools 2 candidates, --targets 2")
    if args.data_dir is not None and not args.data_dir.is_dir():
        ap.error(f"--data-dir {args.data_dir} is not a directory")
    if args.spec is not None and not args.spec.is_file():
        ap.error(f"--spec {args.spec} does not exist")
    try:
        run(args)
    except (ValueError, FileNotFoundError) as exc:
        ap.exit(2, f"curves_ciphertext_only: error: {exc}\n")


def run(args: argparse.Namespace) -> None:
    """Run the missing points of ``args.out`` (see the module doc)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    from attacks.structure import StructureCiphertextOnly, StructureCloudOutputs

    torch.set_num_threads(1)
    done = json.loads(args.out.read_text()) if args.out.is_file() else {"points": []}
    have = {(p["n_traffic"], p["n_public"]) for p in done["points"]}
    todo = [pt for pt in points(traffic=args.traffic, public=args.public, axes=args.axes) if pt not in have]
    done["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    if not todo:
        log.info("every point is in %s", args.out)
        return
    cls = StructureCiphertextOnly if args.kind == "scrambled" else StructureCloudOutputs
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        n_victim = args.victim_traffic or max(args.traffic)
        if n_victim < max(t for t, _ in todo):
            raise ValueError(f"--victim-traffic {n_victim} is below the largest traffic asked for")
        victim, secs = _victim(args, n_victim, Path(tmp))
        info = {"fingerprint": victim.channel.fingerprint, "spec": victim.spec.name, "encoder": "pca-64",
                "n_traffic": n_victim, "seconds": secs}
        if done.get("victim", info)["fingerprint"] != info["fingerprint"] or \
                done.get("victim", info).get("n_traffic", n_victim) != n_victim:
            raise ValueError(f"{args.out} holds points of another deployment; use another --out")
        done["victim"] = info
        for t, a in todo:
            load = os.getloadavg()
            t0 = time.perf_counter()
            attack = cls(budget="standard", seed=args.attack_seed, verbose=False, n_traffic=t, n_aux=a,
                         n_basis=min(512 if args.kind == "scrambled" else 2000, t), restarts=args.restarts,
                         pool_sizes=tuple(args.pools), n_targets=min(args.targets, t),
                         n_reconstruct=min(args.targets, t), traffic_curve=(), aux_curve=())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = attack(victim)
            row = _row(r, t, a, time.perf_counter() - t0, load)
            done["points"].append(row)
            done["points"].sort(key=lambda p: (p["n_traffic"], p["n_public"]))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(done, indent=1, default=float) + "\n")
            top = row["reid"][str(max(int(k) for k in row["reid"]))]
            log.info("traffic %d, public %d: re-identification %.3f at the largest pool (decoy %.3f), SSIM %.3f "
                     "(bound %s), %.0f s", t, a, top["accuracy"], top["decoy_accuracy"], row["ssim_mean"],
                     row["ssim_bound"], row["wall_seconds"])


if __name__ == "__main__":
    main()
