"""Success of the structure attacks against the traffic observed and the public data held (JSON).

One victim (one key, one encoder) sends ``max(--traffic)`` scrambled images; the attacker
observes a prefix of them and holds a prefix of ``max(--public)`` public images.  Every point is
a full run of the registered attack (``structure-ciphertext-only``, or with ``--kind outputs``
``structure-cloud-outputs``) scored by its scorer: re-identification at every pool that fits
(with decoys), SSIM beside the encoder's bound, intrinsic dimension, cost.  Scrambled images are
kept in a disk-backed array under ``--scratch`` (16,000 images of the 224x224 default are 9.6 GB
of float32), so memory stays small.  The JSON is rewritten after every point; a rerun skips the
points already in it.

Usage (the figures of docs/ciphertext-only.md):
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

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = Victim.build(dataset=args.dataset, data_dir=args.data_dir, preset=args.preset, seed=args.key_seed,
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
            "cost": result.cost, "wall_seconds": wall, "load_before": load[0], "load_after": os.getloadavg(),
            "threat_model": result.threat_model}


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--preset", default="default")
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
    ap.add_argument("--scratch", type=Path, default=None, help="folder for the disk-backed scrambled images")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
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
        victim, secs = _victim(args, max(t for t, _ in todo), Path(tmp))
        done["victim"] = {"fingerprint": victim.channel.fingerprint, "spec": victim.spec.name,
                          "encoder": "pca-64", "seconds": secs}
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
