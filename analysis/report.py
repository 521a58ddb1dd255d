"""Audit reports: declared thresholds, verdicts, ``report.json`` and a one-page ``report.html``.

The verdict of an attack is read off :data:`THRESHOLDS`, a table kept here as data (and
copied into every report).  A row names a metric, which direction helps the attacker (as the metric's scorer
declares it, :mod:`attacks.metrics`), a
*fail* line (the attack has broken the kernel if its metric crosses it *and* beats chance
significantly) and a *pass* line (the kernel resists if the metric stays on the
defender's side of it, or does not beat chance significantly).  Significance is judged on
Benjamini-Hochberg adjusted p-values across every metric the audit grades
(:func:`owsd.stats.fdr_adjust`), or on the CI when a metric has no p-value.

Verdicts: ``pass`` (good for the defender), ``warn`` (beats chance but crosses no fail
line, or sits between the lines), ``fail`` (bad for the defender), ``inconclusive`` (the
attack ran but did not apply: its primary metric lies below its chance level, see
:mod:`analysis.verdicts`), ``n/a`` (the attack's requirements do not hold for this target),
``error`` (the attack crashed).  The kernel's verdict, and the system findings reported
beside it, come from :mod:`analysis.verdicts`.

Example:
    >>> r = {"attack": "x", "family": "key-estimation", "primary": "functional_error",
    ...      "metrics": {"functional_error": 0.01}, "chance": {"functional_error": 1.0},
    ...      "ci": {"functional_error": [0.0, 0.02]}, "p_values": {"functional_error": 1e-9}}
    >>> grade(r)["verdict"]
    'fail'
    >>> r["metrics"]["functional_error"], r["ci"]["functional_error"] = 3.0, [2.5, 3.5]
    >>> r["p_values"]["functional_error"] = 1.0
    >>> grade(r)["verdict"]
    'pass'
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from owsd.stats import fdr_adjust
from attacks.metrics import metric_spec
from attacks.registry import available_attacks

log = logging.getLogger(__name__)

REPORT_FORMAT = "owsd-audit-report"
REPORT_VERSION = 1
ALPHA = 0.05
VERDICTS = ("pass", "warn", "fail", "inconclusive", "n/a", "error")
_SEVERITY = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Threshold:
    """One declared line: how a metric is read as good or bad for the defender.

    Attributes:
        metric: metric name in an attack's result.
        higher_is_attack: whether larger values mean a stronger attack.
        fail: absolute line the metric must cross (towards the attacker) to fail the kernel.
        fail_margin: distance beyond the chance level it must also reach (``None``: none).
        pass_: line on the defender's side: staying there passes even when significant.
        families: attack families the row applies to (empty: all).
        meaning: what crossing ``fail`` means, in words.
        source: where the line comes from.
    """

    metric: str
    higher_is_attack: bool
    fail: Optional[float]
    pass_: Optional[float]
    meaning: str
    source: str
    fail_margin: Optional[float] = None
    families: tuple[str, ...] = ()

    def applies(self, result: dict) -> bool:
        return self.metric in result.get("metrics", {}) and (not self.families or result.get("family") in self.families)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["pass"] = d.pop("pass_")
        d["families"] = list(self.families)
        return d


#: The declared thresholds every verdict is read against (shown in every report).
THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("functional_error", False, fail=0.1, pass_=0.9, families=("key-estimation",),
              meaning="key recovered: the estimate predicts the victim's scrambled images to within 10% of "
                      "their variance (chance 1.0 = the best constant guess)",
              source="toolkit convention (docs/audit.md)"),
    Threshold("reid_accuracy", True, fail=0.20, pass_=0.05,
              meaning="more than 20% of scrambled images re-identified with their originals",
              source="NeuraCrypt challenge grading (<5% good for the defender, >20% bad)"),
    Threshold("ssim_mean", True, fail=0.3, fail_margin=0.1, pass_=None, families=("inversion",),
              meaning="reconstructions recognizable on average (mean SSIM above 0.3) and 0.1 above the "
                      "mean-image baseline",
              source="He et al.'s recognizable line (SSIM 0.3), plus a margin over chance for small images"),
    Threshold("inversion_ssim", True, fail=0.3, fail_margin=0.1, pass_=None, families=("key-estimation",),
              meaning="images inverted through the estimated key are recognizable (mean SSIM above 0.3 and "
                      "0.1 above the shuffled baseline)",
              source="He et al.'s recognizable line (SSIM 0.3)"),
    Threshold("auc", True, fail=0.75, pass_=0.55,
              meaning="a distinguisher / membership test right three times out of four (AUC above 0.75)",
              source="toolkit convention; AUC bands as in ML Privacy Meter reports"),
    Threshold("accuracy", True, fail=None, fail_margin=0.20, pass_=None, families=("leakage",),
              meaning="labels of scrambled images predicted 20 points above the majority rate",
              source="toolkit convention"),
    Threshold("hungarian_accuracy", True, fail=None, fail_margin=0.20, pass_=None, families=("leakage",),
              meaning="unsupervised clusters match the classes 20 points above chance",
              source="toolkit convention"),
    Threshold("spearman", True, fail=0.5, pass_=0.1, families=("leakage",),
              meaning="distances between scrambled images preserve those between originals (rank correlation "
                      "above 0.5)",
              source="toolkit convention"),
    Threshold("resend_auc", True, fail=0.75, pass_=0.55, families=("leakage",),
              meaning="a re-sent image is linked to its first sending (AUC above 0.75)",
              source="toolkit convention"),
    Threshold("link_accuracy", True, fail=None, fail_margin=0.20, pass_=None, families=("leakage",),
              meaning="near-duplicates linked 20 points above chance",
              source="toolkit convention"),
)

available_attacks()  # the scorers declare their metrics' directions when their families load


def _spec(result: dict, metric: str) -> dict:
    """The metric's declaration: the one the result recorded, else its scorer's (``{}``: undeclared)."""
    spec = (result.get("metric_specs") or {}).get(metric)
    if spec is None:
        known = metric_spec(metric)
        spec = known.to_dict() if known is not None else {}
    return spec


def higher_is_attack(result: dict, metric: str) -> bool:
    """Whether a larger ``metric`` means a stronger attack (undeclared metrics: yes)."""
    return bool(_spec(result, metric).get("higher_is_attack", True))


def perfect_value(result: dict, metric: str) -> Optional[float]:
    """The value of ``metric`` for a perfect attack, or ``None`` if its scorer declares none."""
    return _finite(_spec(result, metric).get("perfect"))


def thresholds_table() -> list[dict]:
    """:data:`THRESHOLDS` as JSON-ready rows."""
    return [t.to_dict() for t in THRESHOLDS]


def _finite(x: Any) -> Optional[float]:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _beyond(value: float, line: float, higher: bool) -> bool:
    return value > line if higher else value < line


def _significant(result: dict, metric: str, p_adj: Optional[float], alpha: float) -> Optional[bool]:
    """Whether ``metric`` beats chance: adjusted p-value, else the CI against chance.

    A value on the defender's side of chance never beats it (whatever a two-sided p says).
    """
    chance = _finite(result.get("chance", {}).get(metric))
    value = _finite(result.get("metrics", {}).get(metric))
    higher = higher_is_attack(result, metric)
    if chance is not None and value is not None and not _beyond(value, chance, higher):
        return False
    if p_adj is not None:
        return p_adj < alpha
    ci = result.get("ci", {}).get(metric)
    if chance is None or not ci:
        return None
    lo, hi = float(ci[0]), float(ci[1])
    return lo > chance if higher else hi < chance


def grade(result: dict, *, p_adjusted: Optional[dict] = None, alpha: float = ALPHA,
          thresholds: Sequence[Threshold] = THRESHOLDS) -> dict:
    """The verdict of one attack result (a ``result.json`` dict) against ``thresholds``.

    ``p_adjusted`` maps metric -> adjusted p-value (raw p-values are used if omitted).
    Returns ``{"verdict", "reasons", "rows"}``; the verdict is the worst over matching rows,
    or, when no row matches, ``warn`` if the primary metric beats chance and ``pass`` if not.
    """
    p_adjusted = p_adjusted if p_adjusted is not None else {
        k: _finite(v) for k, v in result.get("p_values", {}).items()}
    rows, reasons = [], []
    worst = None
    for t in thresholds:
        if not t.applies(result):
            continue
        v = _finite(result["metrics"][t.metric])
        if v is None:
            continue
        chance = _finite(result.get("chance", {}).get(t.metric))
        sig = _significant(result, t.metric, _finite(p_adjusted.get(t.metric)), alpha)
        crosses = t.fail is not None or t.fail_margin is not None
        if t.fail is not None and not _beyond(v, t.fail, t.higher_is_attack):
            crosses = False
        if t.fail_margin is not None:
            if chance is None:
                crosses = False
            else:
                line = chance + t.fail_margin if t.higher_is_attack else chance - t.fail_margin
                crosses = crosses and _beyond(v, line, t.higher_is_attack)
        on_pass_side = t.pass_ is not None and not _beyond(v, t.pass_, t.higher_is_attack)
        if sig and crosses:
            verdict = "fail"
            why = f"{t.metric} = {v:.3g} crosses the fail line ({t.meaning}) and beats chance"
        elif sig is False or on_pass_side:
            verdict = "pass"
            why = (f"{t.metric} = {v:.3g} does not beat chance ({chance:.3g})" if sig is False and chance is not None
                   else f"{t.metric} = {v:.3g} stays on the defender's side of {t.pass_}")
        else:
            verdict = "warn"
            why = f"{t.metric} = {v:.3g} beats chance" + (f" ({chance:.3g})" if chance is not None else "") + \
                  " but crosses no fail line"
        rows.append({"metric": t.metric, "value": v, "chance": chance, "significant": sig, "verdict": verdict,
                     "fail": t.fail, "fail_margin": t.fail_margin, "pass": t.pass_})
        reasons.append(why)
        worst = verdict if worst is None or _SEVERITY[verdict] > _SEVERITY[worst] else worst
    if worst is None:
        m = result.get("primary")
        v = _finite(result.get("metrics", {}).get(m)) if m else None
        sig = _significant(result, m, _finite(p_adjusted.get(m)), alpha) if v is not None else None
        if sig:
            worst, why = "warn", f"{m} = {v:.3g} beats chance (no declared line for this metric)"
        else:
            worst = "pass"
            why = f"{m} = {v:.3g} does not beat chance" if v is not None else "no primary metric to grade"
        reasons.append(why)
        rows.append({"metric": m, "value": v, "chance": _finite(result.get("chance", {}).get(m)) if m else None,
                     "significant": sig, "verdict": worst, "fail": None, "fail_margin": None, "pass": None})
    return {"verdict": worst, "reasons": reasons, "rows": rows}


def graded_metrics(result: dict, thresholds: Sequence[Threshold] = THRESHOLDS) -> list[str]:
    """The metrics of ``result`` that :func:`grade` reads (threshold rows, else the primary)."""
    ms = [t.metric for t in thresholds if t.applies(result)]
    if not ms and result.get("primary"):
        ms = [result["primary"]]
    return list(dict.fromkeys(ms))


def adjust_pvalues(results: Sequence[dict], thresholds: Sequence[Threshold] = THRESHOLDS) -> list[dict]:
    """Benjamini-Hochberg adjusted p-values of every graded metric, across all ``results``."""
    slots, ps = [], []
    for i, r in enumerate(results):
        for m in graded_metrics(r, thresholds):
            p = _finite(r.get("p_values", {}).get(m))
            if p is not None:
                slots.append((i, m))
                ps.append(min(1.0, max(0.0, p)))
    out: list[dict] = [{} for _ in results]
    if ps:
        for (i, m), q in zip(slots, fdr_adjust(np.asarray(ps))):
            out[i][m] = float(q)
    return out


def advantage(result: dict, metric: Optional[str] = None) -> Optional[float]:
    """Normalized attacker advantage in [0, 1]: 0 at chance, 1 for a perfect attack."""
    m = metric or result.get("primary")
    best = perfect_value(result, m) if m is not None else None
    if best is None:
        return None
    v, c = _finite(result.get("metrics", {}).get(m)), _finite(result.get("chance", {}).get(m))
    if v is None or c is None or c == best:
        return None
    a = (v - c) / (best - c)
    return float(min(1.0, max(0.0, a)))


def summarize(entries: Sequence[dict]) -> dict:
    """Verdict counts and the largest attacker advantage per family, of the kernel's findings.

    Reference runs and system findings (``finding == "system"``: outcomes that do not depend
    on the kernel) are left out.  ``overall`` is the worst verdict here; :func:`build_report`
    replaces it by the kernel verdict of :mod:`analysis.verdicts` when given one.
    """
    counts = {v: 0 for v in VERDICTS}
    fam: dict[str, Optional[float]] = {}
    worst: dict[str, str] = {}
    for e in entries:
        if e.get("reference") or e.get("finding") == "system":
            continue
        counts[e["verdict"]] = counts.get(e["verdict"], 0) + 1
        f = e.get("family", "?")
        a = e.get("advantage")
        if a is not None:
            fam[f] = a if fam.get(f) is None else max(fam[f], a)
        if e["verdict"] in _SEVERITY:
            if f not in worst or _SEVERITY[e["verdict"]] > _SEVERITY[worst[f]]:
                worst[f] = e["verdict"]
    broken = [f for f in ("key-estimation", "inversion") if fam.get(f) is not None]
    overall = "fail" if counts.get("fail") else ("warn" if counts.get("warn") else "pass")
    return {"counts": counts, "overall": overall, "worst_by_family": worst, "max_advantage_by_family": fam,
            "max_reconstruction_advantage": max((fam[f] for f in broken), default=None)}


def headline_utility(utility: Optional[dict]) -> Optional[float]:
    """The scheme's utility in one number: cloud-only accuracy at the largest output size."""
    if not utility or "accuracy" not in utility:
        return None
    co = utility["accuracy"].get("cloud_only", {})
    if not co:
        return None
    k = max(co, key=lambda s: int(s))
    return float(co[k])


