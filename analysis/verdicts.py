"""Verdicts that mean what they say: scope, applicability, and the kernel's certified verdict.

:func:`analysis.report.grade` reads one attack's metrics against the declared thresholds.
This module turns the graded attacks of an audit into the kernel's verdict:

* **Scope.** Each attack declares, as data on its class, what its outcome is evidence
  about (:attr:`attacks.base.Attack.finding`): the ``kernel``, or the rest of the
  ``system`` (membership inference on the organization's internal model measures that
  model's overfitting: a scrambler of pure noise leaks membership too).  Only kernel
  findings enter the kernel verdict; system findings are reported beside it.
* **Applicability.** An attack whose primary metric lies significantly below its chance
  level (its CI excludes chance on the defender's side, and a one-sided test read off that
  CI survives Benjamini-Hochberg across the audit, as "beats chance" does) did worse than an
  input-independent guess: it did not apply to this target (its model of the scrambler is
  wrong, or it overfit), so its failure is no evidence of resistance.  Its ``pass`` becomes
  ``inconclusive``, with the reason.  (Attacks that could not run at all are ``n/a``.)
* **Threat models.** Kernel attacks are grouped by what the attacker holds of the victim
  (:data:`THREAT_MODELS`); each group names its strongest attack (:func:`strength`).
* **Certification.** ``pass`` is given only when no kernel attack beat chance, every
  threat model that some attack applied to has a conclusive attack, and the attacks ran at
  full strength: a certifying budget (:data:`CERTIFYING_BUDGETS`), every declared victim size
  met, nothing crashed or left unrun.  Otherwise the verdict is ``inconclusive`` and says why.

Example:
    >>> def e(job, verdict, family="leakage", finding="kernel", **tm):
    ...     return {"job": job, "attack": job, "family": family, "finding": finding, "verdict": verdict,
    ...             "threat_model": tm, "primary": "auc", "metrics": {"auc": 0.5}, "chance": {"auc": 0.5},
    ...             "ci": {"auc": [0.4, 0.6]}, "advantage": 0.0, "victim_sizes": {}, "declared_sizes": {}}
    >>> entries = [e("probe", "pass", labelled_examples=100), e("equality", "pass"),
    ...            e("membership", "fail", finding="system", labelled_examples=200)]
    >>> doc = finalize(entries, budget="standard")
    >>> doc["kernel_verdict"]["verdict"], doc["system_findings"]["verdict"]
    ('pass', 'fail')
    >>> finalize(entries, budget="smoke")["kernel_verdict"]["verdict"]
    'inconclusive'
"""

from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import numpy as np

from analysis.report import ALPHA, _finite, higher_is_attack
from attacks.registry import get_attack
from owsd.stats import fdr_adjust

log = logging.getLogger(__name__)

#: budgets at which attacks run at full strength (``smoke`` runs them with a fraction of
#: their data and training: it can show a break, never certify resistance)
CERTIFYING_BUDGETS = ("standard", "full")
#: the attacker's standing towards the victim, strongest first (:func:`threat_model_of`)
THREAT_MODELS: tuple[tuple[str, str], ...] = (
    ("reference", "knows the key (an upper bound, not an attack; left out of the verdict)"),
    ("chosen-plaintext", "has inputs of its choice scrambled under the victim's key"),
    ("known-plaintext", "holds (input, scrambled) pairs under the victim's key"),
    ("labelled", "knows the labels of some of the victim's images"),
    ("ciphertext-only", "sees the traffic (scrambled images and/or cloud outputs) and holds public data"),
)
CONCLUSIVE = ("pass", "warn", "fail")
_SEVERITY = {"pass": 0, "warn": 1, "fail": 2}


def finding_of(entry: dict) -> str:
    """The entry's declared scope (``kernel`` or ``system``): recorded, else its class's, else kernel."""
    f = entry.get("finding")
    if f in ("kernel", "system"):
        return f
    try:
        return get_attack(entry.get("attack", "")).finding
    except (ValueError, AttributeError):
        return "kernel"


