"""What a Dask worker does with a sweep task: rebuild the victim from seeds and paths, run one job.

A task (:class:`analysis.sweep.plan.Task`) carries the kernel's public spec, the seed and the
audit's settings; the worker derives the key from the seed, builds the victim of the audit
(the same one ``owsd audit`` builds: every job of the audit's plan sizes it) and runs the job
with the audit's own :func:`analysis.audit.runner.run_job`, which writes the job's folder
atomically and its ``done`` marker last.  A job already done (a task re-run after its
worker was lost after writing it) is read back, not run again.  The last victims built are
kept in the worker process, so the other jobs of the same audit reuse them.  A victim that
cannot be built (a spec the dataset cannot feed: a PCA embedding larger than the images) makes
each job of the audit an ``error`` with the reason, as a crashing attack is, not a lost task.

Before each job the global random generators are seeded from (seed, job id), so a job's
result does not depend on which worker ran it nor on what that worker ran before.

Example:
    >>> job_seed(0, "key-known-plaintext") == job_seed(0, "key-known-plaintext") != job_seed(1, "key-known-plaintext")
    True
"""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from analysis.audit import AuditConfig, AuditTarget, rundir, runner
from analysis.audit.plan import Job
from analysis.audit.runner import job_seed
from analysis.sweep.plan import Task
from owsd.spec import ScramblerSpec
from owsd.threads import limit

log = logging.getLogger(__name__)

#: victims (and clouds) kept per worker process: one audit's jobs usually land together
CACHE_SIZE = 2
_VICTIMS: "OrderedDict[tuple, Any]" = OrderedDict()
_CLOUDS: dict[tuple, Any] = {}


def _seed_globals(seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def _config(task: Task) -> AuditConfig:
    c = dict(task.config)
    c["only"] = tuple(c["only"]) if c.get("only") else None
    c["exclude"] = tuple(c.get("exclude") or ())
    return AuditConfig(**c)


def _target(task: Task) -> AuditTarget:
    return AuditTarget.from_spec(ScramblerSpec.from_dict(task.spec), seed=task.seed)


def _cloud(cfg: AuditConfig, image_shape: Optional[tuple[int, ...]] = None):
    """The worker's cloud for ``cfg``, fitted to the kernel's image shape as ``owsd audit`` fits it."""
    k = (cfg.cloud, repr(sorted((cfg.cloud_options or {}).items())), cfg.cloud_resize, cfg.threads, image_shape)
    if k not in _CLOUDS:
        _CLOUDS[k] = runner.make_audit_cloud(cfg, image_shape=image_shape)
    return _CLOUDS[k]


def _shape(target: AuditTarget) -> Optional[tuple[int, ...]]:
    return tuple(target.spec.output_shape()) if target.spec is not None else None


def _victim(task: Task, target: AuditTarget, cfg: AuditConfig):
    k = (target.fingerprint, str(cfg.dataset), str(cfg.data_dir), getattr(cfg, "image_size", None), str(cfg.cloud),
         cfg.budget, cfg.seed, cfg.device, tuple(sorted(task.sizes.items())))
    if k in _VICTIMS:
        _VICTIMS.move_to_end(k)
        return _VICTIMS[k]
    plan = [Job(**j) for j in task.plan]
    v = runner.build_victim(target, cfg, task.sizes, plan, cloud=_cloud(cfg, _shape(target)))
    _VICTIMS[k] = v
    while len(_VICTIMS) > CACHE_SIZE:
        _VICTIMS.popitem(last=False)
    return v


def _threads(task: Task) -> Optional[int]:
    return task.config.get("threads")


def run_task(task: Task) -> dict:
    """Run one sweep task on this worker; return a small summary (status, seconds, where)."""
    cfg = _config(task)
    out = Path(cfg.out)
    t0 = time.perf_counter()
    info = {"task": task.key, "audit": task.audit, "kind": task.kind, "worker_pid": _pid()}
    with limit(_threads(task)):
        target = _target(task)
        if task.kind == "utility":
            notes: list[str] = []
            _seed_globals(job_seed(cfg.seed, "utility"))
            u = runner.run_utility(target, cfg, out, notes, cloud=_cloud(cfg, _shape(target)))
            return {**info, "status": "error" if (u or {}).get("error") else "ok", "notes": notes,
                    "seconds": time.perf_counter() - t0}
        job = Job(**task.job)
        d = rundir.job_dir(out, job.id)
        done = rundir.load_job(d)
        if done is not None:
            return {**info, "status": done["status"], "seconds": 0.0, "reused": True}
        try:
            victim = _victim(task, target, cfg)
        except (ValueError, TypeError, RuntimeError) as exc:  # e.g. a spec the dataset cannot feed
            attack = job.make(cfg.budget, cfg.seed, cfg.device, False)  # its family: the frontier lists the error
            st = {"job": job.id, "attack": job.attack, "params_override": job.params, "role": job.role,
                  "family": attack.family, "finding": attack.finding,
                  "seed": cfg.seed, "status": "error", "reason": f"victim: {type(exc).__name__}: {exc}"}
            log.error("%s: %s", task.key, st["reason"])
            rundir.write_status(d, st)  # no done marker: rerun next time, reported as an error meanwhile
            return {**info, "status": "error", "reason": st["reason"], "seconds": time.perf_counter() - t0}
        _seed_globals(job_seed(cfg.seed, job.id))
        st = runner.run_job(job, victim, cfg, d)
    return {**info, "status": st["status"], "reason": st.get("reason"), "seconds": time.perf_counter() - t0}


def _pid() -> int:
    import os

    return os.getpid()
