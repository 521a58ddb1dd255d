"""The privacy-utility frontier of a sweep: one row per kernel, its seeds pooled, the Pareto front marked.

Per kernel (and dataset), over its seeds:

* **privacy**, per attack family (key estimation, inversion, leakage; the kernel's findings
  only, reference runs and system findings left out as in the audit's summary): the
  strongest attack's normalized advantage in each seed's audit (0 = chance, 1 = perfect),
  its mean over seeds and a 95% Student-t interval over seeds (clipped to [0, 1]; none with
  one seed; wide with two: it says how far apart the seeds are), with the strongest job;
* **utility**: the cloud-only internal-model accuracy at the largest output size (the
  audit's headline), mean and 95% interval over seeds, beside the plaintext model's;
* ``privacy`` (one number): the worst family's mean advantage.  The Pareto front is taken
  on (utility up, privacy down), among the kernels that have both figures (the others are ranked
  after them, off the front), by :func:`analysis.ranking.rank_rows`, the ranking of
  ``owsd audit-compare``, which reads ``frontier.json`` too.

Written to ``frontier.json`` (source of truth), ``frontier.csv``, ``frontier.png`` and the
sweep's ``report.html``.

Example:
    >>> mean_ci([0.2, 0.4])[0]
    0.3
    >>> mean_ci([0.5]) == (0.5, None)
    True
"""

from __future__ import annotations

import csv
import html
import io
import logging
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy import stats

from analysis.figures import VERDICT_COLORS, _plt, _save
from analysis.ranking import rank_rows
from analysis.report_html import _CSS
from owsd import provenance
from owsd.io import atomic_write_json, atomic_write_text
from owsd.safejson import loads, read_text

log = logging.getLogger(__name__)

FRONTIER_FORMAT = "owsd-frontier"
FAMILIES = ("key-estimation", "inversion", "leakage")
#: order of a frontier row's kernel verdicts, the most severe first to name the row
VERDICT_SEVERITY = {"error": 4, "fail": 3, "warn": 2, "inconclusive": 1, "pass": 0}


def mean_ci(values: Sequence[float], *, lo: float = 0.0, hi: float = 1.0) -> tuple[float, Optional[list[float]]]:
    """Mean and 95% Student-t interval over ``values`` (clipped to ``[lo, hi]``; ``None`` below two values)."""

    v = np.asarray([float(x) for x in values], dtype=float)
    m = float(round(v.mean(), 12))
    if len(v) < 2:
        return m, None
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, [max(lo, m - half), min(hi, m + half)]


def _strongest(report: dict, family: str) -> tuple[Optional[float], Optional[str]]:
    best, job = None, None
    for e in report.get("attacks", []):
        if e.get("family") != family or e.get("reference") or e.get("finding") == "system":
            continue
        a = e.get("advantage")
        if a is not None and (best is None or a > best):
            best, job = float(a), e.get("job")
    return best, job


def _family_errors(report: dict, family: str) -> list[str]:
    """The kernel-finding jobs of ``family`` that errored in one audit (they give no figure)."""
    return [e.get("job") for e in report.get("attacks", [])
            if e.get("family") == family and e.get("verdict") == "error" and not e.get("reference")
            and e.get("finding") != "system"]


