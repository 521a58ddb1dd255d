"""Scorers of the leakage outputs: every metric with its chance level and a CI or p-value.

Label probes use the shared :class:`attacks.base.LabelPredictions` scorer (accuracy,
majority-class chance, Wilson interval, exact binomial p-value).  The others:

=====================  ==========================================  ==========================
output                 metrics (primary first)                     chance / interval / p
=====================  ==========================================  ==========================
ClusterAssignments     hungarian_accuracy, nmi                     permutation of cluster ids
PairwiseDistances      spearman (vs originals), spearman_embedding 0; object bootstrap; Mantel
AttackerFeatures       mi_label, mi_embedding (nats)               permutation null mean; perm. p
Linker                 link_accuracy / resend_auc, exact_match     1/n, 0.5, 0; Wilson/bootstrap
Distinguisher          auc                                         0.5; bootstrap; Mann-Whitney
MembershipGame         auc, tpr_at_fpr_{0.01,0.001,0}              0.5, FPR; bootstrap; M-W
=====================  ==========================================  ==========================

Example:
    >>> from attacks.base import scorer_for
    >>> import numpy as np
    >>> scorer_for(ClusterAssignments(np.zeros(2, int), np.arange(2))).__name__
    'score_clusters'
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from owsd.stats import binomial_pvalue, bootstrap_ci, permutation_pvalue, roc_curve, wilson_interval
from attacks.base import Score, register_scorer
from attacks.metrics import declare, higher
from attacks.scoring import ScoringConfig
from attacks.leakage.features import pairwise_sq_dists
from attacks.leakage.groundtruth import (InternalOracle, augment, challenge_images, internal_model_for,
                                         other_key_channel, traffic, uniform_noise_images)
from attacks.leakage.outputs import (AttackerFeatures, ClusterAssignments, Distinguisher, Linker,
                                     MembershipGame, PairwiseDistances)
from attacks.leakage.stats import (KnnMutualInfo, auc_test, hungarian_accuracy, knn_mi_known_case, mantel_test,
                                   tpr_at_fpr_ci)
from attacks.victim import AttackerView, Victim

log = logging.getLogger(__name__)

#: the metrics these scorers produce: which way helps the attacker, and a perfect attack's value
declare(auc=higher(1.0), hungarian_accuracy=higher(1.0), nmi=higher(1.0), spearman=higher(1.0),
        resend_auc=higher(1.0), link_accuracy=higher(1.0))

EXACT_TOL = 1e-6  # squared distance below one grey level in one pixel ((1/255)^2 = 1.5e-5)


def _indices(idx: np.ndarray, n: int) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    if idx.ndim != 1 or (len(idx) and (idx.min() < 0 or idx.max() >= n)):
        raise ValueError(f"target indices must be a 1-d array of indices into {n} targets")
    return idx


# --- clustering --------------------------------------------------------------------------
@register_scorer(ClusterAssignments)
def score_clusters(out: ClusterAssignments, victim: Victim, view: AttackerView,
                   scoring: ScoringConfig) -> Score:
    idx = _indices(out.target_indices, len(victim.private))
    c = np.asarray(out.clusters)
    if c.shape != idx.shape:
        raise ValueError(f"{len(c)} cluster ids for {len(idx)} targets")
    y = victim.private.labels[idx]
    acc, nmi = hungarian_accuracy(c, y), float(normalized_mutual_info_score(y, c))
    rng = np.random.default_rng(0)
    null_acc, null_nmi = np.empty(scoring.cluster_permutations), np.empty(scoring.cluster_permutations)
    for t in range(scoring.cluster_permutations):
        cp = rng.permutation(c)
        null_acc[t], null_nmi[t] = hungarian_accuracy(cp, y), normalized_mutual_info_score(y, cp)
    # Hungarian accuracy maximizes over matchings, so a percentile bootstrap is biased upward:
    # the interval is Wilson's for the matching found on the full data (a proportion); NMI's
    # is the basic (bias-reversing) bootstrap interval.
    k = int(round(acc * len(idx)))
    ci_acc = wilson_interval(k, len(idx))
    pair = np.stack([c, y], 1)
    q_lo, q_hi = bootstrap_ci(pair, lambda v: normalized_mutual_info_score(v[:, 1], v[:, 0]),
                              n_boot=scoring.nmi_bootstrap, rng=rng)
    ci_nmi = (max(0.0, 2 * nmi - q_hi), min(1.0, 2 * nmi - q_lo))
    return Score(metrics={"hungarian_accuracy": acc, "nmi": nmi, "n": len(idx)},
                 chance={"hungarian_accuracy": float(null_acc.mean()), "nmi": float(null_nmi.mean())},
                 ci={"hungarian_accuracy": ci_acc, "nmi": ci_nmi},
                 p_values={"hungarian_accuracy": permutation_pvalue(acc, null_acc),
                           "nmi": permutation_pvalue(nmi, null_nmi)},
                 per_sample={"index": idx, "cluster": c, "label": y},
                 curves={"null_q95": {"hungarian_accuracy": float(np.quantile(null_acc, 0.95)),
                                      "nmi": float(np.quantile(null_nmi, 0.95))}},
                 primary="hungarian_accuracy")


# --- distance preservation -----------------------------------------------------------------
@register_scorer(PairwiseDistances)
def score_distances(out: PairwiseDistances, victim: Victim, view: AttackerView,
                    scoring: ScoringConfig) -> Score:
    idx = _indices(out.target_indices, len(victim.private))
    d = np.asarray(out.distances, float)
    if d.shape != (len(idx), len(idx)):
        raise ValueError(f"distances: expected ({len(idx)}, {len(idx)}), got {d.shape}")
    rng = np.random.default_rng(0)
    orig = np.sqrt(pairwise_sq_dists(victim.private.images[idx]))
    res = mantel_test(orig, d, n_perm=scoring.mantel_permutations, n_boot=scoring.mantel_bootstrap, rng=rng)
    metrics, ci, p = {"spearman": res["r"], "n": len(idx)}, {"spearman": res["ci"]}, {"spearman": res["p_value"]}
    chance = {"spearman": 0.0}
    curves = {"mantel_null": {"spearman": {"mean": res["null_mean"], "q95": res["null_q95"]}}}
    if victim.has_embeddings:
        emb = np.sqrt(pairwise_sq_dists(victim.private_embeddings()[idx]))
        r2 = mantel_test(emb, d, n_perm=scoring.mantel_permutations, n_boot=scoring.mantel_bootstrap, rng=rng)
        metrics["spearman_embedding"], ci["spearman_embedding"] = r2["r"], r2["ci"]
        p["spearman_embedding"], chance["spearman_embedding"] = r2["p_value"], 0.0
        curves["mantel_null"]["spearman_embedding"] = {"mean": r2["null_mean"], "q95": r2["null_q95"]}
    iu = np.triu_indices(len(idx), 1)
    per = {"i": idx[iu[0]], "j": idx[iu[1]], "d_original": orig[iu], "d_attacker": d[iu]}
    return Score(metrics=metrics, chance=chance, ci=ci, p_values=p, per_sample=per, curves=curves,
                 primary="spearman")


# --- mutual information --------------------------------------------------------------------
def _reference_coordinates(victim: Victim, idx: np.ndarray, k: int) -> np.ndarray:
    """The victim's embedding coordinates, or (no embedding) the top-``k`` PCA scores of originals."""
    if victim.has_embeddings:
        return np.asarray(victim.private_embeddings())[idx, :k]
    x = victim.private.flat()
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return (x @ vt[:k].T)[idx]


