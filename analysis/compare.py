"""``owsd audit-compare``: rank several audited kernels on a privacy-utility table and plot.

Each audit directory contributes one row read from its ``report.json``: utility (cloud-only
internal-model accuracy at the largest output size, with its Wilson CI), the largest
normalized attacker advantage of the key-estimation and inversion attacks (0 = chance,
1 = perfect), the kernel's verdict counts and its verdict (:mod:`analysis.verdicts`), with
the system findings' verdict beside it.  Rows are ranked by Pareto
dominance on (utility up, advantage down), then by fewer failed attacks, then by utility
(:func:`analysis.ranking.rank_rows`).
A sweep folder (``owsd sweep --out``; or its ``frontier.json``) contributes its frontier rows,
one per kernel with its seeds pooled (:mod:`analysis.sweep.frontier`; there ``privacy`` is the
worst family's mean advantage, leakage included).

Example:
    >>> row = row_of({"target": {"name": "k"}, "summary": {"counts": {"fail": 1}, "overall": "fail"}})
    >>> row["label"], row["fails"], row["verdict"]
    ('k', 1, 'fail')
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from analysis.figures import privacy_utility_plot
from analysis.ranking import rank_rows
from analysis.reportcheck import read_report
from analysis.sweep.frontier import load_frontier
from owsd import provenance
from owsd.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

#: the panels of the comparison plot: (row key, y label)
COMPARE_PANELS = (("key_advantage", "key estimation: max attacker advantage"),
                  ("inversion_advantage", "inversion: max attacker advantage"),
                  ("leakage_advantage", "leakage: max attacker advantage"))


def row_of(report: dict, *, label: Optional[str] = None, path: str = "") -> dict:
    """One table row (see module doc) from a report dict."""
    t = report.get("target", {})
    s = report.get("summary", {})
    u = report.get("utility") or {}
    util = report.get("utility_headline")
    ci = None
    if util is not None:
        k = max(u["accuracy"]["cloud_only"], key=int)
        ci = u["accuracy_ci95"]["cloud_only"][k]
    c = s.get("counts", {})
    return {"label": label or t.get("name", "?"), "path": path, "kind": t.get("kind"),
            "fingerprint": t.get("fingerprint"), "spec": (t.get("spec") or {}).get("name"),
            "dataset": (report.get("dataset") or {}).get("name"), "cloud": report.get("cloud"),
            "budget": report.get("budget"), "utility": util, "utility_ci": ci,
            "plaintext": (u.get("accuracy") or {}).get("plaintext"), "baseline": (u.get("accuracy") or {}).get(
                "plaintext"), "chance": u.get("chance"),
            "key_advantage": (s.get("max_advantage_by_family") or {}).get("key-estimation"),
            "inversion_advantage": (s.get("max_advantage_by_family") or {}).get("inversion"),
            "leakage_advantage": (s.get("max_advantage_by_family") or {}).get("leakage"),
            "privacy": s.get("max_reconstruction_advantage"),
            "advantage_by_family": s.get("max_advantage_by_family", {}),
            "fails": c.get("fail", 0), "warns": c.get("warn", 0), "passes": c.get("pass", 0),
            "inconclusive": c.get("inconclusive", 0), "not_applicable": c.get("n/a", 0), "errors": c.get("error", 0),
            "verdict": s.get("overall"), "certified": (report.get("kernel_verdict") or {}).get("certified"),
            "system_verdict": (report.get("system_findings") or {}).get("verdict")}


def _f(v, d: int = 3) -> str:
    return "-" if v is None else f"{v:.{d}f}"


def format_table(rows: Sequence[dict]) -> str:
    """The ranked rows as a Markdown table."""
    head = ("| rank | kernel | dataset / cloud / budget | utility [95% CI] | plaintext | max advantage: key "
            "estimation / inversion / leakage | fail / warn / pass / inconclusive / n/a / error | kernel verdict "
            "(system findings) | Pareto |\n|---:|---|---|---|---:|---|---|---|---|\n")
    lines = []
    for r in rows:
        ci = r.get("utility_ci")
        util = _f(r["utility"]) + (f" [{_f(ci[0])}, {_f(ci[1])}]" if ci else "")
        lines.append(f"| {r['rank']} | {r['label']} (`{r.get('fingerprint')}`) | {r['dataset']} / {r['cloud']} / "
                     f"{r['budget']} | {util} | {_f(r.get('plaintext'))} | {_f(r.get('key_advantage'))} / "
                     f"{_f(r.get('inversion_advantage'))} / {_f(r.get('leakage_advantage'))} | "
                     f"{r['fails']} / {r['warns']} / {r['passes']} / {r.get('inconclusive', 0)} / "
                     f"{r['not_applicable']} / {r['errors']} | {r['verdict']}"
                     + (f" ({r['system_verdict']})" if r.get("system_verdict") else "")
                     + f" | {'yes' if r['pareto'] else ''} |")
    return head + "\n".join(lines) + "\n"


def _is_sweep(d: str | Path) -> bool:
    p = Path(d)
    return (p.is_dir() and (p / "frontier.json").is_file() and not (p / "report.json").is_file()) or \
        (p.is_file() and p.name == "frontier.json")


def compare(dirs: Sequence[str | Path], *, out: Optional[str | Path] = None,
            labels: Optional[Sequence[str]] = None, title: Optional[str] = None) -> dict:
    """Read the audits in ``dirs``, rank them, and (with ``out``) write the table, JSON and plot."""
    if not dirs:
        raise ValueError("audit-compare needs at least one audit directory")
    if labels is not None and len(labels) != len(dirs):
        raise ValueError(f"{len(labels)} labels for {len(dirs)} audit directories")
    rows = []
    for i, d in enumerate(dirs):
        if _is_sweep(d):  # a sweep: its frontier rows (one per kernel, seeds pooled)
            for r in load_frontier(d)["rows"]:
                pre = f"{labels[i]}:" if labels else ""
                rows.append({**r, "label": pre + str(r.get("kernel")), "path": str(d)})
            continue
        rep = read_report(d)  # size, nesting and the type of every field read below are checked
        rows.append(row_of(rep, label=labels[i] if labels else None, path=str(d)))
    notes = []
    for key in ("dataset", "cloud", "budget"):
        vals = sorted({str(r[key]) for r in rows})
        if len(vals) > 1:
            notes.append(f"audits differ in {key} ({', '.join(vals)}): compare with care")
    ranked = rank_rows(rows)
    res = {"rows": ranked, "notes": notes, "table": format_table(ranked)}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "compare.json", {"rows": ranked, "notes": notes, **provenance.record()})
        atomic_write_text(out / "compare.md", res["table"] + "".join(f"\n* {n}" for n in notes) + "\n")
        ds = {r["dataset"] for r in rows}
        cl = {r["cloud"] for r in rows}
        privacy_utility_plot(ranked, out / "privacy_utility.png", panels=COMPARE_PANELS,
                             title=title or f"privacy-utility: {', '.join(sorted(map(str, ds)))}, cloud "
                                            f"{', '.join(sorted(map(str, cl)))}")
        res["plot"] = str(out / "privacy_utility.png")
    return res
