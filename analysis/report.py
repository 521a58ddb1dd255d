"""Audit reports: declared thresholds, verdicts, ``report.json`` and a one-page ``report.html``.

The verdict of an attack is read off :data:`THRESHOLDS`, a table kept here as data (and
copied into every report).  A row names a metric, which direction helps the attacker, a
*fail* line (the attack has broken the kernel if its metric crosses it *and* beats chance
significantly) and a *pass* line (the kernel resists if the metric stays on the
defender's side of it, or does not beat chance significantly).  Significance is judged on
Benjamini-Hochberg adjusted p-values across every metric the audit grades
(:func:`owsd.stats.fdr_adjust`), or on the CI when a metric has no p-value.

Verdicts: ``pass`` (good for the defender), ``warn`` (beats chance but crosses no fail
line, or sits between the lines), ``fail`` (bad for the defender), ``n/a`` (the attack's
requirements do not hold for this target), ``error`` (the attack crashed).

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
import html
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from owsd.stats import fdr_adjust

log = logging.getLogger(__name__)

REPORT_FORMAT = "owsd-audit-report"
REPORT_VERSION = 1
ALPHA = 0.05
VERDICTS = ("pass", "warn", "fail", "n/a", "error")
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

#: metrics where a smaller value means a stronger attack (for advantage and plots)
LOWER_IS_ATTACK = frozenset({"functional_error", "functional_error_link", "weight_error", "embedding_error"})
#: the value of a perfect attack, per metric (for the normalized attacker advantage)
PERFECT = {"functional_error": 0.0, "functional_error_link": 0.0, "weight_error": 0.0, "embedding_error": 0.0,
           "ssim_mean": 1.0, "inversion_ssim": 1.0, "reid_accuracy": 1.0, "accuracy": 1.0, "auc": 1.0,
           "hungarian_accuracy": 1.0, "spearman": 1.0, "resend_auc": 1.0, "link_accuracy": 1.0,
           "recognizable_rate": 1.0, "nmi": 1.0}


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
    higher = metric not in LOWER_IS_ATTACK
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
    if m not in PERFECT:
        return None
    v, c = _finite(result.get("metrics", {}).get(m)), _finite(result.get("chance", {}).get(m))
    if v is None or c is None or c == PERFECT[m]:
        return None
    a = (v - c) / (PERFECT[m] - c)
    return float(min(1.0, max(0.0, a)))


def summarize(entries: Sequence[dict]) -> dict:
    """Verdict counts and the largest attacker advantage per family (reference runs left out)."""
    counts = {v: 0 for v in VERDICTS}
    fam: dict[str, Optional[float]] = {}
    worst: dict[str, str] = {}
    for e in entries:
        if e.get("reference"):
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
                 notes: Iterable[str] = ()) -> dict:
    """Assemble ``report.json`` (the source of truth) from the audit's pieces."""
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
        "summary": summarize(entries),
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


