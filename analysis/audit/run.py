"""The audit's entry points: :func:`run_audit` (a target and a config) and :func:`audit` (Python).

:func:`prepare` and :func:`finish` are its two halves, reused by ``owsd sweep``.

Plan the jobs (:mod:`~analysis.audit.plan`), open or resume the run directory
(:mod:`~analysis.audit.rundir`), measure the utility and run every job not yet done
(:mod:`~analysis.audit.runner`), then assemble the report (:mod:`~analysis.audit.assembly`)
and write ``timing.json`` (wall and CPU seconds of this invocation).

Example:
    >>> import tempfile, torch.nn.functional as F
    >>> def blur(x):  # another "instance encoding" to audit
    ...     x = F.interpolate(x.expand(-1, 3, -1, -1), size=(224, 224), mode="bilinear")
    ...     return F.avg_pool2d(x, 9, stride=1, padding=4)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     rep = audit(blur, name="blur", out=d, only=("key-known-plaintext",), utility=False, verbose=False)
    >>> rep["attacks"][0]["verdict"]
    'n/a'
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Optional

import torch
from tqdm.auto import tqdm

from analysis.audit import rundir, runner
from analysis.audit.assembly import assemble
from analysis.audit.config import AuditConfig
from analysis.audit.plan import plan_jobs, victim_sizes
from analysis.audit.target import AuditTarget
from owsd.cloud import Cloud
from owsd.io import atomic_write_json
from owsd.threads import limit

log = logging.getLogger(__name__)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> dict[str, float]:
    return {"seconds": time.perf_counter() - start[0], "cpu_seconds": time.process_time() - start[1]}


@dataclasses.dataclass
class Prepared:
    """An audit ready to run: its config, run directory, jobs, victim sizes, manifest and notes."""

    target: AuditTarget
    cfg: AuditConfig
    out: Path
    jobs: list
    sizes: dict
    manifest: dict
    notes: list
    cloud: Optional[Any] = None


def prepare(target: Any, cfg: AuditConfig, *, restart: bool = False, cloud: Optional[Any] = None) -> Prepared:
    """Plan the jobs of ``target`` under ``cfg``, open its cloud, and open (or resume) its run directory.

    The first half of :func:`run_audit`, shared with ``owsd sweep`` (which runs the jobs elsewhere).
    The manifest records the cloud model's digest: a resume against another model (or other
    ``--cloud-*`` settings) is refused instead of mixing its results with the old model's.
    ``cloud``: the cloud :func:`~analysis.audit.runner.make_audit_cloud` gives for ``cfg`` and the
    target's image shape, already open (the sweep opens one per distinct cloud, not per audit).
    """
    cfg.validate()
    target = AuditTarget.coerce(target)
    out = Path(cfg.out)
    notes: list[str] = []
    jobs = plan_jobs(cfg.budget, only=cfg.only, exclude=cfg.exclude)
    sizes = victim_sizes(jobs, cfg.budget, cfg.seed, cfg.dataset, cfg.data_dir, notes)
    if cloud is None:
        cloud = runner.make_audit_cloud(cfg, image_shape=target.spec.output_shape() if target.spec else None)
    manifest = rundir.manifest(target, cfg, jobs, sizes, cloud=cloud)
    rundir.open_run_dir(out, manifest, restart=restart)
    if target.key is not None and target.key.seeded:
        notes.append("the key was derived from a seed: reproducible, hence not secret (experiments only)")
    return Prepared(target, cfg, out, jobs, sizes, manifest, notes, cloud)


def finish(prep: Prepared, done: dict, errors: dict, utility: Optional[dict]) -> dict:
    """Assemble the report of a prepared audit from its finished jobs (the second half of :func:`run_audit`)."""
    if prep.cfg.utility and not prep.cfg.cloud:
        prep.notes.append("no cloud: utility not measured")
    return assemble(prep.out, prep.jobs, done, errors, utility, prep.manifest, prep.notes, html=prep.cfg.html)


def run_audit(target: Any, config: Optional[AuditConfig] = None, *, restart: bool = False, **overrides) -> dict:
    """Audit ``target`` (see :meth:`AuditTarget.coerce`) and write the run directory; return the report.

    ``overrides`` set :class:`AuditConfig` fields.  ``restart`` deletes a previous audit in
    ``config.out`` first; otherwise finished attacks there are kept (resume).
    """
    cfg = dataclasses.replace(config or AuditConfig(), **overrides)
    cfg.validate()
    with limit(cfg.threads):
        prep = prepare(target, cfg, restart=restart)
        target, out, jobs, sizes, notes = prep.target, prep.out, prep.jobs, prep.sizes, prep.notes

        timing: dict[str, Any] = {"threads": torch.get_num_threads(), "jobs": {}}
        start = _clock()
        cloud = prep.cloud
        utility = None
        if cfg.utility and cfg.cloud:
            t = _clock()
            utility = runner.run_utility(target, cfg, out, notes, cloud=cloud)
            timing["utility"] = _since(t)
        done = {j.id: rundir.load_job(rundir.job_dir(out, j.id)) for j in jobs}
        pending = [j for j in jobs if done[j.id] is None]
        if len(pending) < len(jobs):
            log.info("resuming: %d of %d attacks already done in %s", len(jobs) - len(pending), len(jobs), out)
        errors: dict[str, dict] = {}
        if pending:
            t = _clock()
            victim = runner.build_victim(target, cfg, sizes, pending, cloud=cloud)
            timing["victim"] = _since(t)
            bar = tqdm(pending, desc="audit", unit="attack", disable=not cfg.verbose)
            for j in bar:
                bar.set_postfix_str(j.id)
                st = runner.run_job(j, victim, cfg, rundir.job_dir(out, j.id))
                timing["jobs"][j.id] = {k: st.get(k) for k in ("seconds", "cpu_seconds", "status")}
                if st["status"] == "error":
                    errors[j.id] = st
                else:
                    done[j.id] = st
            bar.close()
        t = _clock()
        rep = finish(prep, done, errors, utility)
        timing["report"] = _since(t)
        timing["total"] = _since(start)
        atomic_write_json(out / "timing.json", timing)
        if cloud is not None and not isinstance(cfg.cloud, Cloud):  # opened by prepare(): closed here
            cloud.close()
    return rep


def audit(target: Any, *, out: str | Path, **config) -> dict:
    """Python entry point: audit a Key, spec, preset name, key/spec file or any callable scrambler.

    A callable maps float images ``(N, C, H, W)`` in [0, 1] to scrambled images in [0, 1]
    (3x224x224 to be sent to the built-in clouds); name it with ``name=``.  ``key_seed``
    derives the key of a spec or preset, ``restart`` discards a previous audit in ``out``;
    the other keywords are :class:`AuditConfig` fields.
    """
    name = config.pop("name", None)
    seed = config.pop("key_seed", None)
    restart = config.pop("restart", False)
    return run_audit(AuditTarget.coerce(target, seed=seed, name=name), AuditConfig(out=out, **config),
                     restart=restart)