@register_scorer(AttackerFeatures)
def score_mutual_info(out: AttackerFeatures, victim: Victim, view: AttackerView,
                      scoring: ScoringConfig) -> Score:
    idx = _indices(out.target_indices, len(victim.private))
    f = np.asarray(out.features, float)
    if f.ndim != 2 or len(f) != len(idx):
        raise ValueError(f"features: expected ({len(idx)}, k), got {f.shape}")
    y = victim.private.labels[idx]
    e = _reference_coordinates(victim, idx, scoring.mi_coords)
    # scikit-learn's mutual_info_classif / _regression (random_state=0), features prepared once
    est = KnnMutualInfo(f, n_neighbors=scoring.mi_neighbors, random_state=0)

    def mi_lab(labels: np.ndarray) -> np.ndarray:
        return est.classif(labels)

    def mi_emb(coords: np.ndarray) -> np.ndarray:
        return np.array([est.regression(coords[:, i]).max() for i in range(coords.shape[1])])

    lab, emb = mi_lab(y), mi_emb(e)
    rng = np.random.default_rng(0)
    null_lab, null_emb = np.empty(scoring.mi_permutations), np.empty(scoring.mi_permutations)
    for t in range(scoring.mi_permutations):
        p = rng.permutation(len(idx))
        null_lab[t] = mi_lab(y[p]).max()
        null_emb[t] = mi_emb(e[p]).mean()
    stat_lab, stat_emb = float(lab.max()), float(emb.mean())
    known = knn_mi_known_case(len(idx), n_neighbors=scoring.mi_neighbors)
    return Score(
        metrics={"mi_label": stat_lab, "mi_embedding": stat_emb, "n": len(idx)},
        chance={"mi_label": float(null_lab.mean()), "mi_embedding": float(null_emb.mean())},
        ci={},
        p_values={"mi_label": permutation_pvalue(stat_lab, null_lab),
                  "mi_embedding": permutation_pvalue(stat_emb, null_emb)},
        per_sample={"feature": np.arange(f.shape[1]), "mi_label": lab},
        curves={"null_q95": {"mi_label": float(np.quantile(null_lab, 0.95)),
                             "mi_embedding": float(np.quantile(null_emb, 0.95))},
                "mi_embedding_per_coordinate": emb.tolist(), "estimator_known_case": known,
                "units": "nats"},
        primary="mi_label")