# --- report.html ----------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1d2430;max-width:1220px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
.sub{color:#555;font-size:13px} table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
td,th{border:1px solid #d6d9de;padding:3px 7px;text-align:left;vertical-align:top} th{background:#f1f3f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.v{display:inline-block;padding:1px 8px;border-radius:9px;font-weight:600;font-size:12px;color:#fff}
.v-pass{background:#2e7d32}.v-warn{background:#d98b00}.v-fail{background:#c62828}.v-na{background:#7b8794}.v-error{background:#6a1b9a}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:10px 0}
.card{border:1px solid #d6d9de;border-radius:8px;padding:8px 14px;min-width:120px}
.card b{font-size:22px;display:block}
.figs{display:flex;flex-wrap:wrap;gap:14px}.figs figure{margin:0;border:1px solid #e3e5e8;padding:6px}
.figs img{max-width:560px;display:block}.figs figcaption{font-size:12px;color:#444;max-width:560px}
details{margin:4px 0} summary{cursor:pointer;font-size:13px} code{font-size:12px}
.tm{font-size:11.5px;color:#444;max-width:380px}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(v: Any, digits: int = 3) -> str:
    f = _finite(v)
    if f is None:
        return "&ndash;"
    return f"{f:.{digits}g}" if abs(f) < 1e4 else f"{f:.3e}"


def _badge(verdict: str) -> str:
    cls = {"n/a": "na"}.get(verdict, verdict)
    return f'<span class="v v-{_esc(cls)}">{_esc(verdict)}</span>'


def _kv_table(d: dict) -> str:
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _utility_html(u: Optional[dict]) -> str:
    if not u:
        return "<p>No utility measurement in this audit.</p>"
    if "error" in u:
        return f"<p>Utility measurement failed: {_esc(u['error'])}</p>"
    acc, ci = u["accuracy"], u.get("accuracy_ci95", {})
    rows = []
    for name in ("plaintext", "embedding_only"):
        if name in acc:
            lo, hi = ci.get(name, [None, None])
            rows.append(f"<tr><td>{name.replace('_', ' ')}</td><td>&ndash;</td><td class=num>{_num(acc[name])}</td>"
                        f"<td class=num>{_num(lo)}&ndash;{_num(hi)}</td></tr>")
    for name in ("cloud_only", "cloud_plus_embedding"):
        for k, v in acc.get(name, {}).items():
            lo, hi = ci.get(name, {}).get(k, [None, None])
            rows.append(f"<tr><td>{name.replace('_', ' ')}</td><td class=num>top-{_esc(k)}</td>"
                        f"<td class=num>{_num(v)}</td><td class=num>{_num(lo)}&ndash;{_num(hi)}</td></tr>")
    head = (f"<p class=sub>{_esc(u.get('dataset'))}, cloud {_esc(u.get('cloud'))}, {u.get('n_train')} training / "
            f"{u.get('n_test')} test images, internal model {_esc(u.get('classifier', {}).get('kind'))} "
            f"({u.get('classifier', {}).get('epochs')} epochs); chance {_num(u.get('chance'))}; "
            f"{_num(u.get('seconds', {}).get('total'))} s.</p>")
    return head + ("<table><tr><th>internal model input</th><th>cloud output</th><th>test accuracy</th>"
                   "<th>95% CI (Wilson)</th></tr>" + "".join(rows) + "</table>")


def _attack_rows(entries: list[dict]) -> str:
    out = []
    for e in entries:
        m = e.get("primary")
        if e["verdict"] in ("n/a", "error"):
            out.append(f"<tr><td><code>{_esc(e['job'])}</code></td><td>{_esc(e.get('family'))}</td>"
                       f"<td class=tm>{_esc(e.get('threat_model_text', ''))}</td><td colspan=5>"
                       f"{_esc(e.get('reason', ''))}</td><td>{_badge(e['verdict'])}</td></tr>")
            continue
        val, ch = e["metrics"].get(m), e["chance"].get(m)
        lo, hi = (e["ci"].get(m) or [None, None])
        p = e.get("p_adjusted", {}).get(m, e.get("p_values", {}).get(m))
        cost = e.get("cost", {})
        out.append(
            f"<tr><td><code>{_esc(e['job'])}</code></td><td>{_esc(e.get('family'))}</td>"
            f"<td class=tm>{_esc(e.get('threat_model_text', ''))}</td><td>{_esc(m)}</td>"
            f"<td class=num>{_num(val)} <span class=sub>[{_num(lo)}, {_num(hi)}]</span></td>"
            f"<td class=num>{_num(ch)}</td><td class=num>{_num(p, 2)}</td>"
            f"<td class=num>{_num(cost.get('seconds'), 3)} s"
            + (f", {cost.get('queries')} q" if cost.get("queries") else "") + "</td>"
            f"<td title=\"{_esc('; '.join(e.get('reasons', [])))}\">{_badge(e['verdict'])}</td></tr>")
    return ("<table><tr><th>attack</th><th>family</th><th>threat model</th><th>primary metric</th>"
            "<th>value [95% CI]</th><th>chance</th><th>p (BH)</th><th>cost</th><th>verdict</th></tr>"
            + "".join(out) + "</table>")


def _details(entries: list[dict]) -> str:
    parts = []
    for e in entries:
        if e["verdict"] in ("n/a", "error"):
            continue
        rows = []
        for k, v in sorted(e["metrics"].items()):
            lo, hi = (e["ci"].get(k) or [None, None])
            rows.append(f"<tr><td>{_esc(k)}</td><td class=num>{_num(v, 4)}</td><td class=num>{_num(lo)}&ndash;"
                        f"{_num(hi)}</td><td class=num>{_num(e['chance'].get(k))}</td>"
                        f"<td class=num>{_num(e.get('p_values', {}).get(k), 2)}</td></tr>")
        files = " ".join(f'<a href="{_esc(p)}">{_esc(Path(p).name)}</a>' for p in e.get("files", {}).values())
        parts.append(
            f"<details><summary><code>{_esc(e['job'])}</code> {_badge(e['verdict'])} "
            f"{_esc('; '.join(e.get('reasons', [])))}</summary>"
            f"<p class=sub>seed {e.get('seed')}; params {_esc(json.dumps(e.get('params', {}), sort_keys=True))}; "
            f"files: {files}</p><table><tr><th>metric</th><th>value</th><th>95% CI</th><th>chance</th>"
            f"<th>p (raw)</th></tr>{''.join(rows)}</table></details>")
    return "".join(parts)


def _thresholds_html() -> str:
    rows = "".join(
        f"<tr><td>{_esc(t.metric)}</td><td>{'higher' if t.higher_is_attack else 'lower'}</td>"
        f"<td class=num>{_num(t.fail)}</td><td class=num>{_num(t.fail_margin)}</td><td class=num>{_num(t.pass_)}</td>"
        f"<td>{_esc(', '.join(t.families) or 'all')}</td><td>{_esc(t.meaning)}</td><td>{_esc(t.source)}</td></tr>"
        for t in THRESHOLDS)
    return ("<table><tr><th>metric</th><th>attacker wants</th><th>fail line</th><th>fail margin over chance</th>"
            "<th>pass line</th><th>families</th><th>meaning</th><th>source</th></tr>" + rows + "</table>"
            f"<p class=sub>fail = significant (BH-adjusted p &lt; {ALPHA}, or the CI excludes chance) and beyond "
            "the fail line (and margin); pass = not significant, or on the defender's side of the pass line; "
            "warn otherwise. Metrics without a row: warn if significant, else pass.</p>")


def render_html(report: dict) -> str:
    """One self-contained page (figures linked by relative path) showing the whole report."""
    t = report.get("target", {})
    s = report["summary"]
    c = s["counts"]
    cards = "".join(f'<div class=card><b>{c.get(v, 0)}</b>{_badge(v)}</div>' for v in VERDICTS)
    util = report.get("utility_headline")
    adv = s.get("max_reconstruction_advantage")
    cards += (f'<div class=card><b>{_num(util)}</b>utility (cloud-only accuracy)</div>'
              f'<div class=card><b>{_num(adv)}</b>max reconstruction advantage</div>')
    spec = t.get("spec")
    spec_html = (f"<details><summary>scrambler spec <code>{_esc(spec.get('name'))}</code></summary>"
                 f"<pre>{_esc(json.dumps(spec, indent=1, sort_keys=True))}</pre></details>" if spec else "")
    figs = []
    for name, f in report.get("figures", {}).items():
        figs.append(f'<figure><img src="{_esc(f["path"])}" alt="{_esc(name)}">'
                    f'<figcaption><b>{_esc(name)}</b>: {_esc(f.get("caption", ""))}</figcaption></figure>')
    notes = "".join(f"<li>{_esc(n)}</li>" for n in report.get("notes", []))
    info = {"target": f"{t.get('name')} ({t.get('kind')})", "fingerprint": t.get("fingerprint"),
            "key source": t.get("key_source"), "dataset": report.get("dataset", {}).get("name"),
            "victim sizes": report.get("victim_sizes"), "cloud": report.get("cloud"),
            "budget": report.get("budget"), "attack seed": report.get("seed"),
            "command": report.get("command") or "(Python API)", "machine": report.get("machine", {}).get("summary"),
            "created": report.get("created")}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>OWSD audit: {_esc(t.get('name'))}</title>
<style>{_CSS}</style></head><body>
<h1>Security audit of scrambler <code>{_esc(t.get('name'))}</code> {_badge(s['overall'])}</h1>
<div class=sub>fingerprint <code>{_esc(t.get('fingerprint'))}</code> &middot; {_esc(report.get('dataset', {}).get('name'))}
&middot; cloud {_esc(report.get('cloud'))} &middot; budget {_esc(report.get('budget'))} &middot; {_esc(report.get('created'))}</div>
<div class=cards>{cards}</div>
<h2>Attacks</h2>{_attack_rows(report['attacks'])}
<h2>Figures</h2><div class=figs>{''.join(figs) or '<p>No figures.</p>'}</div>
<h2>Utility of the scheme</h2>{_utility_html(report.get('utility'))}
<h2>Declared thresholds</h2>{_thresholds_html()}
<h2>Every metric</h2>{_details(report['attacks'])}
<h2>Run</h2>{_kv_table(info)}{spec_html}
{f'<h2>Notes</h2><ul>{notes}</ul>' if notes else ''}
<p class=sub>report.json in this folder is the source of truth; this page is drawn from it. No secret key
material is written by the audit (the fingerprint is a one-way hash).</p>
</body></html>
"""