def kernel_row(kernel: str, dataset: str, seeds: Sequence[int], reports: Sequence[dict],
               folders: Sequence[str]) -> dict:
    """One frontier row from the audits (one per seed) of one kernel on one dataset."""
    r0 = reports[0]
    row: dict = {"label": kernel, "kernel": kernel, "dataset": dataset, "cloud": r0.get("cloud"),
                 "budget": r0.get("budget"), "seeds": list(seeds), "audits": list(folders),
                 "spec": (r0.get("target") or {}).get("spec"),
                 "fingerprints": [(r.get("target") or {}).get("fingerprint") for r in reports]}
    row["fingerprint"] = ",".join(f or "?" for f in row["fingerprints"])
    fams: dict[str, dict] = {}
    for f in FAMILIES:
        vals = [_strongest(r, f) for r in reports]
        got = [v for v, _ in vals if v is not None]
        errors = sorted({f"seed {s}: {j}" for s, r in zip(seeds, reports) for j in _family_errors(r, f)})
        if not got:
            fams[f] = {"mean": None, "ci95": None, "per_seed": [None] * len(reports), "strongest": [None] * len(reports),
                       "errors": errors}
            continue
        m, ci = mean_ci(got)
        fams[f] = {"mean": m, "ci95": ci, "per_seed": [v for v, _ in vals], "strongest": [j for _, j in vals],
                   "n_seeds": len(got), "errors": errors}
    row["families"] = fams
    # a family figure is the strongest of the attacks that ran: the ones that errored are listed, not hidden
    row["incomplete"] = sorted({f"{f}: {x}" for f in FAMILIES for x in fams[f]["errors"]})
    row["key_advantage"] = fams["key-estimation"]["mean"]
    row["inversion_advantage"] = fams["inversion"]["mean"]
    row["leakage_advantage"] = fams["leakage"]["mean"]
    means = [fams[f]["mean"] for f in FAMILIES if fams[f]["mean"] is not None]
    row["privacy"] = max(means) if means else None
    utils = [r.get("utility_headline") for r in reports]
    got = [u for u in utils if u is not None]
    row["utility_per_seed"] = utils
    row["utility"], row["utility_ci"] = mean_ci(got) if got else (None, None)
    plain = [((r.get("utility") or {}).get("accuracy") or {}).get("plaintext") for r in reports]
    plain = [p for p in plain if isinstance(p, (int, float))]
    row["plaintext"] = row["baseline"] = float(np.mean(plain)) if plain else None
    row["utility_gap"] = (row["plaintext"] - row["utility"]) if None not in (row["plaintext"], row["utility"]) \
        else None
    ch = [(r.get("utility") or {}).get("chance") for r in reports]
    row["chance"] = next((c for c in ch if c is not None), None)
    counts = [(r.get("summary") or {}).get("counts") or {} for r in reports]
    for name, key in (("fails", "fail"), ("warns", "warn"), ("passes", "pass"), ("inconclusive", "inconclusive"),
                      ("not_applicable", "n/a"), ("errors", "error")):
        row[name] = sum(int(c.get(key, 0)) for c in counts)
    verdicts = [(r.get("kernel_verdict") or {}).get("verdict") or (r.get("summary") or {}).get("overall")
                for r in reports]
    row["verdicts"] = verdicts
    row["verdict"] = max((v for v in verdicts if v), key=lambda v: VERDICT_SEVERITY.get(v, 0), default=None)
    row["system_verdict"] = None
    return row


def frontier_rows(cells: Sequence[tuple], reports: Sequence[dict]) -> list[dict]:
    """Rows of every kernel (x dataset) of a sweep, ranked: ``cells`` are (AuditCell, folder) pairs."""
    groups: dict[tuple, list] = {}
    for (cell, folder), rep in zip(cells, reports):
        groups.setdefault((cell.kernel.name, cell.dataset), []).append((cell.seed, rep, Path(folder).name))
    rows = []
    for (kernel, dataset), items in groups.items():
        items.sort(key=lambda t: t[0])
        rows.append(kernel_row(kernel, dataset, [s for s, _, _ in items], [r for _, r, _ in items],
                               [f for _, _, f in items]))
    return rank_frontier(rows)


def rank_frontier(rows: Sequence[dict]) -> list[dict]:
    """Rows ranked by :func:`analysis.ranking.rank_rows`; those without a utility or privacy figure
    after the others and never on the front."""
    complete = [r["utility"] is not None and r["privacy"] is not None for r in rows]
    ranked = rank_rows([r for r, c in zip(rows, complete) if c])
    rest = rank_rows([r for r, c in zip(rows, complete) if not c])
    for r in rest:
        r["rank"], r["pareto"] = r["rank"] + len(ranked), False
    return ranked + rest


CSV_COLUMNS = ("rank", "pareto", "kernel", "dataset", "cloud", "budget", "seeds", "utility", "utility_lo",
               "utility_hi", "plaintext", "utility_gap", *(f"{f}_{k}" for f in FAMILIES for k in
                                                          ("mean", "lo", "hi", "strongest")),
               "privacy", "verdict", "fails", "warns", "passes", "inconclusive", "not_applicable", "errors",
               "incomplete")