# --- linkability: equality and near-duplicates --------------------------------------------
@register_scorer(Linker)
def score_linker(out: Linker, victim: Victim, view: AttackerView,
                 scoring: ScoringConfig) -> Score:
    n = len(victim.private)
    rng = np.random.default_rng(out.challenge_seed)
    ridx = np.sort(rng.choice(n, min(out.n_resend, n), replace=False))
    imgs = victim.private.images[ridx]
    kinds = np.array(["exact"] * len(ridx))
    if out.resend == "augment":
        imgs, kinds = augment(imgs, rng)
    elif out.resend != "exact":
        raise ValueError(f"resend must be 'exact' or 'augment', got {out.resend!r}")
    new = challenge_images(victim, out.n_new, out.challenge_seed + 1)
    scr_r, o_r = traffic(victim, victim.channel, imgs, with_outputs=out.needs_outputs)
    scr_n, o_n = traffic(victim, victim.channel, new, with_outputs=out.needs_outputs)
    best_r, dist_r = (np.asarray(a) for a in out.link(scr_r, o_r))
    best_n, dist_n = (np.asarray(a) for a in out.link(scr_n, o_n))
    correct = best_r == ridx
    k, m = int(correct.sum()), len(correct)
    chance_link = 1.0 / n
    det = auc_test(np.r_[-dist_r, -dist_n], np.r_[np.ones(m, bool), np.zeros(len(dist_n), bool)],
                   n_boot=scoring.auc_bootstrap, rng=np.random.default_rng(0))
    exact = dist_r < EXACT_TOL
    ke = int(exact.sum())
    metrics = {"link_accuracy": k / max(1, m), "resend_auc": det["auc"], "exact_match_rate": ke / max(1, m),
               "n": m}
    chance = {"link_accuracy": chance_link, "resend_auc": 0.5, "exact_match_rate": 0.0}
    ci = {"link_accuracy": wilson_interval(k, m), "resend_auc": det["ci"], "exact_match_rate": wilson_interval(ke, m)}
    p = {"link_accuracy": binomial_pvalue(k, m, chance_link), "resend_auc": det["p_value"]}
    curves = {"false_exact_match_rate_new": float(np.mean(dist_n < EXACT_TOL)) if len(dist_n) else 0.0}
    if out.resend == "augment":
        for kind in np.unique(kinds):
            s = kinds == kind
            kk, mm = int(correct[s].sum()), int(s.sum())
            metrics[f"link_accuracy_{kind}"] = kk / mm
            chance[f"link_accuracy_{kind}"] = chance_link
            ci[f"link_accuracy_{kind}"] = wilson_interval(kk, mm)
            p[f"link_accuracy_{kind}"] = binomial_pvalue(kk, mm, chance_link)
    per = {"index": np.r_[ridx, -np.ones(len(dist_n), int)], "resend": np.r_[np.ones(m), np.zeros(len(dist_n))],
           "kind": np.r_[kinds, np.array(["new"] * len(dist_n))],
           "linked_to": np.r_[best_r, best_n], "distance": np.r_[dist_r, dist_n],
           "correct": np.r_[correct, np.zeros(len(dist_n), bool)].astype(np.int8)}
    primary = "resend_auc" if out.resend == "exact" else "link_accuracy"
    return Score(metrics=metrics, chance=chance, ci=ci, p_values=p, per_sample=per, curves=curves, primary=primary)