# --- report.json ----------------------------------------------------------------------
def build_report(*, manifest: dict, entries: list[dict], utility: Optional[dict], figures: dict,
                 notes: Iterable[str] = (), verdicts: Optional[dict] = None) -> dict:
    """Assemble ``report.json`` (the source of truth) from the audit's pieces.

    ``verdicts``: :func:`analysis.verdicts.finalize`'s ``kernel_verdict`` and
    ``system_findings``; the summary's ``overall`` is then the kernel verdict.
    """
    summary = summarize(entries)
    verdicts = verdicts or {}
    if verdicts.get("kernel_verdict"):
        summary["overall"] = verdicts["kernel_verdict"]["verdict"]
        summary["system"] = {k: verdicts["system_findings"].get(k) for k in ("verdict", "counts")}
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **{k: manifest[k] for k in ("command", "target", "dataset", "cloud", "budget", "seed", "victim_sizes",
                                    "machine", "toolkit_version") if k in manifest},
        "utility": utility,
        "utility_headline": headline_utility(utility),
        "thresholds": thresholds_table(),
        "alpha": ALPHA,
        "summary": summary,
        **verdicts,
        "attacks": entries,
        "figures": figures,
        "notes": list(notes),
    }


def load_report(run_dir: str | Path) -> dict:
    """Read ``report.json`` from a run directory (clear error if absent or not a report)."""
    path = Path(run_dir)
    path = path / "report.json" if path.is_dir() else path
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no audit report here (run `owsd audit ... --out DIR` first)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt report, not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != REPORT_FORMAT:
        raise ValueError(f"{path}: not an owsd audit report")
    return doc
