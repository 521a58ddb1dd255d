"""Combine the stages of a staged frontier study into one frontier (issue 18, ``docs/frontier.md``).

A staged study runs several ``owsd sweep`` folders: each stage audits some designs with some
attacks (``--only``), and a confirmation stage may measure the utility of the candidates at
larger sizes (``--utility-sizes``).  This script reads every stage's ``frontier.json`` and
``sweep.json`` and writes, per design, the figures of the stages that measured it:

* privacy: per family, the strongest attack's advantage (mean and 95% interval over seeds)
  pooled over the stages (the largest mean; the stage and attack that gave it are named);
* utility: the cloud-only accuracy of each utility size measured (``2000/1000``, ``10000/2000``;
  a size measured by two stages is the same measurement: the first stage's is kept);
* the attacks each design was audited with, the jobs that errored, and one kernel verdict a seed
  (the most severe of the stages that audited that seed).

Written: ``OUT/frontier.json`` (rows and the stages' settings), ``OUT/frontier.csv``,
``OUT/frontier.png`` (``analysis.sweep.frontier.frontier_plot``, utility at the stages' common
size) and a Markdown table on stdout.  The Pareto front is re-ranked over the combined rows.

    python benchmarks/frontier_study.py --stage runs/stage1 --stage runs/stage2 \\
        [--confirm runs/confirm] --out docs/results/frontier

Example (two tiny frontiers, one design each):
    >>> fams = {f: {"mean": 0.5 if f == "leakage" else None, "ci95": None, "strongest": ["leak-equality"],
    ...             "errors": []} for f in FAMILIES}
    >>> row = {"kernel": "k", "utility": 0.8, "plaintext": 0.9, "utility_ci": None, "seeds": [0],
    ...        "families": fams, "verdicts": ["fail"], "fails": 1, "incomplete": []}
    >>> rows = combine([({"only": ["leak-equality"], "budget": "standard"}, [row])], size="2000/1000")
    >>> rows[0]["families"]["leakage"]["mean"], rows[0]["utility"], rows[0]["pareto"]
    (0.5, 0.8, True)
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from analysis.audit.utility import UTILITY_BUDGETS
from analysis.sweep.frontier import FAMILIES, VERDICT_SEVERITY, frontier_plot, rank_frontier
from owsd.io import atomic_write_json, atomic_write_text

def _size(settings: dict) -> str:
    """The stage's utility sizes, ``TRAIN/TEST`` (its ``--utility-sizes``, else its budget's)."""
    sizes = settings.get("utility_sizes")
    if not sizes:
        b = UTILITY_BUDGETS[settings.get("budget") or "standard"]
        sizes = (b.get("n_train") or "all", b.get("n_test") or "all")
    return f"{sizes[0]}/{sizes[1]}"


def load_stage(folder: Path) -> tuple[dict, list[dict]]:
    """``(settings, rows)`` of one stage (a finished sweep folder)."""
    settings = json.loads((folder / "sweep.json").read_text())["settings"]
    rows = json.loads((folder / "frontier.json").read_text())["rows"]
    return {**settings, "folder": str(folder)}, rows


def combine(stages: Sequence[tuple[dict, list[dict]]], *, size: str) -> list[dict]:
    """One row per design from every stage's rows; utility at ``size`` drives the ranking."""
    out: dict[str, dict] = {}
    for settings, rows in stages:
        s_size = _size(settings)
        for r in rows:
            row = out.setdefault(r["kernel"], {
                "kernel": r["kernel"], "label": r["kernel"], "utility_by_size": {}, "plaintext_by_size": {},
                "seeds": sorted(set(r["seeds"])), "attacks_run": [], "verdict_by_seed": {}, "fails": 0,
                "incomplete": [], "families": {f: {"mean": None, "ci95": None, "strongest": [], "stage": None}
                                               for f in FAMILIES}})
            row["seeds"] = sorted(set(row["seeds"]) | set(r["seeds"]))
            row["attacks_run"] = sorted(set(row["attacks_run"]) | set(settings.get("only") or ["(all)"]))
            if r.get("utility") is not None and s_size not in row["utility_by_size"]:  # the first stage's
                row["utility_by_size"][s_size] = {"mean": r["utility"], "ci95": r.get("utility_ci"),
                                                  "seeds": r["seeds"]}
                row["plaintext_by_size"][s_size] = r.get("plaintext")
            for f in FAMILIES:
                d, best = r["families"][f], row["families"][f]
                if d.get("mean") is not None and (best["mean"] is None or d["mean"] > best["mean"]):
                    row["families"][f] = {"mean": d["mean"], "ci95": d.get("ci95"),
                                          "strongest": sorted({j for j in d.get("strongest") or [] if j}),
                                          "stage": settings.get("folder")}
            for seed, v in zip(r["seeds"], r.get("verdicts") or []):  # one verdict a seed: the worst of its stages
                old = row["verdict_by_seed"].get(seed)
                if v and (old is None or VERDICT_SEVERITY.get(v, 0) > VERDICT_SEVERITY.get(old, 0)):
                    row["verdict_by_seed"][seed] = v
            row["fails"] += int(r.get("fails") or 0)
            row["incomplete"] += list(r.get("incomplete") or [])
    rows = []
    for row in out.values():
        u = row["utility_by_size"].get(size)
        row["utility"] = u["mean"] if u else None
        row["utility_ci"] = u["ci95"] if u else None
        row["plaintext"] = row["plaintext_by_size"].get(size)
        row["utility_gap"] = None if None in (row["utility"], row["plaintext"]) else row["plaintext"] - row["utility"]
        means = [row["families"][f]["mean"] for f in FAMILIES if row["families"][f]["mean"] is not None]
        row["privacy"] = max(means) if means else None
        row["verdicts"] = [row["verdict_by_seed"][k] for k in sorted(row["verdict_by_seed"])]
        row["verdict_by_seed"] = {str(k): v for k, v in sorted(row["verdict_by_seed"].items())}
        row["verdict"] = max(row["verdicts"], key=lambda v: VERDICT_SEVERITY.get(v, 0), default=None)
        rows.append(row)
    return rank_frontier(rows)


