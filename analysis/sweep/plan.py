"""A sweep's plan: its settings, its audits (kernel x seed x dataset) and their tasks.

Every audit of a sweep is an ordinary audit run directory (:mod:`analysis.audit.rundir`)::

    OUT/sweep.json                             the sweep: settings, kernels, audits
    OUT/kernels/<kernel>.json                  each kernel's public spec
    OUT/audits/<kernel>--seed-<s>[--<dataset>]/   one audit (``owsd audit --spec ... --out`` resumes it)
    OUT/frontier.json, frontier.csv, frontier.png, report.html

A seed ``s`` derives the kernel's key (not secret: experiments only) and seeds the attacks
and the victim's data split, as ``owsd audit --seed s --attack-seed s`` does.  A task is one
job of one audit (or its utility measurement), described by plain data (paths, seeds, the
spec as a dict): the worker rebuilds the victim from it; no tensor is shipped.

Example:
    >>> from analysis.sweep.kernels import kernels_from
    >>> cfg = SweepConfig(out="D", seeds=(0, 1))
    >>> [c.folder for c in audit_cells(kernels_from(presets=("linear",)), cfg)]
    ['linear--seed-0', 'linear--seed-1']
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from analysis.audit import AuditConfig
from analysis.audit.plan import Job
from analysis.sweep.kernels import Kernel
from owsd.cli_options import cloud_flags

SWEEP_FORMAT = "owsd-sweep"


@dataclass
class SweepConfig:
    """Settings of one sweep (the audits' settings, plus where they run).

    Attributes:
        out: the sweep's folder (created; a previous sweep of the same settings there is resumed).
        seeds: each seed gives every kernel one audit (key, attacks and data split from it).
        datasets, data_dir, cloud, cloud_options, cloud_resize, budget, only, exclude, utility, device:
            as ``owsd audit``'s (a local model file and ``data_dir`` must be reachable by every worker).
        workers: processes of the embedded Dask cluster (ignored with ``scheduler``).
        scheduler: address of an existing Dask scheduler (``tcp://HOST:PORT``), else ``None``.
        threads: torch/BLAS threads of each task (``None``: the usable cores / ``workers`` on the
            embedded cluster, 1 on an existing one).
    """

    out: str | Path = "owsd-sweep"
    seeds: Sequence[int] = (0,)
    datasets: Sequence[str] = ("digits",)
    data_dir: Optional[str | Path] = None
    cloud: Optional[str] = "tiny"
    cloud_options: Optional[dict] = None
    cloud_resize: str = "bilinear"
    budget: str = "smoke"
    only: Optional[Sequence[str]] = None
    exclude: Sequence[str] = ()
    utility: bool = True
    utility_sizes: Optional[tuple[int, int]] = None
    device: str = "cpu"
    workers: int = 1
    scheduler: Optional[str] = None
    threads: Optional[int] = None
    verbose: bool = True
    command: Optional[str] = None
    retries: int = 2

    def public(self) -> dict:
        """The settings as recorded in ``sweep.json`` (what must match to resume)."""
        return {"seeds": list(self.seeds), "datasets": list(self.datasets),
                "data_dir": str(self.data_dir) if self.data_dir else None, "cloud": self.cloud,
                "cloud_options": {k: list(v) if isinstance(v, tuple) else v
                                  for k, v in sorted((self.cloud_options or {}).items())},
                "cloud_resize": self.cloud_resize,
                "budget": self.budget, "only": list(self.only) if self.only else None,
                "exclude": list(self.exclude), "utility": self.utility,
                **({"utility_sizes": list(self.utility_sizes)} if self.utility_sizes else {})}


@dataclass(frozen=True)
class AuditCell:
    """One audit of a sweep: a kernel under one seed on one dataset."""

    kernel: Kernel
    seed: int
    dataset: str
    several_datasets: bool = False

    @property
    def folder(self) -> str:
        data = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(str(self.dataset)).name or str(self.dataset)).strip("-.")
        return f"{self.kernel.name}--seed-{self.seed}" + (f"--{data or 'data'}" if self.several_datasets else "")


def audit_cells(kernels: Sequence[Kernel], cfg: SweepConfig) -> list[AuditCell]:
    """Every audit of the sweep, kernel-major."""
    many = len(cfg.datasets) > 1
    return [AuditCell(k, int(s), d, many) for k in kernels for d in cfg.datasets for s in cfg.seeds]


def kernel_file(out: Path, kernel: Kernel) -> Path:
    """Where the sweep records ``kernel``'s spec."""
    return out / "kernels" / f"{kernel.name}.json"


def audit_config(cell: AuditCell, cfg: SweepConfig, out: Path, *, threads: Optional[int] = 1) -> AuditConfig:
    """The :class:`AuditConfig` of one audit of the sweep (as ``owsd audit`` would build it)."""
    return AuditConfig(out=out / "audits" / cell.folder, dataset=cell.dataset, data_dir=cfg.data_dir,
                       cloud=cfg.cloud, cloud_options=cfg.cloud_options, cloud_resize=cfg.cloud_resize,
                       budget=cfg.budget, seed=cell.seed, only=cfg.only, exclude=cfg.exclude,
                       utility=cfg.utility, utility_sizes=cfg.utility_sizes, device=cfg.device, verbose=False,
                       threads=threads, html=True,
                       command=audit_command(cell, cfg, out))


def audit_command(cell: AuditCell, cfg: SweepConfig, out: Path) -> str:
    """The ``owsd audit`` command that resumes (or redoes) this audit on its own."""
    parts = ["owsd", "audit", "--spec", str(kernel_file(out, cell.kernel)), "--seed", str(cell.seed),
             "--attack-seed", str(cell.seed), "--dataset", cell.dataset, "--cloud", cfg.cloud or "none",
             "--budget", cfg.budget, "--out", str(out / "audits" / cell.folder)]
    parts += cloud_flags(cfg.cloud_options or {}, cfg.cloud_resize)
    if cfg.utility_sizes:
        parts += ["--utility-sizes", ",".join(map(str, cfg.utility_sizes))]
    if cfg.data_dir:
        parts += ["--data-dir", str(cfg.data_dir)]
    if cfg.only:
        parts += ["--only", ",".join(cfg.only)]
    if cfg.exclude:
        parts += ["--exclude", ",".join(cfg.exclude)]
    if not cfg.utility:
        parts.append("--no-utility")
    return shlex.join(parts)


@dataclass(frozen=True)
class Task:
    """One unit of work: a job of an audit (``job`` None: its utility measurement). Plain data only."""

    audit: str
    kind: str  # "job" or "utility"
    spec: dict = field(hash=False, compare=False)
    seed: int = 0
    config: dict = field(default_factory=dict, hash=False, compare=False)
    job: Optional[dict] = field(default=None, hash=False, compare=False)
    plan: tuple = field(default=(), hash=False, compare=False)
    sizes: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        """A unique, readable name (also the Dask key of the task)."""
        return f"{self.audit}/{self.job['id'] if self.job else 'utility'}"


def make_task(cell: AuditCell, acfg: AuditConfig, *, job: Optional[Job], plan: Sequence[Job],
              sizes: dict) -> Task:
    """The task of ``job`` (or of the utility measurement) of one prepared audit."""
    conf = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(acfg).items()
            if k not in ("command",)}
    conf["only"] = list(acfg.only) if acfg.only else None
    conf["exclude"] = list(acfg.exclude)
    return Task(audit=cell.folder, kind="job" if job else "utility", spec=cell.kernel.spec, seed=cell.seed,
                config=conf, job=dataclasses.asdict(job) if job else None,
                plan=tuple(dataclasses.asdict(j) for j in plan), sizes=dict(sizes))
