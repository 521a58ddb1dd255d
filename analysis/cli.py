"""``owsd audit`` and ``owsd audit-compare`` (registered into the main ``owsd`` command).

Example:
    owsd audit --preset default --seed 0 --dataset digits --budget smoke --out runs/audit-default
    owsd audit --key my.key --dataset mnist --data-dir ../shared/data --cloud efficientnet-lite0 \\
        --budget standard --out runs/audit-mnist
    owsd audit --scrambler mypkg.schemes:blur --dataset digits --budget smoke --out runs/audit-blur
    owsd audit-compare runs/audit-* --out runs/compare
    owsd audit-calibrate --budget smoke --out runs/calibration
    owsd sweep --presets linear,default --seeds 0,1 --dataset digits --budget smoke --workers 2 --out runs/sweep
    owsd sweep --grid benchmarks/frontier_designs.yaml --seeds 0,1 --scheduler tcp://10.0.0.5:8786 --out runs/frontier
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Optional

# Imports of the project's modules sit inside the functions, for start-up speed: `owsd` builds every
# command's parser at start (entry points), and the modules a command runs (torch, the attacks) load
# only when it runs.
from owsd.cli_options import add_cloud_options, add_data_options, cloud_flags, cloud_options
from owsd.errors import UsageError

log = logging.getLogger(__name__)


def _names(text: str) -> tuple[str, ...]:
    vals = tuple(v.strip() for v in text.split(",") if v.strip())
    if not vals:
        raise argparse.ArgumentTypeError("expected comma-separated attack names")
    return vals


def load_scrambler(ref: str):
    """``module:callable`` -> the callable (clear errors)."""
    from owsd.cloud_sources import import_object

    return import_object(ref, option="--scrambler")


def _target(a: argparse.Namespace):
    from analysis.audit import AuditTarget

    if a.key is not None:
        if a.seed is not None:
            raise UsageError("--seed derives a key; it cannot be combined with --key")
        return AuditTarget.from_key_file(a.key)
    if a.spec is not None:
        return AuditTarget.from_spec(a.spec, seed=a.seed)
    if a.preset is not None:
        return AuditTarget.from_preset(a.preset, seed=a.seed)
    if a.scrambler is not None:
        return AuditTarget.from_callable(load_scrambler(a.scrambler), name=a.name or a.scrambler)
    raise UsageError("name the kernel to audit: --key FILE, --spec SPEC.json, --preset NAME "
                     "or --scrambler MODULE:CALLABLE")


def _cmd_audit(a: argparse.Namespace) -> int:
    from analysis.audit import AuditConfig, run_audit

    target = _target(a)
    cfg = AuditConfig(out=a.out, dataset=a.dataset, data_dir=a.data_dir, image_size=a.image_size,
                      cloud=None if a.cloud == "none" else a.cloud, cloud_options=cloud_options(a),
                      cloud_resize=a.cloud_resize, budget=a.budget, seed=a.attack_seed,
                      only=a.only, exclude=a.exclude or (), utility=not a.no_utility,
                      utility_sizes=a.utility_sizes, device=a.device,
                      verbose=not a.quiet, threads=a.threads, command=command_line(a))
    rep = run_audit(target, cfg, restart=a.restart)
    sys.stdout.write(summary_text(rep, out=a.out))
    return 0


def _attack_line(e: dict) -> str:
    m = e.get("primary")
    if m:
        lo, hi = e["ci"].get(m, [float("nan")] * 2)
        return (f"  {e['verdict']:12s} {e['job']:44s} {m} = {e['metrics'][m]:.4g} "
                f"[{lo:.3g}, {hi:.3g}] (chance {e['chance'].get(m, float('nan')):.3g})")
    return f"  {e['verdict']:12s} {e['job']:44s} {e.get('reason', '')[:90]}"


def summary_text(rep: dict, *, out: Optional[Path] = None) -> str:
    """The CLI summary of a report: the kernel verdict, its attacks, then the system findings beside it."""
    kv = rep.get("kernel_verdict") or {"verdict": rep["summary"]["overall"], "reason": ""}
    lines = [f"audit of {rep['target']['name']} ({rep['target']['fingerprint']}) on {rep['dataset']['name']}, "
             f"cloud {rep['cloud']}, budget {rep['budget']}: kernel verdict {kv['verdict'].upper()}",
             f"  {kv['reason']}"]
    if kv.get("verdict") == "pass" or kv.get("resisted"):
        lines.append("  certified: every attack ran at full strength" if kv.get("certified") else
                     "  NOT certified: " + "; ".join(kv.get("certification") or []))
    lines.append(" attacks on the kernel:")
    lines += [_attack_line(e) for e in rep["attacks"] if e.get("finding") != "system"]
    system = [e for e in rep["attacks"] if e.get("finding") == "system"]
    if system:
        lines.append(" system findings (outcome independent of the kernel; not in its verdict):")
        lines += [_attack_line(e) for e in system]
    u = rep.get("utility_headline")
    if u is not None:
        lines.append(f"  utility (cloud-only accuracy): {u:.4f}")
    if out is not None:
        lines.append(f"  wrote {Path(out) / 'report.json'} and report.html")
    return "\n".join(lines) + "\n"


def _cmd_compare(a: argparse.Namespace) -> int:
    from analysis.compare import compare

    labels = [s.strip() for s in a.labels.split(",")] if a.labels else None
    res = compare(a.dirs, out=a.out, labels=labels, title=a.title)
    sys.stdout.write(res["table"])
    for n in res["notes"]:
        sys.stdout.write(f"note: {n}\n")
    if a.out is not None:
        sys.stdout.write(f"wrote {Path(a.out) / 'compare.md'}, compare.json and privacy_utility.png\n")
    return 0


def _seeds(text: str) -> tuple[int, ...]:
    from owsd import argtypes

    parts = [v for v in str(text).split(",") if v.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected comma-separated seeds, got nothing")
    vals = tuple(argtypes.nonnegative_int(v) for v in parts)
    if len(set(vals)) != len(vals):
        raise argparse.ArgumentTypeError(f"seeds repeat: {text!r}")
    return vals


def _utility_sizes(text: str) -> tuple[int, int]:
    from owsd import argtypes

    sizes = argtypes.int_list(text)
    if len(sizes) != 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected TRAIN,TEST (two positive integers), got {text!r}")
    return (int(sizes[0]), int(sizes[1]))


def _scheduler(text: str) -> str:
    if "://" not in text or not text.split("://", 1)[1]:
        raise argparse.ArgumentTypeError(f"expected a Dask scheduler address such as tcp://HOST:PORT, got {text!r}")
    return text


def _cmd_sweep(a: argparse.Namespace) -> int:
    from analysis.compare import format_table
    from analysis.sweep import SweepConfig, kernels_from, run_sweep

    kernels = kernels_from(presets=a.presets or (), spec_files=a.spec or (), grids=a.grid or ())
    datasets = tuple(dict.fromkeys(a.datasets or ("digits",)))
    from analysis.audit import AuditConfig

    cloud = None if a.cloud == "none" else a.cloud
    if cloud and cloud.lower().endswith(".onnx"):  # workers may start elsewhere: an absolute path
        cloud = str(Path(cloud).resolve())
    opts = cloud_options(a)
    if "config" in opts:
        opts["config"] = str(Path(opts["config"]).resolve())
    for d in datasets:  # the audit's own checks, once, before any cluster starts
        AuditConfig(dataset=d, data_dir=a.data_dir, cloud=cloud, cloud_options=opts, cloud_resize=a.cloud_resize,
                    budget=a.budget).validate()
    cfg = SweepConfig(out=a.out, seeds=a.seeds, datasets=datasets, data_dir=a.data_dir,
                      cloud=cloud, cloud_options=opts, cloud_resize=a.cloud_resize, budget=a.budget, only=a.only,
                      exclude=a.exclude or (), utility=not a.no_utility, utility_sizes=a.utility_sizes,
                      device=a.device, workers=a.workers,
                      scheduler=a.scheduler, threads=a.threads, verbose=not a.quiet,
                      command=shlex.join(["owsd", *sys.argv[1:]]) if sys.argv[1:2] == ["sweep"] else None)
    res = run_sweep(kernels, cfg)
    rows = res["frontier"]["rows"]
    sys.stdout.write(f"sweep of {len(kernels)} kernels x {len(cfg.seeds)} seeds x {len(datasets)} datasets: "
                     f"{res['audits']} audits, {res['tasks_run']} tasks run in {res['seconds']:.0f} s\n")
    sys.stdout.write(format_table(rows))
    if res["lost"]:
        sys.stdout.write(f"{len(res['lost'])} tasks failed on every try; run the same command to retry them\n")
    sys.stdout.write(f"wrote {Path(a.out) / 'frontier.json'}, frontier.csv, frontier.png, report.html and "
                     f"{res['audits']} audits under {Path(a.out) / 'audits'}\n")
    return 1 if res["lost"] else 0


def _cmd_calibrate(a: argparse.Namespace) -> int:
    from analysis.calibration import run_calibration

    parts = ["owsd", "audit-calibrate", "--budget", a.budget, "--dataset", a.dataset, "--cloud", a.cloud,
             "--out", str(a.out)] + (["--only", ",".join(a.only)] if a.only else []) + \
        (["--scramblers", ",".join(a.scramblers)] if a.scramblers else [])
    res = run_calibration(a.out, budget=a.budget, dataset=a.dataset, data_dir=a.data_dir,
                          cloud=None if a.cloud == "none" else a.cloud, seed=a.attack_seed, only=a.only,
                          scramblers=a.scramblers, threads=a.threads, verbose=not a.quiet,
                          command=shlex.join(parts))
    lines = [f"calibration, budget {res['budget']} on {res['dataset']} (cloud {res['cloud']}): "
             f"{sum(r['match'] for r in res['rows'])} of {len(res['rows'])} scramblers as expected, "
             f"{res['seconds']:.0f} s"]
    for r in res["rows"]:
        k = r["kernel"]
        lines.append(f"  {'ok ' if r['match'] else 'BAD'} {r['scrambler']:26s} kernel {k['observed']:12s} "
                     f"(expected {k['expected']}); system findings {r['system']}")
        if r["errors"]:
            lines.append(f"      crashed: {', '.join(r['errors'])}")
        for f, d in r["families"].items():
            if not d["match"]:
                lines.append(f"      {f}: observed {d['observed']}, expected {' or '.join(d['expected'])}")
    lines.append(f"  wrote {Path(a.out) / 'calibration.md'} and calibration.json")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if res["all_match"] else 1


def command_line(a: argparse.Namespace) -> str:
    """The ``owsd audit`` command equivalent to parsed arguments ``a`` (for the report)."""
    parts = ["owsd", "audit"]
    for opt in ("key", "spec", "preset", "scrambler", "name", "seed", "dataset", "data_dir", "image_size", "cloud",
                "budget", "out", "attack_seed", "threads", "device"):
        v = getattr(a, opt, None)
        if v is not None and not (opt == "device" and v == "cpu"):
            parts += ["--" + opt.replace("_", "-"), str(v)]
    parts += cloud_flags(cloud_options(a), a.cloud_resize)  # how the cloud is read and reached
    for opt in ("only", "exclude", "utility_sizes"):
        v = getattr(a, opt, None)
        if v:
            parts += ["--" + opt.replace("_", "-"), ",".join(map(str, v))]
    parts += [f"--{o.replace('_', '-')}" for o in ("no_utility", "restart", "quiet") if getattr(a, o, False)]
    return shlex.join(parts)


def register(sub: argparse._SubParsersAction) -> None:
    from owsd import argtypes
    from owsd.cli import key_is_fixed
    from owsd.cloud import CLOUD_NAMES
    from owsd.data import DATASETS

    p = sub.add_parser("audit", help="score a scrambling kernel against every registered attack",
                       description="Run every registered attack (key estimation, inversion, leakage) under "
                                   "every threat model it supports at the budget; write report.json, "
                                   "report.html, per-sample scores and figures to --out (resumable).")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--key", type=argtypes.input_file, help="key file (from `owsd keygen`)")
    g.add_argument("--spec", type=argtypes.input_file,
                   help="scrambler spec JSON (a fresh key is drawn for it, never saved)")
    g.add_argument("--preset", help="named spec (default, linear, small-signal, deep-linear); fresh key")
    g.add_argument("--scrambler", help="MODULE:CALLABLE, any scrambler: float images (N,C,H,W) in [0,1] -> "
                                       "scrambled images in [0,1]")
    p.add_argument("--name", help="name of a --scrambler target in the report")
    p.add_argument("--seed", type=argtypes.nonnegative_int, help="derive the key of --spec/--preset from this "
                                                                  "seed (NOT secret; lets an interrupted audit resume)")
    add_data_options(p)
    add_cloud_options(p, allow_none=True)
    p.add_argument("--budget", default="smoke", choices=("smoke", "standard", "full"))
    p.add_argument("--out", type=argtypes.output_dir, default=Path("owsd-audit"),
                   help="run directory (resumed if it exists)")
    p.add_argument("--attack-seed", type=argtypes.nonnegative_int, default=0,
                   help="seed of the attacks' randomness and data split")
    p.add_argument("--only", type=_names, help="comma-separated attack names (or job ids) to run")
    p.add_argument("--exclude", type=_names, help="comma-separated attack names (or job ids) to leave out")
    p.add_argument("--no-utility", action="store_true", help="skip the utility measurement")
    p.add_argument("--utility-sizes", type=_utility_sizes, metavar="TRAIN,TEST",
                   help="images of the utility measurement (default: the budget's; e.g. 10000,2000)")
    p.add_argument("--threads", type=argtypes.positive_int, default=1,
                   help="torch/BLAS and cloud threads (default 1, the fastest on a shared machine)")
    p.add_argument("--restart", action="store_true", help="discard a previous audit in --out")
    p.add_argument("--device", type=argtypes.device, default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_audit, resumable=key_is_fixed)

    k = sub.add_parser("audit-calibrate", help="audit the reference scramblers and compare with their expected verdicts",
                       description="Audit the calibration battery (analysis/calibration_expected.json: identity, "
                                   "pixel permutation, blur, additive noise, input-independent noise, a one-time "
                                   "pad, the linear/default/grey-sigmoid presets) and write calibration.md/.json "
                                   "(expected vs observed kernel and family verdicts). Exit status 1 on a mismatch.")
    k.add_argument("--budget", default="smoke", choices=("smoke", "standard", "full"))
    k.add_argument("--out", type=Path, default=Path("owsd-calibration"), help="folder for the audits and the table")
    k.add_argument("--dataset", default="digits", choices=DATASETS)
    k.add_argument("--data-dir", type=Path, help="folder holding the dataset (not needed for digits)")
    k.add_argument("--cloud", default="tiny", choices=(*CLOUD_NAMES, "none"))
    k.add_argument("--only", type=_names, help="comma-separated attack names to run (default: all)")
    k.add_argument("--scramblers", type=_names, help="comma-separated reference names (default: the whole battery)")
    k.add_argument("--attack-seed", type=int, default=0)
    k.add_argument("--threads", type=int, default=1)
    k.add_argument("--quiet", action="store_true", help="no progress bars")
    k.set_defaults(func=_cmd_calibrate)

    w = sub.add_parser("sweep", help="audit many kernels x seeds x datasets on Dask, and their privacy-utility frontier",
                       description="Audit every kernel (--presets, --spec, --grid) under every seed on every "
                                   "dataset, one Dask task per attack job, on an embedded cluster (--workers) "
                                   "or an existing one (--scheduler); write one audit folder per kernel x seed "
                                   "under --out/audits and the frontier (frontier.json/.csv/.png, report.html). "
                                   "Resumable: a rerun runs only what is missing.")
    w.add_argument("--presets", type=_names, help="comma-separated preset names")
    w.add_argument("--spec", type=argtypes.input_file, action="append", help="scrambler spec JSON (repeatable)")
    w.add_argument("--grid", type=argtypes.input_file, action="append",
                   help="grid file (JSON/YAML) over spec fields (repeatable; see docs/sweeps.md)")
    w.add_argument("--seeds", type=_seeds, default=(0,), help="comma-separated seeds: each derives every "
                                                              "kernel's key (NOT secret) and seeds its attacks")
    w.add_argument("--datasets", "--dataset", type=_names, help="comma-separated datasets (default digits)")
    w.add_argument("--data-dir", type=argtypes.input_dir, help="folder holding the datasets (not needed for digits; "
                                                                 "the same path on every worker)")
    add_cloud_options(w, allow_none=True)  # a model file must be reachable by every worker
    w.add_argument("--budget", default="smoke", choices=("smoke", "standard", "full"))
    w.add_argument("--only", type=_names, help="comma-separated attack names (or job ids) to run")
    w.add_argument("--exclude", type=_names, help="comma-separated attack names (or job ids) to leave out")
    w.add_argument("--no-utility", action="store_true", help="skip the utility measurement (no frontier x axis)")
    w.add_argument("--utility-sizes", type=_utility_sizes, metavar="TRAIN,TEST",
                   help="images of each utility measurement (default: the budget's; e.g. 10000,2000)")
    w.add_argument("--workers", type=argtypes.positive_int, default=1,
                   help="worker processes of the embedded Dask cluster (default 1)")
    w.add_argument("--scheduler", type=_scheduler, help="tcp://HOST:PORT of an existing Dask scheduler "
                                                        "(its workers run the jobs; --workers is ignored)")
    w.add_argument("--threads", type=argtypes.positive_int,
                   help="torch/BLAS threads of each job (default: cores / workers; 1 on --scheduler)")
    w.add_argument("--out", type=argtypes.output_dir, default=Path("owsd-sweep"),
                   help="sweep folder (resumed if it exists; must be reachable by every worker)")
    w.add_argument("--device", type=argtypes.device, default="cpu")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=_cmd_sweep, resumable=True)

    c = sub.add_parser("audit-compare", help="rank audited kernels on a privacy-utility table and plot")
    c.add_argument("dirs", nargs="+", type=Path, help="audit run directories (each with report.json)")
    c.add_argument("--out", type=argtypes.output_dir,
                   help="write compare.md, compare.json and privacy_utility.png here")
    c.add_argument("--labels", help="comma-separated labels, one per directory")
    c.add_argument("--title", help="plot title")
    c.set_defaults(func=_cmd_compare)
