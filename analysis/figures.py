"""Figures of audits: privacy-utility plot, key-recovery curves, attacker advantage per attack.

Plots read report dicts (``report.json``) or result dicts (``result.json``), never live
objects, so they can be redrawn from a run directory.  PNGs are written atomically.
The attack families' own figure helpers (reconstruction grids, ROC curves) are called
through :func:`attack_figures`, which skips (with a logged note) any helper that is absent.

Example:
    >>> import tempfile, os
    >>> pts = [{"label": "a", "utility": 0.8, "privacy": 0.1, "verdict": "pass"},
    ...        {"label": "b", "utility": 0.9, "privacy": 0.9, "verdict": "fail"}]
    >>> with tempfile.TemporaryDirectory() as d:
    ...     os.path.getsize(privacy_utility_plot(pts, os.path.join(d, "pu.png"))) > 0
    True
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from owsd.io import atomic_write_bytes

log = logging.getLogger(__name__)

VERDICT_COLORS = {"pass": "#2e7d32", "warn": "#d98b00", "fail": "#c62828", "inconclusive": "#5c6bc0", "n/a": "#7b8794",
                  "error": "#6a1b9a"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path, dpi: int = 100) -> Path:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def privacy_utility_plot(points: Sequence[dict], path: str | Path, *, title: Optional[str] = None,
                         xlabel: str = "utility: internal-model accuracy from the cloud's output",
                         panels: Sequence[tuple[str, str]] = (
                             ("privacy", "max attacker advantage (key estimation, inversion)"),)) -> Path:
    """Scatter of kernels: utility (x, higher is better) against attacker advantage (y, lower is better).

    Each point: ``label``, ``utility``, one value per panel key (``privacy`` by default: the
    advantage), optional ``utility_ci`` ``(lo, hi)``, ``verdict`` (colours the marker),
    ``baseline`` (a plaintext accuracy, drawn as a vertical line) and ``chance``.  ``panels``
    lists ``(point key, y label)``, one subplot each.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels) ** 0.8, 4.4), squeeze=False)
    for ax, (key, ylabel) in zip(axes[0], panels):
        for i, p in enumerate(points):
            x, y = p.get("utility"), p.get(key)
            if x is None or y is None:
                log.info("privacy-utility plot: %s has no %s; left out", p.get("label"),
                         "utility" if x is None else key)
                continue
            color = VERDICT_COLORS.get(p.get("verdict", "pass"), "k")
            xerr = None
            if p.get("utility_ci"):
                lo, hi = p["utility_ci"]
                xerr = [[max(0.0, x - lo)], [max(0.0, hi - x)]]
            ax.errorbar([x], [y], xerr=xerr, fmt="o", ms=9, color=color, capsize=3, mec="k")
            dy = (8, -13)[i % 2]
            ax.annotate(p.get("label", "?"), (x, y), textcoords="offset points", xytext=(7, dy), fontsize=8)
        base = [p["baseline"] for p in points if p.get("baseline") is not None]
        if base:
            ax.axvline(float(np.mean(base)), color="k", lw=0.8, ls=":", label=f"plaintext model ({np.mean(base):.2f})")
        chance = [p["chance"] for p in points if p.get("chance") is not None]
        if chance:
            ax.axvline(float(np.mean(chance)), color="r", lw=0.8, ls="-.", label=f"chance ({np.mean(chance):.2f})")
        for v, c in VERDICT_COLORS.items():
            if any(p.get("verdict") == v for p in points):
                ax.plot([], [], "o", color=c, mec="k", label=f"audit verdict: {v}")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(-0.05, 1.1)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.text(0.99, 0.01, "better: right and low", transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
                color="#555")
        ax.legend(fontsize=7, loc="center left")
        ax.grid(alpha=0.3)
    fig.suptitle(title or "privacy-utility trade-off of audited kernels", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def key_recovery_plot(entries: Sequence[dict], path: str | Path, *, title: Optional[str] = None) -> Optional[Path]:
    """Key-estimation results: functional error against known pairs / chosen queries (left)
    and re-identification accuracy against pool size (right).  ``None`` if nothing to plot."""
    fe: dict[str, list] = {}
    reid: list[tuple[str, list]] = []
    for e in entries:
        if e.get("family") != "key-estimation" or e.get("verdict") in ("n/a", "error"):
            continue
        m = e.get("metrics", {})
        if "functional_error" in m:
            tm = e.get("threat_model", {})
            n = tm.get("known_pairs") or tm.get("chosen_queries") or 0
            lo, hi = e.get("ci", {}).get("functional_error", [m["functional_error"]] * 2)
            kind = "known pairs" if tm.get("known_pairs") else "chosen queries"
            fe.setdefault(f"{e['attack']} ({kind})", []).append(
                (n, m["functional_error"], lo, hi, e.get("chance", {}).get("functional_error_random_key")))
        curve = e.get("curves", {}).get("reidentification")
        if curve:
            reid.append((e["job"], curve))
    if not fe and not reid:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9.4, 3.8))
    ax = axes[0]
    for label, pts in fe.items():
        pts = sorted(pts)
        n = np.array([p[0] for p in pts], float)
        y = np.array([p[1] for p in pts])
        err = np.array([[max(0.0, p[1] - p[2]), max(0.0, p[3] - p[1])] for p in pts]).T
        ax.errorbar(np.maximum(n, 1), np.maximum(y, 1e-6), yerr=err, fmt="o-", capsize=3, label=label)
        rk = [p[4] for p in pts if p[4] is not None]
        if rk:
            ax.axhline(float(np.mean(rk)), color="grey", lw=0.8, ls="--")
    if fe:
        ax.axhline(1.0, color="r", lw=0.9, ls="-.", label="chance (constant guess)")
        ax.axhline(0.1, color="k", lw=0.9, ls=":", label="key recovered (0.1)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("known pairs / chosen queries")
        ax.set_ylabel("functional error (held-out)")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no functional-error results", ha="center", transform=ax.transAxes)
    ax.set_title("key estimation", fontsize=9)
    ax = axes[1]
    for label, curve in reid:
        k = np.array([c["pool"] for c in curve], float)
        acc = np.array([c["accuracy"] for c in curve])
        err = np.array([[max(0.0, a - c["ci_low"]), max(0.0, c["ci_high"] - a)] for a, c in zip(acc, curve)]).T
        ax.errorbar(k, acc, yerr=err, fmt="s-", capsize=3, label=label)
        ax.plot(k, [c["chance"] for c in curve], "r-.", lw=0.9, label="chance 1/K")
    if reid:
        ax.axhline(0.20, color="k", lw=0.8, ls=":", label="20% (NeuraCrypt: bad)")
        ax.axhline(0.05, color="g", lw=0.8, ls=":", label="5% (NeuraCrypt: good)")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("pool size K")
        ax.set_ylabel("re-identification accuracy")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no re-identification results", ha="center", transform=ax.transAxes)
    ax.set_title("ciphertext-only re-identification", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def advantage_plot(entries: Sequence[dict], path: str | Path, *, title: Optional[str] = None) -> Optional[Path]:
    """Horizontal bars: normalized attacker advantage of each graded attack, coloured by verdict."""
    rows = [e for e in entries if e.get("advantage") is not None]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 0.28 * len(rows) + 1.2))
    y = np.arange(len(rows))
    ax.barh(y, [e["advantage"] for e in rows], color=[VERDICT_COLORS.get(e["verdict"], "k") for e in rows])
    ax.set_yticks(y, [f"{e['job']} ({e['primary']})" for e in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("attacker advantage: 0 = chance, 1 = perfect (primary metric)", fontsize=8)
    ax.set_title(title or "attacker advantage per attack (colour: verdict)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _helper(module: str, name: str):
    """An attack family's figure helper, or ``None`` (logged) if it does not exist (yet)."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        log.info("figure helper %s.%s unavailable (%s); figure skipped", module, name, exc)
        return None


def attack_figures(result: Any, out_dir: str | Path) -> dict[str, str]:
    """Figures of one live :class:`~attacks.base.AttackResult` into ``out_dir``.

    Reconstruction grids (``attacks.inversion.save_grid``) for results whose raw arrays hold
    grid images, log-log ROC curves (``attacks.leakage.save_roc``) for results with an ROC
    curve.  Returns ``{figure name: file name}``; helpers that are absent or fail are skipped
    with a logged note, never failing the audit.
    """
    out_dir = Path(out_dir)
    made: dict[str, str] = {}
    raw = getattr(result, "raw", {}) or {}
    if "grid_originals" in raw or "reconstructions" in raw:
        fn = _helper("attacks.inversion", "save_grid")
        if fn is not None:
            try:
                fn(result, out_dir / "grid.png")
                made["reconstruction grid"] = "grid.png"
            except Exception as exc:  # a figure must never sink an audit
                log.warning("%s: reconstruction grid skipped (%s)", result.attack, exc)
    roc = (getattr(result, "curves", {}) or {}).get("roc")
    if isinstance(roc, dict) and "fpr" in roc:
        fn = _helper("attacks.leakage", "save_roc")
        if fn is not None:
            try:
                fn(result, out_dir / "roc.png")
                made["ROC (log-log)"] = "roc.png"
            except Exception as exc:
                log.warning("%s: ROC figure skipped (%s)", result.attack, exc)
    return made
