"""Running a sweep: prepare every audit, run the missing tasks on Dask, assemble reports and the frontier.

1. Each audit (kernel x seed x dataset) is prepared on the client by the audit's own
   :func:`analysis.audit.prepare` (plan, victim sizes, manifest, run directory opened or resumed).
2. Every job without its ``done`` marker, and every utility measurement not yet done, is
   one Dask task (:func:`analysis.sweep.worker.run_task`), submitted with retries; Dask
   re-runs the tasks of a worker that is lost.  Progress is a tqdm bar over tasks.
3. Each audit's report is assembled by :func:`analysis.audit.finish`, then the frontier
   (:mod:`analysis.sweep.frontier`) is written over all of them.

An interrupted sweep rerun with the same ``--out`` and settings re-runs only what is missing.

Example:
    >>> LocalClient().submit(sum, [1, 2]).result()  # the in-process stand-in for a Dask client
    3
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from tqdm.auto import tqdm

from analysis.audit import AuditTarget, finish, prepare, rundir
from analysis.audit.config import AuditConfig
from analysis.audit.errors import AuditError
from analysis.audit.runner import make_audit_cloud
from analysis.sweep import frontier as _frontier
from analysis.sweep.cluster import dashboard_link, has_dashboard_pages, open_client, task_threads
from analysis.sweep.kernels import Kernel
from analysis.sweep.plan import SWEEP_FORMAT, SweepConfig, Task, audit_cells, audit_config, kernel_file, make_task
from analysis.sweep.worker import run_task
from owsd import provenance
from owsd.io import atomic_write_json
from owsd.spec import ScramblerSpec

log = logging.getLogger(__name__)


class LocalClient:
    """A stand-in for a Dask client that runs tasks in this process, one after another (doctests, debugging)."""

    def submit(self, fn, *args, key: Optional[str] = None, **kwargs) -> concurrent.futures.Future:
        f: concurrent.futures.Future = concurrent.futures.Future()
        try:
            f.set_result(fn(*args))
        except Exception as exc:
            f.set_exception(exc)
        return f

    @staticmethod
    def as_completed(futures):
        return iter(list(futures))


def _check_sweep_dir(out: Path, doc: dict) -> None:
    path = out / "sweep.json"
    if not path.exists():
        if out.exists() and any(p.name not in ("audits", "kernels") for p in out.iterdir()):
            raise AuditError(f"{out} exists and is not a sweep folder; choose another --out")
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AuditError(f"{path} is corrupt ({exc}); remove the folder or choose another --out") from None
    if old.get("settings") != doc["settings"]:
        diff = sorted(k for k in doc["settings"] if (old.get("settings") or {}).get(k) != doc["settings"][k])
        raise AuditError(f"{out} holds a sweep with other settings ({', '.join(diff)}); use another --out")


def _client_cloud(clouds: dict, cfg: AuditConfig, target: AuditTarget) -> Any:
    """The cloud of ``cfg`` fitted to ``target``'s images, opened once per distinct (cloud, settings, shape)."""
    shape = tuple(target.spec.output_shape()) if target.spec is not None else None
    k = (str(cfg.cloud), repr(sorted((cfg.cloud_options or {}).items())), cfg.cloud_resize, cfg.threads, shape)
    if k not in clouds:
        clouds[k] = make_audit_cloud(cfg, image_shape=shape)
    return clouds[k]


def _write_kernels(out: Path, kernels: Sequence[Kernel]) -> None:
    for k in kernels:
        ScramblerSpec.from_dict(k.spec).save(kernel_file(out, k))


