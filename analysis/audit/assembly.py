"""Assembling an audit's report: grade every finished job, draw the audit's figures, write the report.

Grading is :mod:`analysis.report` (declared thresholds, Benjamini-Hochberg across the
audit); the kernel's verdict and the system findings are :mod:`analysis.verdicts`.  The
result is ``OUT/report.json`` (the source of truth) and ``OUT/report.html``.

Example:
    >>> e = entry(Job("leak-equality", "leak-equality", {}), {"status": "n/a", "reason": "no cloud"})
    >>> e["verdict"], e["reason"], e["primary"]
    ('n/a', 'no cloud', None)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from analysis import report as _report
from analysis import verdicts as _verdicts
from analysis.audit.plan import Job
from analysis.figures import advantage_plot, key_recovery_plot, privacy_utility_plot
from analysis.report_html import render_html
from owsd.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


def entry(job: Job, st: dict) -> dict:
    """The report's entry of one job from its status (and result); graded later by :func:`assemble`."""
    e = {k: st.get(k) for k in ("job", "attack", "family", "finding", "role", "params_override", "threat_model",
                                "threat_model_text", "requirements", "seed", "victim_sizes", "declared_sizes",
                                "reduced")}
    e["job"] = job.id
    if st["status"] != "ok":
        e.update(verdict="n/a" if st["status"] == "n/a" else "error", reason=st.get("reason", ""),
                 metrics={}, chance={}, ci={}, p_values={}, primary=None)
        return e
    r = st["result"]
    e["verdict"] = "pass"  # graded in assemble()
    for k in ("params", "metrics", "chance", "ci", "p_values", "primary", "cost", "curves", "budget", "metric_specs"):
        e[k] = r.get(k)
    e["threat_model"] = r.get("threat_model", e["threat_model"])
    rel = f"attacks/{job.id}"
    files = {"result": f"{rel}/result.json"}
    for name in ("per_sample.csv", "raw.npz"):
        files[name.split(".")[0]] = f"{rel}/{name}"
    e["files"] = files
    e["figures"] = {k: f"{rel}/{v}" for k, v in (st.get("figures") or {}).items()}
    return e


def assemble(out: Path, jobs: Sequence[Job], done: dict, errors: dict, utility: Optional[dict],
             manifest: dict, notes: list, *, html: bool = True) -> dict:
    """Grade every finished job, draw the audit's figures, write ``report.json`` and ``report.html``."""
    entries = []
    for j in jobs:
        st = done.get(j.id) or errors.get(j.id)
        if st is None:
            continue
        e = entry(j, st)
        if st["status"] == "ok" and not (out / e["files"]["per_sample"]).exists():
            e["files"].pop("per_sample")
        if st["status"] == "ok" and not (out / e["files"]["raw"]).exists():
            e["files"].pop("raw")
        entries.append(e)
    graded = [e for e in entries if e["verdict"] not in ("n/a", "error")]
    for e, padj in zip(graded, _report.adjust_pvalues(graded)):
        g = _report.grade(e, p_adjusted={**{k: v for k, v in e.get("p_values", {}).items()}, **padj})
        e.update(verdict=g["verdict"], reasons=g["reasons"], graded=g["rows"], p_adjusted=padj,
                 advantage=_report.advantage(e))
        if (e.get("threat_model") or {}).get("knows_key"):
            e["reference"] = True  # an upper bound, not an attack: left out of the summary
            e["reasons"] = ["reference run: the attacker knows the key (upper bound)"] + e["reasons"]
    missing = [j.id for j in jobs if j.id not in done and j.id not in errors]
    ver = _verdicts.finalize(entries, budget=manifest["budget"], missing=missing)
    figdir = out / "figures"
    figures: dict[str, dict] = {}
    name = manifest["target"]["name"]
    try:
        p = key_recovery_plot(entries, figdir / "key_recovery.png", title=f"key recovery: {name}")
        if p:
            figures["key-recovery curves"] = {"path": "figures/key_recovery.png", "caption":
                                              "functional error vs known pairs / chosen queries (log-log; chance "
                                              "1.0, key recovered below 0.1) and ciphertext-only "
                                              "re-identification vs pool size (chance 1/K)"}
        p = advantage_plot(graded, figdir / "advantage.png", title=f"attacker advantage: {name}")
        if p:
            figures["attacker advantage"] = {"path": "figures/advantage.png", "caption":
                                             "(metric - chance) / (perfect - chance) of each attack's primary "
                                             "metric, clipped to [0, 1]; colour = verdict"}
        summ = _report.summarize(entries)
        u = _report.headline_utility(utility)
        if u is not None:
            k = max(utility["accuracy"]["cloud_only"], key=int)
            privacy_utility_plot([{"label": name, "utility": u, "privacy": summ["max_reconstruction_advantage"],
                                   "utility_ci": utility["accuracy_ci95"]["cloud_only"][k],
                                   "verdict": ver["kernel_verdict"]["verdict"],
                                   "baseline": utility["accuracy"]["plaintext"],
                                   "chance": utility["chance"]}],
                                 figdir / "privacy_utility.png", title=f"privacy-utility: {name}")
            figures["privacy-utility"] = {"path": "figures/privacy_utility.png", "caption":
                                          f"cloud-only internal-model accuracy (top-{k}) vs the largest key-"
                                          "estimation/inversion advantage; compare kernels with "
                                          "`owsd audit-compare`"}
    except Exception as exc:  # figures must never sink an audit
        log.warning("audit figures skipped: %s", exc)
        notes.append(f"some figures were skipped: {exc}")
    for e in entries:
        for fname, path in (e.get("figures") or {}).items():
            figures[f"{e['job']}: {fname}"] = {"path": path, "caption": e.get("threat_model_text", "")}
    if (out / "utility" / "utility.png").exists():
        figures["utility"] = {"path": "utility/utility.png",
                              "caption": "internal-model accuracy vs cloud output size (the scheme's utility)"}
    if missing:
        notes.append(f"not run yet: {missing}")
    rep = _report.build_report(manifest=manifest, entries=entries, utility=utility, figures=figures, notes=notes,
                               verdicts=ver)
    atomic_write_json(out / "report.json", rep)
    if html:
        atomic_write_text(out / "report.html", render_html(rep))
    log.info("wrote %s", out / "report.json")
    return rep
