"""Run every leakage test on one victim and tabulate them with false-discovery control.

:func:`run_all_leakage_tests` runs :data:`SUITE` (tests on cloud outputs are skipped when the
victim has no cloud); :func:`leakage_table` gives one row per test with its primary
statistic, chance level, interval, raw p-value and Benjamini-Hochberg adjusted p-value
(:func:`owsd.stats.fdr_adjust`, i.e. scipy's ``false_discovery_control``), and whether it
is flagged; :func:`format_table` renders the rows as Markdown.

Example:
    >>> import warnings
    >>> from attacks.controls import noise_victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = noise_victim(dataset="digits", n_private=80, n_public=8, n_heldout=40)
    >>> res = run_all_leakage_tests(v, budget="smoke", seed=0, only=("leak-label-probe", "leak-equality"))
    >>> [row["flagged"] for row in leakage_table(res)]
    [False, False]
"""

from __future__ import annotations

import logging
import math
from typing import Iterable, Optional, Sequence

import numpy as np

from owsd.stats import fdr_adjust
from owsd.threads import limit
from attacks.base import AttackResult
from attacks.budgets import LEAKAGE_VICTIM_SIZES, configurations
from attacks.registry import get_attack
from attacks.scoring import ScoringConfig
from attacks.victim import Victim

log = logging.getLogger(__name__)

#: the leakage tests in table order; each runs its main configuration, then its variants
#: from the budgets table (:func:`attacks.budgets.configurations`)
SUITE_ORDER: tuple[str, ...] = (
    "leak-label-probe", "leak-label-mlp", "leak-clustering", "leak-distance-mantel", "leak-near-duplicate",
    "leak-equality", "leak-key-distinguish", "leak-noise-distinguish", "leak-membership-loss",
    "leak-membership-shadow", "leak-mutual-info")


def suite(budget: str) -> tuple[tuple[str, dict], ...]:
    """(attack name, parameter overrides) of the full suite at ``budget``, in table order."""
    return tuple((n, p) for n in SUITE_ORDER for p in configurations(n, budget))


#: the suite at the smoke budget (the same configurations at every budget)
SUITE: tuple[tuple[str, dict], ...] = suite("smoke")


def leakage_victim_sizes(budget: str) -> dict:
    """Victim sizes (``n_private``, ``n_public``, ``n_heldout``) for the suite at ``budget``."""
    return dict(LEAKAGE_VICTIM_SIZES[budget])


def run_all_leakage_tests(victim: Victim, *, budget: str = "smoke", seed: int = 0,
                          only: Optional[Iterable[str]] = None, verbose: bool = False,
                          threads: Optional[int] = None,
                          scoring: Optional[ScoringConfig] = None) -> list[AttackResult]:
    """Run the leakage suite against ``victim``; skip output-based tests without a cloud.

    ``only`` restricts to the named attacks.  Every attack gets ``seed``; every score the
    ``scoring`` settings (default: the budget's, :meth:`ScoringConfig.for_budget`).  ``threads`` caps
    the BLAS/OpenMP and torch threads for the run (restored after): on a loaded machine one
    thread is many times faster for these small problems.
    """
    with limit(threads):
        return _run_all(victim, budget=budget, seed=seed, only=only, verbose=verbose,
                        scoring=scoring if scoring is not None else ScoringConfig.for_budget(budget))


def _run_all(victim: Victim, *, budget: str, seed: int, only, verbose: bool,
             scoring: ScoringConfig) -> list[AttackResult]:
    only = set(only) if only is not None else None
    results = []
    for name, params in suite(budget):
        if only is not None and name not in only:
            continue
        cls = get_attack(name)
        attack = cls(budget=budget, seed=seed, verbose=verbose, **params)
        if attack.requirements.cloud and victim.cloud is None:
            log.info("skipping %s %s: the victim has no cloud", name, params)
            continue
        log.info("running %s %s", name, params)
        results.append(attack(victim, scoring=scoring))
    return results


def _primary_p(r: AttackResult) -> float:
    p = r.p_values.get(r.primary) if r.primary else None
    return float(p) if p is not None else float("nan")


def ci_excludes_chance(r: AttackResult, metric: Optional[str] = None) -> bool:
    """Whether the CI of ``metric`` (primary by default) lies entirely above its chance level."""
    m = metric or r.primary
    if m not in r.ci or m not in r.chance:
        return False
    return r.ci[m][0] > r.chance[m]


def leakage_table(results: Sequence[AttackResult], *, alpha: float = 0.05) -> list[dict]:
    """One row per result; ``p_bh`` is the BH-adjusted p-value across all rows with a p-value.

    ``flagged``: ``p_bh < alpha``, or (no p-value) the CI excludes the chance level.
    """
    p = np.array([_primary_p(r) for r in results])
    ok = ~np.isnan(p)
    adj = np.full(len(p), np.nan)
    if ok.any():
        adj[ok] = fdr_adjust(p[ok])
    rows = []
    for r, praw, pbh in zip(results, p, adj):
        m = r.primary
        src = r.params.get("source")
        test = r.attack + (f" ({src})" if src else "")
        ci = r.ci.get(m)
        flagged = bool(pbh < alpha) if not math.isnan(pbh) else ci_excludes_chance(r)
        rows.append({"test": test, "attack": r.attack, "source": src, "metric": m,
                     "value": r.metrics.get(m), "chance": r.chance.get(m), "ci": tuple(ci) if ci else None,
                     "p": None if math.isnan(praw) else float(praw), "p_bh": None if math.isnan(pbh) else float(pbh),
                     "flagged": flagged, "seconds": r.cost.get("seconds"), "n": r.metrics.get("n")})
    return rows


def _f(v, fmt: str = ".3f") -> str:
    return "–" if v is None else format(v, fmt)


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table of :func:`leakage_table` rows."""
    lines = ["| test | metric | value | chance | 95% CI | p | p (BH) | flagged | n | s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = f"{r['ci'][0]:.3f}–{r['ci'][1]:.3f}" if r["ci"] else "–"
        lines.append(f"| {r['test']} | {r['metric']} | {_f(r['value'])} | {_f(r['chance'])} | {ci} | "
                     f"{_f(r['p'], '.2g')} | {_f(r['p_bh'], '.2g')} | {'**yes**' if r['flagged'] else 'no'} | "
                     f"{'–' if r['n'] is None else int(r['n'])} | {_f(r['seconds'], '.1f')} |")
    return "\n".join(lines)
