"""Statistics the leakage tests need beyond :mod:`analysis.stats` (which they build on).

* :func:`hungarian_accuracy`: clustering accuracy after the best cluster-to-class matching;
* :func:`mantel_test`: Spearman correlation of two distance matrices, permutation p-value
  (objects permuted jointly in rows and columns) and an object-bootstrap interval;
* :func:`auc_test`: AUC, stratified-bootstrap interval and a one-sided Mann-Whitney p-value;
* :func:`tpr_at_fpr_ci`: TPR at a fixed FPR with its stratified-bootstrap interval;
* :func:`knn_mi_known_case`: the bias of scikit-learn's kNN mutual-information estimator on
  bivariate Gaussians of known mutual information, at a given sample size.

Example:
    >>> import numpy as np
    >>> hungarian_accuracy(np.array([1, 1, 0, 0]), np.array([0, 0, 1, 1]))
    1.0
    >>> d = np.abs(np.subtract.outer(np.arange(8.0), np.arange(8.0)))
    >>> r = mantel_test(d, d ** 2, n_perm=99, n_boot=0, rng=np.random.default_rng(0))
    >>> round(r["r"], 3), r["p_value"] <= 0.05
    (1.0, True)
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import stats as _st
from scipy.optimize import linear_sum_assignment

from analysis.stats import auc_with_ci, permutation_pvalue, roc_auc, tpr_at_fpr


def hungarian_accuracy(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Fraction correct after mapping clusters to classes one-to-one (Hungarian matching)."""
    c, y = np.asarray(clusters), np.asarray(labels)
    cu, ci = np.unique(c, return_inverse=True)
    yu, yi = np.unique(y, return_inverse=True)
    m = np.zeros((len(cu), len(yu)), np.int64)
    np.add.at(m, (ci, yi), 1)
    r, k = linear_sum_assignment(-m)
    return float(m[r, k].sum() / max(1, len(y)))


def _upper(m: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(len(m), 1)
    return m[i, j]


def mantel_test(a: np.ndarray, b: np.ndarray, *, n_perm: int = 999, n_boot: int = 200,
                rng: Optional[np.random.Generator] = None) -> dict:
    """Spearman Mantel test between square distance matrices ``a`` and ``b``.

    Returns ``r`` (Spearman over the upper triangles), ``p_value`` (one-sided, greater,
    permutation of ``b``'s objects), ``ci`` (bootstrap over objects, pairs of copies of one
    object dropped; ``(r, r)`` when ``n_boot`` is 0) and ``null_mean``.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"mantel_test: need two square matrices of one shape, got {a.shape} and {b.shape}")
    n = len(a)
    rng = rng or np.random.default_rng(0)
    iu = np.triu_indices(n, 1)
    ra = np.zeros_like(a)
    ra[iu] = _st.rankdata(a[iu])
    ra = ra + ra.T
    rb = np.zeros_like(b)
    rb[iu] = _st.rankdata(b[iu])
    rb = rb + rb.T
    xa = ra[iu] - ra[iu].mean()
    sa = np.sqrt((xa ** 2).sum())

    def corr_b(mb: np.ndarray) -> float:
        xb = mb[iu] - mb[iu].mean()
        den = sa * np.sqrt((xb ** 2).sum())
        return float((xa * xb).sum() / den) if den > 0 else 0.0

    r = corr_b(rb)
    null = np.empty(n_perm)
    for t in range(n_perm):
        p = rng.permutation(n)
        null[t] = corr_b(rb[np.ix_(p, p)])
    boots = []
    i, j = iu
    for _ in range(n_boot):
        s = rng.integers(0, n, n)
        keep = s[i] != s[j]
        va, vb = a[s[i[keep]], s[j[keep]]], b[s[i[keep]], s[j[keep]]]
        boots.append(_st.spearmanr(va, vb).statistic)
    ci = (float(np.nanquantile(boots, 0.025)), float(np.nanquantile(boots, 0.975))) if boots else (r, r)
    return {"r": r, "p_value": permutation_pvalue(r, null), "ci": ci, "null_mean": float(null.mean()),
            "null_q95": float(np.quantile(null, 0.95))}


def auc_test(scores: np.ndarray, labels: np.ndarray, *, n_boot: int = 500,
             rng: Optional[np.random.Generator] = None) -> dict:
    """AUC (positives score higher), its bootstrap 95% interval and a Mann-Whitney p-value."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    auc, ci = auc_with_ci(scores, labels, n_boot=n_boot, rng=rng or np.random.default_rng(0))
    pos, neg = scores[labels], scores[~labels]
    if np.ptp(scores) == 0:
        p = 1.0
    else:
        p = float(_st.mannwhitneyu(pos, neg, alternative="greater").pvalue)
    return {"auc": auc, "ci": ci, "p_value": p}


def tpr_at_fpr_ci(scores: np.ndarray, labels: np.ndarray, target_fpr: float, *, n_boot: int = 200,
                  rng: Optional[np.random.Generator] = None) -> dict:
    """:func:`analysis.stats.tpr_at_fpr` plus a stratified-bootstrap 95% interval of the TPR."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    res = tpr_at_fpr(scores, labels, target_fpr)
    rng = rng or np.random.default_rng(0)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    boots = []
    for _ in range(n_boot):
        i = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        boots.append(tpr_at_fpr(scores[i], labels[i], target_fpr)["tpr"])
    res["ci"] = (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))) if boots else (
        res["tpr"], res["tpr"])
    return res


def knn_mi_known_case(n: int, *, rho: float = 0.6, n_neighbors: int = 3, repeats: int = 5,
                      random_state: int = 0) -> dict:
    """Bias of ``sklearn.feature_selection.mutual_info_regression`` at sample size ``n``.

    On bivariate Gaussians with correlation ``rho`` (true MI ``-log(1 - rho^2) / 2`` nats)
    and 0 (true MI 0), averaged over ``repeats`` seeded draws.
    """
    from sklearn.feature_selection import mutual_info_regression

    rng = np.random.default_rng(random_state)
    out = {"n": int(n), "rho": float(rho), "true_mi": float(-0.5 * np.log(1 - rho ** 2))}
    for name, r in (("independent", 0.0), ("correlated", rho)):
        est = []
        for _ in range(repeats):
            x = rng.normal(size=n)
            y = r * x + np.sqrt(1 - r ** 2) * rng.normal(size=n)
            est.append(float(mutual_info_regression(x[:, None], y, n_neighbors=n_neighbors,
                                                    random_state=random_state)[0]))
        truth = out["true_mi"] if r else 0.0
        out[f"{name}_estimate"] = float(np.mean(est))
        out[f"{name}_bias"] = float(np.mean(est) - truth)
    return out


__all__ = ["auc_test", "hungarian_accuracy", "knn_mi_known_case", "mantel_test", "roc_auc", "tpr_at_fpr_ci"]