# --- distinguishing ------------------------------------------------------------------------
@register_scorer(Distinguisher)
def score_distinguisher(out: Distinguisher, victim: Victim, view: AttackerView,
                        scoring: ScoringConfig) -> Score:
    imgs = challenge_images(victim, out.n_challenge, out.challenge_seed)
    pos = victim.channel.scramble_images(imgs)
    if out.reference == "other-key":
        neg = other_key_channel(victim, out.challenge_seed + 1).scramble_images(imgs)
    elif out.reference == "noise":
        neg = uniform_noise_images(len(imgs), tuple(pos.shape[1:]), out.challenge_seed + 1)
    else:
        raise ValueError(f"reference must be 'other-key' or 'noise', got {out.reference!r}")
    s_pos, s_neg = np.asarray(out.score(pos, None), float), np.asarray(out.score(neg, None), float)
    labels = np.r_[np.ones(len(s_pos), bool), np.zeros(len(s_neg), bool)]
    res = auc_test(np.r_[s_pos, s_neg], labels, n_boot=scoring.auc_bootstrap, rng=np.random.default_rng(0))
    return Score(metrics={"auc": res["auc"], "n": len(labels)}, chance={"auc": 0.5}, ci={"auc": res["ci"]},
                 p_values={"auc": res["p_value"]},
                 per_sample={"victim_traffic": labels.astype(np.int8), "score": np.r_[s_pos, s_neg]},
                 curves={"reference": out.reference}, primary="auc")


# --- membership inference --------------------------------------------------------------------
@register_scorer(MembershipGame)
def score_membership(out: MembershipGame, victim: Victim, view: AttackerView,
                     scoring: ScoringConfig) -> Score:
    idx = _indices(out.target_indices, len(victim.private))
    model, member, evaluable = internal_model_for(victim)
    oracle = InternalOracle(model, meter=view.meters.get("internal"))
    scores = np.asarray(out.infer(oracle), float)
    if scores.shape != idx.shape:
        raise ValueError(f"{len(scores)} membership scores for {len(idx)} targets")
    keep = evaluable[idx]
    s, lab = scores[keep], member[idx][keep]
    rng = np.random.default_rng(0)
    res = auc_test(s, lab, n_boot=scoring.auc_bootstrap, rng=rng)
    metrics, chance = {"auc": res["auc"], "n": int(keep.sum())}, {"auc": 0.5}
    ci, p = {"auc": res["ci"]}, {"auc": res["p_value"]}
    at = []
    for f in scoring.membership_fprs:
        t = tpr_at_fpr_ci(s, lab, f, n_boot=scoring.tpr_bootstrap, rng=rng)
        name = f"tpr_at_fpr_{f:g}"
        metrics[name], chance[name], ci[name] = t["tpr"], float(f), t["ci"]
        at.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in t.items()})
    fpr, tpr, _ = roc_curve(s, lab)
    nonmem = ~member
    acc = float((model.predict(victim.private_outputs()[nonmem]) == victim.private.labels[nonmem]).mean())
    curves = {"roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}, "tpr_at_fpr": at,
              "internal_queries": oracle.used, "n_members": int(lab.sum()), "n_nonmembers": int((~lab).sum()),
              "internal_model_accuracy_nonmembers": acc,
              "internal_training": getattr(victim, "leak_internal_training", "members"), **out.extra}
    return Score(metrics=metrics, chance=chance, ci=ci, p_values=p,
                 per_sample={"index": idx[keep], "member": lab.astype(np.int8), "score": s},
                 curves=curves, primary="auc")
