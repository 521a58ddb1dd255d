"""Statistics every privacy number in this toolkit is reported with.

Confidence intervals (Wilson, bootstrap), p-values (exact binomial against chance,
permutation), ROC summaries in the style of ML Privacy Meter / TF Privacy (AUC, TPR at a
fixed low FPR with the realized FPR and threshold recorded), and false-discovery control.

Example:
    >>> lo, hi = wilson_interval(50, 100)
    >>> round(lo, 3), round(hi, 3)
    (0.404, 0.596)
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import stats as _st

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def binomial_pvalue(successes: int, n: int, chance: float) -> float:
    """One-sided exact binomial p-value of doing at least this well by chance."""
    if n <= 0:
        return 1.0
    return float(_st.binomtest(int(successes), int(n), float(chance), alternative="greater").pvalue)


def bootstrap_ci(values: np.ndarray, statistic: Callable[[np.ndarray], float] = np.mean, *,
                 n_boot: int = 1000, rng: Optional[np.random.Generator] = None,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the first axis of ``values``."""
    values = np.asarray(values)
    if len(values) < 2:
        v = float(statistic(values)) if len(values) else float("nan")
        return (v, v)
    rng = rng or np.random.default_rng(0)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    boots = np.array([statistic(values[i]) for i in idx], dtype=float)
    a = (1 - level) / 2
    return (float(np.nanquantile(boots, a)), float(np.nanquantile(boots, 1 - a)))


def permutation_pvalue(observed: float, null: Sequence[float], *, greater: bool = True) -> float:
    """Permutation p-value with the +1 correction: (1 + #{null >= observed}) / (1 + n)."""
    null = np.asarray(null, dtype=float)
    hits = np.sum(null >= observed) if greater else np.sum(null <= observed)
    return float((1 + hits) / (1 + len(null)))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U), ties counted half."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative examples")
    ranks = _st.rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds descending; predict positive when score >= threshold."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    s, l = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps, fps = np.cumsum(l)[distinct], np.cumsum(~l)[distinct]
    tpr = np.r_[0.0, tps / max(1, l.sum())]
    fpr = np.r_[0.0, fps / max(1, (~l).sum())]
    thr = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thr


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, target_fpr: float) -> dict:
    """TPR at the largest threshold whose FPR does not exceed ``target_fpr``.

    Returns ``tpr``, the ``realized_fpr`` and the ``threshold`` used (recorded, as low-FPR
    numbers are meaningless without them).
    """
    fpr, tpr, thr = roc_curve(scores, labels)
    ok = np.flatnonzero(fpr <= target_fpr + 1e-12)
    i = ok[-1]
    return {"target_fpr": float(target_fpr), "tpr": float(tpr[i]), "realized_fpr": float(fpr[i]),
            "threshold": float(thr[i])}


def auc_with_ci(scores: np.ndarray, labels: np.ndarray, *, n_boot: int = 500,
                rng: Optional[np.random.Generator] = None) -> tuple[float, tuple[float, float]]:
    """AUC and a stratified percentile-bootstrap 95% interval."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    rng = rng or np.random.default_rng(0)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    auc = roc_auc(scores, labels)
    boots = []
    for _ in range(n_boot):
        i = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        boots.append(roc_auc(scores[i], labels[i]))
    return auc, (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)))


def fdr_adjust(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (scipy's ``false_discovery_control``)."""
    p = np.asarray(pvalues, float)
    if p.size == 0:
        return p
    return _st.false_discovery_control(p, method="bh")
