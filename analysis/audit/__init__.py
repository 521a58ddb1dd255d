"""The audit: score one scrambling kernel against every registered adversary.

:func:`run_audit` takes an :class:`AuditTarget` (an OWSD key, a spec or preset with a fresh
key, or *any* callable scrambler: images in, scrambled images out) and runs every attack of
:func:`attacks.registry.available_attacks` under each configuration it supports at the
budget (:func:`plan_jobs`), on one victim deployment, then measures the scheme's utility
and writes a run directory::

    OUT/audit.json                 what is audited (spec, fingerprint; never the secret)
    OUT/utility/utility.json       the scheme's utility numbers (+ done marker)
    OUT/attacks/<job>/result.json  per attack: metrics, chance, CI, p, cost, seed, threat model
    OUT/attacks/<job>/per_sample.csv, raw.npz, grid.png, roc.png, status.json, done
    OUT/figures/*.png              key-recovery curves, attacker advantage, privacy-utility
    OUT/report.json, report.html   the report (source of truth) and its one-page view

Each attack's folder is written atomically and marked ``done`` last; an interrupted audit
rerun with the same ``--out`` skips what is done.  Attacks whose requirements the target
does not meet are recorded as ``n/a`` with the reason.

One module a job: :mod:`~analysis.audit.target` (what is audited),
:mod:`~analysis.audit.config` (the settings), :mod:`~analysis.audit.plan` (jobs, variants,
sweeps, victim sizes), :mod:`~analysis.audit.rundir` (run directory, manifest, resume
markers), :mod:`~analysis.audit.utility` (the scheme's utility, measured by
:func:`owsd.pipeline.measure_utility`), :mod:`~analysis.audit.runner` (the victim, each job,
applicability, threads), :mod:`~analysis.audit.assembly` (the report) and
:mod:`~analysis.audit.run` (the entry points).

Example:
    >>> import tempfile, warnings
    >>> target = AuditTarget.from_preset("linear", seed=0)
    >>> with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     rep = run_audit(target, AuditConfig(out=d, only=("key-known-plaintext",), utility=False,
    ...                                         verbose=False))
    >>> rep["attacks"][0]["verdict"]
    'fail'
"""

from analysis.audit.assembly import assemble
from analysis.audit.config import BUDGETS, AuditConfig
from analysis.audit.errors import AuditError
from analysis.audit.plan import SWEEPS, Job, job_id, plan_jobs
from analysis.audit.run import Prepared, audit, finish, prepare, run_audit
from analysis.audit.rundir import RUN_FORMAT
from analysis.audit.target import AuditTarget
from analysis.audit.utility import UTILITY_BUDGETS, measure_utility

__all__ = ["BUDGETS", "RUN_FORMAT", "SWEEPS", "UTILITY_BUDGETS", "AuditConfig", "AuditError", "AuditTarget", "Job",
           "Prepared", "assemble", "audit", "finish", "job_id", "measure_utility", "plan_jobs", "prepare", "run_audit"]