def _f(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.3f}"


def _ci(d: Optional[dict]) -> str:
    if not d or d.get("mean") is None:
        return "-"
    ci = d.get("ci95")
    return _f(d["mean"]) + (f" [{_f(ci[0])}, {_f(ci[1])}]" if ci else "")


def markdown(rows: Sequence[dict], sizes: Sequence[str]) -> str:
    """The combined frontier as a Markdown table (utility per size, advantage per family)."""
    head = (["rank", "design", "Pareto"] + [f"utility {s}" for s in sizes] + ["plaintext"]
            + [f"{f} advantage" for f in FAMILIES] + ["verdicts"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["rank"]), r["kernel"], "yes" if r["pareto"] else ""]
        cells += [_ci(r["utility_by_size"].get(s)) for s in sizes]
        cells.append(_f(r["plaintext"]))
        for f in FAMILIES:
            d = r["families"][f]
            cells.append(_ci(d) + (f" ({', '.join(d['strongest'])})" if d["strongest"] else ""))
        cells.append(", ".join(r["verdicts"]) + (" (incomplete)" if r["incomplete"] else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[dict], sizes: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "pareto", "design", "seeds", *(f"utility_{s}" for s in sizes), "plaintext", "utility_gap",
                *(f"{f}_{k}" for f in FAMILIES for k in ("mean", "lo", "hi", "strongest")), "privacy", "verdict",
                "attacks_run", "incomplete"])
    for r in rows:
        vals = [r["rank"], r["pareto"], r["kernel"], " ".join(map(str, r["seeds"]))]
        vals += [(r["utility_by_size"].get(s) or {}).get("mean") for s in sizes]
        vals += [r["plaintext"], r["utility_gap"]]
        for f in FAMILIES:
            d = r["families"][f]
            lo, hi = d.get("ci95") or (None, None)
            vals += [d["mean"], lo, hi, " ".join(d["strongest"])]
        vals += [r["privacy"], r["verdict"], " ".join(r["attacks_run"]), "; ".join(r["incomplete"])]
        w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in vals])
    return buf.getvalue()


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", action="append", required=True, help="a finished sweep folder (repeatable)")
    ap.add_argument("--confirm", action="append", default=[], help="a sweep folder of larger utility measurements")
    ap.add_argument("--size", default="2000/1000", help="utility size that places each design (default 2000/1000)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    stages = [load_stage(Path(p)) for p in [*a.stage, *a.confirm]]
    rows = combine(stages, size=a.size)
    sizes = sorted({s for r in rows for s in r["utility_by_size"]},
                   key=lambda s: int(s.split("/")[0]) if s.split("/")[0].isdigit() else 1 << 40)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "frontier.json", {"format": "owsd-frontier-study", "version": 1, "size": a.size,
                                              "stages": [s for s, _ in stages], "rows": rows})
    atomic_write_text(out / "frontier.csv", to_csv(rows, sizes))
    frontier_plot(rows, out / "frontier.png", title=f"OWSD frontier study (utility at {a.size})")
    sys.stdout.write(markdown(rows, sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