def threat_model_of(tm: Optional[dict]) -> str:
    """The :data:`THREAT_MODELS` group of a threat-model dict (what the attacker holds of the victim).

    Queries to the cloud model with images of the attacker's own are charged as cost but do not
    touch the victim's key, so they do not change the group.
    """
    tm = tm or {}
    if tm.get("knows_key"):
        return "reference"
    if tm.get("chosen_queries"):
        return "chosen-plaintext"
    if tm.get("known_pairs"):
        return "known-plaintext"
    if tm.get("labelled_examples"):
        return "labelled"
    return "ciphertext-only"


def below_chance_pvalue(entry: dict) -> Optional[float]:
    """One-sided p-value that the entry's primary metric lies on the defender's side of chance.

    A normal approximation read off the metric's 95% CI (standard error = CI width / 3.92);
    ``None`` without a primary metric, a chance level or a CI.  Which side is the defender's
    is the metric's declared direction, as the report reads it
    (:func:`analysis.report.higher_is_attack`: the entry's ``metric_specs`` first).
    """
    m = entry.get("primary")
    if not m:
        return None
    v = _finite((entry.get("metrics") or {}).get(m))
    c = _finite((entry.get("chance") or {}).get(m))
    ci = (entry.get("ci") or {}).get(m)
    if v is None or c is None or not ci or _finite(ci[0]) is None or _finite(ci[1]) is None:
        return None
    lo, hi = float(ci[0]), float(ci[1])
    higher = higher_is_attack(entry, m)
    worse = (c - v) if higher else (v - c)  # > 0: on the defender's side of chance
    if (hi < c if higher else lo > c) and hi - lo <= 0:
        return 0.0  # a degenerate interval wholly beyond chance
    se = (hi - lo) / (2 * 1.959964)
    if se <= 0:
        return 1.0
    return float(0.5 * math.erfc(worse / se / math.sqrt(2)))


def below_chance(entries: Sequence[dict], *, alpha: float = ALPHA) -> dict[str, str]:
    """``{job: reason}`` for entries whose primary metric lies significantly below chance.

    Significance as for "beats chance": Benjamini-Hochberg across the audit's graded entries,
    here on :func:`below_chance_pvalue`, and the CI must exclude chance.  Such an attack did
    worse than an input-independent guess: it did not apply to this target.
    """
    graded = [(e, below_chance_pvalue(e)) for e in entries if e.get("verdict") in CONCLUSIVE]
    graded = [(e, p) for e, p in graded if p is not None]
    if not graded:
        return {}
    q = fdr_adjust(np.asarray([p for _, p in graded]))
    out = {}
    for (e, _), qi in zip(graded, q):
        m = e["primary"]
        v, c, (lo, hi) = float(e["metrics"][m]), float(e["chance"][m]), (float(x) for x in e["ci"][m])
        excludes = hi < c if higher_is_attack(e, m) else lo > c
        if qi < alpha and excludes:
            out[e["job"]] = (
                f"{m} = {v:.3g} [{lo:.3g}, {hi:.3g}] lies below its chance level {c:.3g} (BH-adjusted p "
                f"{qi:.2g}): the attack did worse than an input-independent guess, so it did not apply to this "
                "target (its model of the scrambler does not fit, or it overfit); its failure is no evidence "
                "of resistance")
    return out


def _resources(entry: dict) -> int:
    tm = entry.get("threat_model") or {}
    return sum(int(tm.get(k) or 0) for k in ("known_pairs", "chosen_queries", "labelled_examples",
                                               "auxiliary_size", "model_queries"))


def strength(entry: dict) -> tuple:
    """Sort key of "the strongest attack": worst verdict for the defender, then largest attacker
    advantage, then most resources granted (pairs, queries, labels, auxiliary images), then the
    job's name (a deterministic tie-break: seconds differ between runs, the report must not)."""
    return (_SEVERITY.get(entry.get("verdict"), -1), entry.get("advantage") or 0.0, _resources(entry),
            str(entry.get("job") or ""))