def run_sweep(kernels: Sequence[Kernel], cfg: SweepConfig, *, client: Any = None) -> dict:
    """Run (or resume) the sweep of ``kernels`` under ``cfg``; write every audit and the frontier.

    ``client``: a Dask client (or :class:`LocalClient`); ``None`` opens one as ``cfg`` says
    (:func:`analysis.sweep.cluster.open_client`).
    """
    if client is None:
        with open_client(workers=cfg.workers, scheduler=cfg.scheduler) as c:
            link = dashboard_link(c)
            if link:
                log.warning("Dask dashboard: %s%s", link, "" if has_dashboard_pages() else
                            " (its pages need `pip install bokeh` on the scheduler's machine)")
            return run_sweep(kernels, cfg, client=c)
    t_start = time.perf_counter()
    out = Path(cfg.out).resolve()  # workers may start elsewhere: tasks carry absolute paths
    if cfg.data_dir is not None:
        cfg = dataclasses.replace(cfg, data_dir=Path(cfg.data_dir).resolve())
    cells = audit_cells(kernels, cfg)
    doc = {"format": SWEEP_FORMAT, "version": 1, "settings": cfg.public(),
           "kernels": [{"name": k.name, "source": k.source, "reason": k.reason, "spec_file": str(kernel_file(out, k))}
                       for k in kernels],
           "audits": [{"folder": c.folder, "kernel": c.kernel.name, "seed": c.seed, "dataset": c.dataset}
                      for c in cells]}
    _check_sweep_dir(out, {**doc, "settings": cfg.public()})
    out.mkdir(parents=True, exist_ok=True)
    _write_kernels(out, kernels)
    threads = task_threads(workers=cfg.workers, scheduler=cfg.scheduler, threads=cfg.threads)
    preps, tasks = [], []
    clouds: dict[tuple, Any] = {}  # opened to record each audit's cloud digest; the workers open their own
    try:
        for cell in cells:
            acfg = audit_config(cell, cfg, out, threads=threads)
            target = AuditTarget.from_spec(kernel_file(out, cell.kernel), seed=cell.seed)
            preps.append(prepare(target, acfg, cloud=_client_cloud(clouds, acfg, target)))
    finally:
        for c in clouds.values():
            if c is not None:
                c.close()
    for cell, prep in zip(cells, preps):
        acfg = prep.cfg
        if acfg.utility and acfg.cloud and rundir.load_utility(prep.out) is None:
            tasks.append(make_task(cell, acfg, job=None, plan=prep.jobs, sizes=prep.sizes))
        for j in prep.jobs:
            if rundir.load_job(rundir.job_dir(prep.out, j.id)) is None:
                tasks.append(make_task(cell, acfg, job=j, plan=prep.jobs, sizes=prep.sizes))
    # once every cell's run directory is known to be this sweep's (prepare refuses another audit's):
    # a rerun is checked against it
    atomic_write_json(out / "sweep.json", {**doc, "command": cfg.command})
    n_jobs = sum(len(p.jobs) for p in preps)
    log.info("sweep: %d kernels x %d seeds x %d datasets = %d audits, %d tasks to run (%d jobs in all), "
             "%d threads a task", len(kernels), len(cfg.seeds), len(cfg.datasets), len(cells), len(tasks), n_jobs,
             threads)
    results = _run_tasks(client, tasks, verbose=cfg.verbose, retries=cfg.retries)
    reports = []
    for prep in preps:
        done = {j.id: rundir.load_job(rundir.job_dir(prep.out, j.id)) for j in prep.jobs}
        done = {k: v for k, v in done.items() if v is not None}
        errors = {j.id: e for j in prep.jobs if j.id not in done
                  for e in [rundir.load_error(rundir.job_dir(prep.out, j.id))] if e is not None}
        utility = rundir.load_utility(prep.out) if prep.cfg.utility and prep.cfg.cloud else None
        reports.append(finish(prep, done, errors, utility))
    front = _frontier.write_frontier(out, doc, [(c, p.out) for c, p in zip(cells, preps)], reports)
    failed = [r for r in results if r.get("status") == "lost"]
    timing = {"seconds": time.perf_counter() - t_start, "tasks_run": len(tasks), "threads_per_task": threads,
              "workers": cfg.workers if cfg.scheduler is None else None, "scheduler": cfg.scheduler,
              "load_average": provenance.load_average(), "cores_usable": provenance.cores_usable(),
              "task_seconds": {r["task"]: r.get("seconds") for r in results if "task" in r}}
    atomic_write_json(out / "sweep.json", {**doc, "command": cfg.command, "machine": provenance.machine(),
                                           "versions": provenance.versions(extra=("dask", "distributed"))})
    atomic_write_json(out / "timing.json", timing)
    return {"out": str(out), "audits": len(cells), "tasks_run": len(tasks), "lost": [r["task"] for r in failed],
            "frontier": front, "seconds": timing["seconds"]}


@contextlib.contextmanager
def _cancel_on_interrupt(client: Any, futures: dict) -> Iterator[None]:
    """On Ctrl-C, cancel the tasks not yet done (what is done stays: the next run resumes from it)."""
    try:
        yield
    except KeyboardInterrupt:
        if hasattr(client, "cancel"):
            log.warning("interrupted: cancelling %d tasks; run the same command to resume", len(futures))
            try:
                client.cancel(list(futures), force=True)
            except Exception as exc:  # the cluster may be gone already
                log.info("cancel failed: %s", exc)
        raise


def _run_tasks(client: Any, tasks: Sequence[Task], *, verbose: bool, retries: int) -> list[dict]:
    """Submit every task, wait for all of them (tqdm over tasks); a task that keeps failing is reported, not raised."""
    if not tasks:
        return []
    futures = {}
    for t in tasks:
        kw = {"key": f"owsd-{t.key}-{time.time_ns()}", "pure": False, "retries": retries} \
            if not isinstance(client, LocalClient) else {}
        futures[client.submit(run_task, t, **kw)] = t
    if isinstance(client, LocalClient):
        completed = client.as_completed(futures)
    else:
        from distributed import as_completed

        completed = as_completed(list(futures))
    results = []
    with tqdm(total=len(tasks), desc="sweep", unit="task", disable=not verbose) as bar, _cancel_on_interrupt(
            client, futures):
        for f in completed:
            t = futures[f]
            try:
                r = f.result()
            except Exception as exc:  # a task that crashed its worker too often: missing, rerun next time
                log.error("%s: %s: %s (left for the next run)", t.key, type(exc).__name__, exc)
                r = {"task": t.key, "status": "lost", "reason": f"{type(exc).__name__}: {exc}"}
            results.append(r)
            bar.update(1)
            bar.set_postfix_str(t.key[-40:])
    return results
