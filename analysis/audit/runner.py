"""Running an audit's work: the utility measurement, the shared victim, each job and its applicability.

One victim deployment serves every job, cut down to each attack's declared sizes
(:meth:`attacks.victim.Victim.restrict`); the cloud's outputs are paid once, for as many
private images as the largest cloud-using job looks at
(:meth:`~attacks.victim.Victim.precompute_outputs`).  A job whose requirements or threat
model the target cannot meet is ``n/a`` with the reason; a crash is ``error`` (rerun next
time); every other job writes its result, figures and done marker.

Example:
    >>> make_audit_cloud(AuditConfig(out="unused", cloud=None)) is None
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import warnings
from pathlib import Path
from typing import Any, ContextManager, Optional, Sequence


from analysis.audit import rundir
from analysis.audit.config import AuditConfig
from analysis.audit.plan import Job
from analysis.audit.target import AuditTarget
from analysis.audit.utility import UTILITY_BUDGETS, measure_utility
from analysis.figures import attack_figures
from attacks.base import Attack, AttackResult, RequirementError
from attacks.scoring import ScoringConfig
from attacks.victim import Victim
from owsd.cloud import Cloud, fit_cloud
from owsd.cloud_sources import open_cloud
from owsd.io import atomic_write_json
from owsd.query_noise import seeded_query_noise
from owsd.spec import ScramblerSpec
from owsd.utility_plot import plot_utility

log = logging.getLogger(__name__)


def make_audit_cloud(cfg: AuditConfig, *, image_shape: Optional[tuple[int, ...]] = None) -> Optional[Cloud]:
    """The one cloud the audit's utility measurement and victim share (``None`` without a cloud).

    ``cfg.cloud`` is a built-in name, a source (``PATH.onnx``, ``MODULE:CALLABLE``, a KServe V2
    URL: :func:`owsd.cloud_sources.open_cloud` with ``cfg.cloud_options``) or a built cloud;
    with ``image_shape`` (the target's scrambled images), a cloud of another input size is
    resized or refused (``cfg.cloud_resize``: :func:`owsd.cloud.fit_cloud`).
    """
    if not cfg.cloud:
        return None
    if isinstance(cfg.cloud, Cloud):
        cloud = cfg.cloud
    else:
        opts = dict(cfg.cloud_options or {})
        if cfg.threads and "threads" not in opts:
            opts["threads"] = cfg.threads
        cloud = open_cloud(cfg.cloud, **opts)
    return fit_cloud(cloud, image_shape, resize=cfg.cloud_resize) if image_shape else cloud


def job_seed(seed: int, job_id: str) -> int:
    """A 63-bit seed for the randomness of job ``job_id`` of an audit with ``seed``.

    Example:
        >>> job_seed(0, "utility") == job_seed(0, "utility") != job_seed(1, "utility")
        True
    """
    return int.from_bytes(hashlib.sha256(f"{seed}|{job_id}".encode()).digest()[:8], "big") >> 1


def noise_stream(spec: Optional[ScramblerSpec], seed: int, piece: str) -> ContextManager:
    """The seeded query-noise stream of one piece of an audit (utility, victim, a job) for a kernel
    with ``query_noise`` (else nothing): the audit is a simulation, and a stream per piece makes a
    kernel's figures independent of what the process ran before (:mod:`owsd.query_noise`)."""
    if spec is None or not spec.query_noise:
        return contextlib.nullcontext()
    return seeded_query_noise(job_seed(seed, f"query-noise|{piece}"))


def run_utility(target: AuditTarget, cfg: AuditConfig, out: Path, notes: list[str], *,
                cloud: Optional[Cloud] = None) -> Optional[dict]:
    """The scheme's utility, measured once per run directory (``utility/``, done marker last)."""
    done = rundir.load_utility(out)
    if done is not None:
        return done
    log.info("measuring the scheme's utility (%s budget)", cfg.budget)
    settings = dict(UTILITY_BUDGETS[cfg.budget])
    if cfg.utility_sizes is not None:
        settings["n_train"], settings["n_test"] = (int(n) for n in cfg.utility_sizes)
    try:
        with noise_stream(target.spec, cfg.seed, "utility"):
            u = measure_utility(target, dataset=cfg.dataset, data_dir=cfg.data_dir, image_size=cfg.image_size,
                                cloud=cloud or cfg.cloud, device=cfg.device, verbose=False, **settings)
    except (ValueError, TypeError, RuntimeError) as exc:
        log.warning("utility measurement failed: %s", exc)
        notes.append(f"utility measurement failed: {exc}")
        return {"error": str(exc)}
    d = rundir.utility_dir(out)
    atomic_write_json(d / "utility.json", u)
    if "embedding_only" in u["accuracy"]:
        try:
            plot_utility(u, d / "utility.png")
        except Exception as exc:  # a figure must never sink an audit
            log.info("utility figure skipped: %s", exc)
    rundir.mark_done(d)
    return u


def build_victim(target: AuditTarget, cfg: AuditConfig, sizes: dict, pending: Sequence[Job], *,
                 cloud: Optional[Cloud] = None) -> Victim:
    """The victim every pending job is cut from, its scrambled images and needed cloud outputs computed."""
    with noise_stream(target.spec, cfg.seed, "victim"):
        return _build_victim(target, cfg, sizes, pending, cloud=cloud)


def _build_victim(target: AuditTarget, cfg: AuditConfig, sizes: dict, pending: Sequence[Job], *,
                  cloud: Optional[Cloud]) -> Victim:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        victim = target.build_victim(dataset=cfg.dataset, data_dir=cfg.data_dir, image_size=cfg.image_size,
                                     cloud=cloud or cfg.cloud,
                                     device=cfg.device, split_seed=cfg.seed, **sizes)
    victim.private_scrambled()
    n_cloud = 0  # cloud outputs are paid only for the private images that cloud attacks look at
    for j in pending:
        a = j.make(cfg.budget, cfg.seed, cfg.device, False)
        if a.requirements.cloud or a.threat_model().cloud_outputs:
            n_cloud = max(n_cloud, int(a.victim_sizes().get("n_private", len(victim.private))))
    if n_cloud and victim.cloud is not None:
        try:
            victim.precompute_outputs(n_cloud, verbose=cfg.verbose)
        except (ValueError, TypeError) as exc:  # the attacks that need it will report it
            log.warning("cloud outputs of the victim's images failed: %s", exc)
    log.info("victim %s built in %.1f s (%s)", victim.channel.name, time.perf_counter() - t0, sizes)
    return victim


def _execute(attack: Attack, victim: Victim) -> AttackResult:
    """Run one attack, scored with the audit budget's settings (a seam for tests that simulate interruptions)."""
    return attack(victim, scoring=ScoringConfig.for_budget(attack.budget))


def run_job(job: Job, victim: Victim, cfg: AuditConfig, d: Path) -> dict:
    """Run one job into its folder; return its status (``done`` marker written unless it errors)."""
    with noise_stream(victim.spec, cfg.seed, job.id):
        return _run_job(job, victim, cfg, d)


def _run_job(job: Job, victim: Victim, cfg: AuditConfig, d: Path) -> dict:
    attack = job.make(cfg.budget, cfg.seed, cfg.device, cfg.verbose)
    sub = victim.restrict(**attack.victim_sizes())
    _, reason = attack.applicable(sub)
    base: dict[str, Any] = {
        "job": job.id, "attack": job.attack, "params_override": job.params, "role": job.role,
        "family": attack.family, "finding": attack.finding, "declared_sizes": attack.victim_sizes(),
        "threat_model": attack.threat_model().to_dict(), "threat_model_text": attack.threat_model().describe(),
        "requirements": attack.requirements.to_dict(), "seed": cfg.seed}
    if reason is None:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = _execute(attack, sub)
        except RequirementError as exc:
            reason = str(exc)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one attack's crash must not sink the audit; it is rerun next time
            log.error("%s failed: %s: %s", job.id, type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            st = {**base, "status": "error", "reason": f"{type(exc).__name__}: {exc}",
                  "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
            rundir.write_status(d, st)
            return st
        else:
            d.mkdir(parents=True, exist_ok=True)
            result.save(d)
            figs = attack_figures(result, d)
            st = {**base, "status": "ok", "figures": figs, "seconds": time.perf_counter() - t0,
                  "cpu_seconds": time.process_time() - c0,
                  "victim_sizes": {"n_private": len(sub.private), "n_public": len(sub.public),
                                   "n_heldout": len(sub.heldout)}}
            rundir.finish_job(d, st)
            st["result"] = result.to_dict()
            return st
    st = {**base, "status": "n/a", "reason": reason, "reduced": attack.too_small(sub) is not None}
    log.info("%s: not applicable: %s", job.id, reason)
    rundir.finish_job(d, st)
    return st
