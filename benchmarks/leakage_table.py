"""Run the whole leakage suite on one victim and write the docs table (Markdown + JSON).

Example:
    python benchmarks/leakage_table.py --dataset mnist --data-dir ../shared/data --preset default \
        --cloud efficientnet-lite0 --budget standard --seed 0 --out runs/leakage-default-mnist
    python benchmarks/leakage_table.py --control noise --dataset digits --cloud tiny --budget smoke \
        --out runs/leakage-noise-digits
    python benchmarks/leakage_table.py --summarize runs/leakage-noise-digits runs/leakage-default-digits \
        --figure docs/figures/leakage_controls.png --out runs/leakage-summary
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from attacks.controls import fresh_key_victim, identity_victim, noise_victim, permutation_victim
from attacks.leakage import (format_table, leakage_table, leakage_victim_sizes, run_all_leakage_tests, save_roc,
                             with_null_internal_model)
from attacks.victim import Victim
from owsd import provenance

CONTROLS = {"identity": identity_victim, "permutation": permutation_victim, "noise": noise_victim,
            "fresh-key": fresh_key_victim}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--preset", default="default")
    p.add_argument("--control", choices=sorted(CONTROLS), help="a control victim instead of the OWSD preset")
    p.add_argument("--cloud", default="tiny")
    p.add_argument("--budget", default="smoke", choices=("smoke", "standard", "full"))
    p.add_argument("--seed", type=int, default=0, help="key seed and attack seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--membership-null", action="store_true",
                   help="run only the membership tests, against the null internal model (negative control)")
    p.add_argument("--summarize", type=Path, nargs="+", help="run folders to combine (no new run)")
    p.add_argument("--figure", type=Path, help="with --summarize: heat map of -log10 BH p-values")
    a = p.parse_args(argv)
    if a.summarize:
        return summarize(a.summarize, a.out, a.figure)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sizes = leakage_victim_sizes(a.budget)
    prov = provenance.record()  # machine and load at the start
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seeded-key warning: experiment keys are not secret
        if a.control:
            victim = CONTROLS[a.control](dataset=a.dataset, data_dir=a.data_dir, cloud=a.cloud, **sizes)
        else:
            victim = Victim.build(dataset=a.dataset, data_dir=a.data_dir, preset=a.preset, seed=a.seed,
                                  cloud=a.cloud, **sizes)
        build_s = time.perf_counter() - t0
        if a.membership_null:
            victim = with_null_internal_model(victim)
        only = ("leak-membership-loss", "leak-membership-shadow") if a.membership_null else None
        results = run_all_leakage_tests(victim, budget=a.budget, seed=a.seed, threads=a.threads, only=only)
    total_s = time.perf_counter() - t0
    rows = leakage_table(results)
    a.out.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(results):
        r.save(a.out / f"{i:02d}-{r.attack}-{r.params.get('source', 'x')}")
    mem = [r for r in results if r.attack.startswith("leak-membership")]
    if mem:
        save_roc(mem, a.out / "roc.png")
    meta = {"membership_null": a.membership_null, "dataset": a.dataset,
            "preset": None if a.control else a.preset, "control": a.control,
            "cloud": a.cloud, "budget": a.budget, "seed": a.seed, "sizes": sizes, "channel": victim.channel.name,
            "victim_build_seconds": build_s, "total_seconds": total_s,
            **prov, "load_average_end": provenance.load_average()}  # date, command, machine, versions
    (a.out / "table.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    md = format_table(rows)
    (a.out / "table.md").write_text(md + "\n")
    logging.getLogger("leakage_table").info("done in %.0f s\n%s", total_s, md)
    return 0


def _victim_name(meta: dict) -> str:
    return meta["control"] or meta["preset"]


def summarize(dirs: list[Path], out: Path, figure: Path | None) -> int:
    """One Markdown table (primary statistic, chance, BH p-value per victim) and a heat map."""
    runs = [json.loads((d / "table.json").read_text()) for d in dirs]
    names = [_victim_name(r["meta"]) for r in runs]
    tests = [row["test"] for row in runs[0]["rows"]]
    head = "| test | metric | " + " | ".join(names) + " |"
    lines = [head, "|---|---|" + "---|" * len(names)]
    grid = np.full((len(tests), len(names)), np.nan)
    for i, t in enumerate(tests):
        cells, metric = [], ""
        for j, r in enumerate(runs):
            row = next((x for x in r["rows"] if x["test"] == t), None)
            if row is None:
                cells.append("–")
                continue
            metric = row["metric"]
            grid[i, j] = -np.log10(max(row["p_bh"], 1e-300)) if row["p_bh"] is not None else np.nan
            mark = "**" if row["flagged"] else ""
            cells.append(f"{mark}{row['value']:.3f}{mark} ({row['chance']:.3f}; {row['p_bh']:.2g})")
        lines.append(f"| {t} | {metric} | " + " | ".join(cells) + " |")
    out.mkdir(parents=True, exist_ok=True)
    md = "\n".join(lines)
    (out / "summary.md").write_text(md + "\n")
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("leakage_table").info("\n%s", md)
    if figure is not None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(names), 0.9 + 0.32 * len(tests)), dpi=100)
        im = ax.imshow(np.minimum(grid, 10), cmap="Reds", vmin=0, vmax=10, aspect="auto")
        for i in range(len(tests)):
            for j in range(len(names)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, "✓" if grid[i, j] > -np.log10(0.05) else "·", ha="center", va="center",
                            fontsize=8, color="white" if grid[i, j] > 5 else "black")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(tests)), tests, fontsize=7)
        fig.colorbar(im, ax=ax, label="-log10 p (BH), capped at 10")
        ax.set_title("leakage tests: flagged (✓) at BH 5%", fontsize=9)
        fig.tight_layout()
        figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(figure)
        plt.close(fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