def to_csv(rows: Sequence[dict]) -> str:
    """The frontier as CSV, one line per kernel (empty cells where a value is missing)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        ci = r.get("utility_ci") or [None, None]
        vals = [r["rank"], r["pareto"], r["kernel"], r["dataset"], r["cloud"], r["budget"],
                " ".join(map(str, r["seeds"])), r["utility"], ci[0], ci[1], r["plaintext"], r["utility_gap"]]
        for f in FAMILIES:
            d = r["families"][f]
            lo, hi = d["ci95"] or (None, None)
            vals += [d["mean"], lo, hi, " ".join(sorted({j for j in d["strongest"] if j}))]
        vals += [r["privacy"], r["verdict"], r["fails"], r["warns"], r["passes"], r["inconclusive"],
                 r["not_applicable"], r["errors"], "; ".join(r.get("incomplete") or ())]
        w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in vals])
    return buf.getvalue()


def frontier_plot(rows: Sequence[dict], path: str | Path, *, title: str = "privacy-utility frontier") -> Path:
    """One panel per family: advantage (mean, 95% CI over seeds) against utility; the Pareto front joined."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(FAMILIES) + 1, figsize=(19, 4.6), squeeze=False)
    panels = [(f, f"{f}: strongest attack's advantage") for f in FAMILIES] + [("privacy", "worst family's advantage")]
    for ax, (key, ylabel) in zip(axes[0], panels):
        pts = []
        for r in rows:
            d = r["families"][key] if key in FAMILIES else {"mean": r["privacy"], "ci95": None}
            x, y = r.get("utility"), d["mean"]
            if x is None or y is None:
                continue
            xe = [[x - r["utility_ci"][0]], [r["utility_ci"][1] - x]] if r.get("utility_ci") else None
            ye = [[y - d["ci95"][0]], [d["ci95"][1] - y]] if d.get("ci95") else None
            ax.errorbar([x], [y], xerr=xe, yerr=ye, fmt="o", ms=8 if r["pareto"] else 6, capsize=2, mec="k",
                        color=VERDICT_COLORS.get(r.get("verdict") or "pass", "k"), alpha=1.0 if r["pareto"] else 0.6)
            ax.annotate(r["kernel"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7)
            if r["pareto"]:
                pts.append((x, r["privacy"] if key == "privacy" else y))
        if key == "privacy" and pts:
            pts.sort()
            ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", color="k", lw=1, ls="--",
                    label="Pareto front")
        base = [r["plaintext"] for r in rows if r.get("plaintext") is not None]
        if base:
            ax.axvline(float(np.mean(base)), color="k", lw=0.8, ls=":", label=f"plaintext ({np.mean(base):.2f})")
        ax.axhline(0.0, color="#888", lw=0.6)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("utility: cloud-only accuracy (mean over seeds)", fontsize=8)
        ax.set_ylabel(ylabel + " (0 = chance)", fontsize=8)
        ax.grid(alpha=0.3)
        if ax is axes[0][-1]:
            for v, c in VERDICT_COLORS.items():
                if any(r.get("verdict") == v for r in rows):
                    ax.plot([], [], "o", color=c, mec="k", label=f"kernel verdict: {v}")
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title + " (larger markers: Pareto front; better: right and low)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _n(v: Optional[float]) -> str:
    return "&ndash;" if v is None else f"{v:.3f}"