def _line(entry: dict) -> str:
    m = entry.get("primary")
    v, c = _finite((entry.get("metrics") or {}).get(m)), _finite((entry.get("chance") or {}).get(m))
    if m and v is not None:
        return f"{entry['job']} ({m} = {v:.3g}, chance {c:.3g})" if c is not None else f"{entry['job']} ({m} = {v:.3g})"
    return entry["job"]


def combine(entries: Sequence[dict]) -> dict:
    """The verdict of a group of kernel attacks: the worst conclusive one, with the strongest named.

    No conclusive attack: ``inconclusive`` if some attack ran (or crashed), ``n/a`` if none applied.
    """
    conclusive = [e for e in entries if e.get("verdict") in CONCLUSIVE]
    out = {"attacks": [e["job"] for e in entries],
           "inconclusive": [e["job"] for e in entries if e.get("verdict") == "inconclusive"],
           "errors": [e["job"] for e in entries if e.get("verdict") == "error"],
           "not_applicable": [e["job"] for e in entries if e.get("verdict") == "n/a"]}
    if conclusive:
        best = max(conclusive, key=strength)
        out.update(verdict=best["verdict"], strongest=best["job"], strongest_text=_line(best),
                   threat_model_text=best.get("threat_model_text", ""))
    else:
        out.update(verdict="inconclusive" if out["inconclusive"] or out["errors"] else "n/a", strongest=None,
                   strongest_text=None, threat_model_text=None)
    return out


def certification_blockers(entries: Sequence[dict], *, budget: str, missing: Sequence[str] = ()) -> list[str]:
    """Why the kernel attacks in ``entries`` did not all run at full strength (empty: they did)."""
    out = []
    if budget not in CERTIFYING_BUDGETS:
        out.append(f"a {budget} budget cannot certify resistance (its attacks run with a fraction of their data "
                   f"and training); rerun with --budget {' or '.join(CERTIFYING_BUDGETS)}")
    errs = [e["job"] for e in entries if e.get("verdict") == "error"]
    if errs:
        out.append(f"attacks crashed: {', '.join(errs)}")
    small = [e["job"] for e in entries if e.get("verdict") == "n/a" and e.get("reduced")]
    cut = [e["job"] for e in entries if e.get("verdict") in CONCLUSIVE + ("inconclusive",)
           and any(int((e.get("victim_sizes") or {}).get(k, v)) < int(v)
                   for k, v in (e.get("declared_sizes") or {}).items())]
    if small or cut:
        out.append(f"the dataset is too small for the attacks' declared sizes ({', '.join(small + cut)} ran "
                   "reduced or not at all)")
    if missing:
        out.append(f"planned attacks have not run yet: {', '.join(missing)}")
    return out


