"""The one-page ``report.html`` of an audit, drawn from ``report.json`` (the source of truth).

The page leads with the kernel verdict (:mod:`analysis.verdicts`: scope, applicability,
certification, the strongest attack per threat model), then the kernel's attacks, the
system findings beside them (attacks whose outcome does not depend on the kernel), the
figures, the scheme's utility, the declared thresholds and every metric.

Example:
    >>> _badge("inconclusive")
    '<span class="v v-inconclusive">inconclusive</span>'
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Optional

from analysis.report import ALPHA, THRESHOLDS, VERDICTS, _finite

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1d2430;max-width:1220px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
.sub{color:#555;font-size:13px} table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
td,th{border:1px solid #d6d9de;padding:3px 7px;text-align:left;vertical-align:top} th{background:#f1f3f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.v{display:inline-block;padding:1px 8px;border-radius:9px;font-weight:600;font-size:12px;color:#fff}
.v-pass{background:#2e7d32}.v-warn{background:#d98b00}.v-fail{background:#c62828}.v-na{background:#7b8794}.v-error{background:#6a1b9a}
.v-inconclusive{background:#5c6bc0}.verdict{border:2px solid #d6d9de;border-radius:8px;padding:8px 14px;margin:10px 0}
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
            + "".join(f", {n} {o} q" for o, n in (cost.get("oracle_queries") or {"scramble": cost.get("queries")}).items()
                      if n) + "</td>"
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


def _kernel_html(report: dict) -> str:
    """The kernel verdict: reason, certification, and the strongest attack per threat model and family."""
    kv = report.get("kernel_verdict")
    if not kv:
        return "<p>This report predates kernel verdicts (no <code>kernel_verdict</code>).</p>"
    cert = ("certified: every attack ran at full strength" if kv.get("certified") else
            "not certified: " + "; ".join(kv.get("certification") or []))
    rows = []
    for title, key in (("threat model", "by_threat_model"), ("family", "by_family")):
        for name, d in (kv.get(key) or {}).items():
            desc = (kv.get("threat_models") or {}).get(name, "") if key == "by_threat_model" else ""
            other = ", ".join(d.get("inconclusive", []) + d.get("errors", []))
            rows.append(f"<tr><td>{_esc(title)}</td><td><b>{_esc(name)}</b> <span class=sub>{_esc(desc)}</span></td>"
                        f"<td>{_badge(d['verdict'])}</td><td>{_esc(d.get('strongest_text') or '-')}</td>"
                        f"<td>{_esc(other or '-')}</td><td>{_esc(', '.join(d.get('not_applicable', [])) or '-')}</td></tr>")
    return (f"<div class=verdict><b>kernel verdict</b> {_badge(kv['verdict'])} {_esc(kv.get('reason', ''))}"
            f"<div class=sub>{_esc(cert)}</div></div>"
            "<table><tr><th>by</th><th>group</th><th>verdict</th><th>strongest attack tried</th>"
            "<th>inconclusive / crashed</th><th>n/a</th></tr>" + "".join(rows) + "</table>")


def _system_html(report: dict) -> str:
    sf = report.get("system_findings") or {}
    rows = "".join(f"<tr><td><code>{_esc(f['job'])}</code></td><td>{_badge(f['verdict'])}</td><td>{_esc(f['line'])}</td>"
                   f"<td class=tm>{_esc(f.get('reason', ''))}</td></tr>" for f in sf.get("findings", []))
    if not rows:
        return "<p>No system findings in this audit.</p>"
    return (f"<p class=sub>{_esc(sf.get('meaning', ''))}</p><table><tr><th>attack</th><th>verdict</th>"
            "<th>primary metric</th><th>why</th></tr>" + rows + "</table>")


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
<h1>Security audit of scrambler <code>{_esc(t.get('name'))}</code>: kernel {_badge(s['overall'])}</h1>
<div class=sub>fingerprint <code>{_esc(t.get('fingerprint'))}</code> &middot; {_esc(report.get('dataset', {}).get('name'))}
&middot; cloud {_esc(report.get('cloud'))} &middot; budget {_esc(report.get('budget'))} &middot; {_esc(report.get('created'))}</div>
{_kernel_html(report)}
<div class=cards>{cards}</div>
<h2>Attacks on the kernel</h2>{_attack_rows([e for e in report['attacks'] if e.get('finding') != 'system'])}
<h2>System findings (not the kernel's)</h2>{_system_html(report)}
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