def frontier_html(rows: Sequence[dict], *, figure: Optional[str] = "frontier.png") -> str:
    """The frontier section of the sweep's ``report.html`` (a table and the figure)."""
    e = lambda x: html.escape(str(x), quote=True)  # noqa: E731
    head = ("<tr><th>rank</th><th>kernel</th><th>Pareto</th><th>utility [95% CI over seeds]</th><th>plaintext</th>"
            + "".join(f"<th>{f} advantage [95% CI]</th>" for f in FAMILIES)
            + "<th>verdicts (per seed)</th><th>audits</th></tr>")
    body = []
    for r in rows:
        ci = r.get("utility_ci")
        cells = [str(r["rank"]), f"<code>{e(r['kernel'])}</code>", "yes" if r["pareto"] else "",
                 _n(r["utility"]) + (f" [{_n(ci[0])}, {_n(ci[1])}]" if ci else ""), _n(r["plaintext"])]
        for f in FAMILIES:
            d = r["families"][f]
            cells.append(_n(d["mean"]) + (f" [{_n(d['ci95'][0])}, {_n(d['ci95'][1])}]" if d["ci95"] else "")
                         + (f"<br><small>{e(', '.join(sorted({j for j in d['strongest'] if j})))}</small>"
                            if any(d["strongest"]) else ""))
        cells.append(e(", ".join(str(v) for v in r["verdicts"]))
                     + (f"<br><small>incomplete: {e('; '.join(r['incomplete']))}</small>" if r.get("incomplete") else ""))
        cells.append(" ".join(f'<a href="audits/{e(a)}/report.html">{e(a)}</a>' for a in r["audits"]))
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    img = f'<p><img src="{e(figure)}" alt="privacy-utility frontier" style="max-width:100%"></p>' if figure else ""
    return (f"<h2>Privacy-utility frontier</h2><p>Per kernel, over its seeds: the strongest attack's normalized "
            f"advantage per family (0 = chance, 1 = perfect) and the cloud-only accuracy. Pareto front on "
            f"(utility up, worst family's advantage down).</p><table>{head}{''.join(body)}</table>{img}")


def write_frontier(out: Path, sweep: dict, cells: Sequence[tuple], reports: Sequence[dict]) -> dict:
    """Write ``frontier.json``, ``frontier.csv``, ``frontier.png`` and ``report.html`` of a sweep; return the JSON."""
    rows = frontier_rows(cells, reports)
    notes = []
    if any(len(r["seeds"]) < 2 for r in rows):
        notes.append("kernels with one seed have no interval over seeds")
    doc = {"format": FRONTIER_FORMAT, "version": 1, "settings": sweep["settings"], "families": list(FAMILIES),
           "rows": rows, "notes": notes, **provenance.record()}
    atomic_write_json(out / "frontier.json", doc)
    atomic_write_text(out / "frontier.csv", to_csv(rows))
    fig = None
    try:
        frontier_plot(rows, out / "frontier.png", title=f"privacy-utility frontier ({sweep['settings']['budget']})")
        fig = "frontier.png"
    except Exception as exc:  # a figure must never sink a sweep
        log.warning("frontier figure skipped: %s", exc)
    s = sweep["settings"]
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>OWSD sweep</title><style>{_CSS}</style>"
            f"</head><body><h1>OWSD sweep: {len(rows)} kernels</h1><div class=sub>datasets "
            f"{html.escape(', '.join(s['datasets']))} &middot; seeds {html.escape(str(s['seeds']))} &middot; cloud "
            f"{html.escape(str(s['cloud']))} &middot; budget {html.escape(s['budget'])}</div>"
            f"{frontier_html(rows, figure=fig)}"
            + "".join(f"<p class=sub>note: {html.escape(n)}</p>" for n in notes)
            + "<p class=sub>frontier.json is the source of truth; each audit's own report is linked.</p></body></html>")
    atomic_write_text(out / "report.html", page)
    return doc


MAX_FRONTIER_BYTES = 64 << 20


def load_frontier(path: str | Path) -> dict:
    """Read a ``frontier.json`` (or the sweep folder holding one); a clear ``ValueError`` if it is not one."""
    path = Path(path)
    path = path / "frontier.json" if path.is_dir() else path
    doc = loads(read_text(path, max_bytes=MAX_FRONTIER_BYTES, what="frontier file"), source=str(path))
    if not isinstance(doc, dict) or doc.get("format") != FRONTIER_FORMAT or not isinstance(doc.get("rows"), list):
        raise ValueError(f"{path}: not an owsd sweep frontier")
    for i, r in enumerate(doc["rows"]):
        if not isinstance(r, dict) or not isinstance(r.get("kernel"), str) or not isinstance(r.get("families"), dict):
            raise ValueError(f"{path}: row {i} is malformed")
    return doc