def kernel_verdict(entries: Sequence[dict], *, budget: str, missing: Sequence[str] = ()) -> dict:
    """The kernel's verdict from its kernel findings (see the module doc for the rules)."""
    kern = [e for e in entries if finding_of(e) == "kernel" and not e.get("reference")]
    fams = sorted({e.get("family", "?") for e in kern})
    by_family = {f: combine([e for e in kern if e.get("family") == f]) for f in fams}
    groups = [g for g, _ in THREAT_MODELS if g != "reference"]
    by_tm = {g: combine([e for e in kern if threat_model_of(e.get("threat_model")) == g]) for g in groups}
    by_tm = {g: d for g, d in by_tm.items() if d["attacks"]}
    blockers = certification_blockers(kern, budget=budget, missing=missing)
    worst = max((d["verdict"] for d in by_tm.values() if d["verdict"] in CONCLUSIVE),
                key=lambda v: _SEVERITY[v], default=None)
    named = "; ".join(f"{g}: {d['strongest_text']}" for g, d in by_tm.items() if d["strongest"])
    resisted = worst == "pass"
    if worst in ("fail", "warn"):
        hit = "; ".join(f"{g}: {d['strongest_text']}" for g, d in by_tm.items() if d["verdict"] == worst)
        verdict = worst
        reason = (f"broken by {hit}" if worst == "fail" else f"attacks beat chance without crossing a fail line: {hit}")
    elif worst is None:
        verdict = "inconclusive" if any(d["verdict"] == "inconclusive" for d in by_tm.values()) else "n/a"
        reason = ("no attack gave a conclusive result (each did not apply, crashed, or scored below chance)"
                  if verdict == "inconclusive" else "no attack applies to this target")
        if blockers:
            reason += "; " + "; ".join(blockers)
    else:
        uncovered = [g for g, d in by_tm.items() if d["verdict"] == "inconclusive"]
        if uncovered:
            verdict = "inconclusive"
            tried = "; ".join(f"{g}: tried " + ", ".join(by_tm[g]["inconclusive"] + by_tm[g]["errors"])
                              for g in uncovered)
            reason = (f"no attack beat chance, but none gave a conclusive result on threat model(s) {tried} "
                      "(each scored below chance or crashed)") + "".join(f"; {b}" for b in blockers)
        elif blockers:
            verdict, reason = "inconclusive", f"no attack beat chance ({named}), but this audit cannot certify: " + \
                "; ".join(blockers)
        else:
            verdict, reason = "pass", f"resisted the strongest attack tried on each threat model: {named}"
            none = [g for g, d in by_tm.items() if d["verdict"] == "n/a"]
            if none:
                reason += f"; no attack of this toolkit applies on threat model(s) {', '.join(none)}"
    return {"verdict": verdict, "reason": reason, "certified": not blockers, "certification": blockers,
            "resisted": resisted, "budget": budget, "by_threat_model": by_tm, "by_family": by_family,
            "threat_models": {g: text for g, text in THREAT_MODELS}}


def system_findings(entries: Sequence[dict]) -> dict:
    """The findings whose outcome does not depend on the kernel, reported beside its verdict."""
    sys_ = [e for e in entries if finding_of(e) == "system" and not e.get("reference")]
    counts: dict[str, int] = {}
    for e in sys_:
        counts[e["verdict"]] = counts.get(e["verdict"], 0) + 1
    worst = max((e["verdict"] for e in sys_ if e["verdict"] in CONCLUSIVE), key=lambda v: _SEVERITY[v], default=None)
    return {"verdict": worst or ("n/a" if not sys_ else "inconclusive"), "counts": counts,
            "findings": [{"job": e["job"], "attack": e.get("attack"), "verdict": e["verdict"], "line": _line(e),
                          "reason": "; ".join(e.get("reasons") or [e.get("reason", "")])} for e in sys_],
            "meaning": "these attacks' outcomes do not depend on the kernel (e.g. membership inference on the "
                       "organization's internal model measures that model's overfitting); they are reported "
                       "beside the kernel verdict and never enter it"}


def finalize(entries: list[dict], *, budget: str, missing: Sequence[str] = ()) -> dict:
    """Annotate graded ``entries`` in place (``finding``, ``threat_class``, below-chance ``inconclusive``)
    and return ``{"kernel_verdict", "system_findings"}`` for the report."""
    low = below_chance(entries)
    for e in entries:
        e["finding"] = finding_of(e)
        e["threat_class"] = threat_model_of(e.get("threat_model"))
        if e.get("verdict") == "pass" and e["job"] in low:
            e["graded_verdict"], e["verdict"] = "pass", "inconclusive"
            e["reasons"] = [low[e["job"]]] + list(e.get("reasons") or [])
    return {"kernel_verdict": kernel_verdict(entries, budget=budget, missing=missing),
            "system_findings": system_findings(entries)}
