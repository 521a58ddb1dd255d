"""The scorer of :class:`~attacks.structure.outputs.StructureRecovery` (ground-truth side).

* **Re-identification, pool protocol.**  ``n_targets`` observed items (drawn with the
  scorer's seed); each is shown its original among ``K - 1`` distractors drawn from the
  victim's held-out images (never sent, never public), and is re-identified when its original
  has the strictly highest similarity.  ``reid_accuracy@K``: Wilson CI, exact binomial p
  against chance ``1/K``.  ``reid_accuracy``: at the largest pool.
* **Decoy control.**  The same pools with the original replaced by the original of *another*
  observed item (a decoy that is in the traffic): an attack that re-identified "images that were
  sent" rather than *this* image would pick it.  ``decoy_accuracy@K`` must stay at ``1/K``.
* **Reconstruction.**  The first ``n_reconstruct`` targets decoded to images: SSIM/PSNR with
  the inversion scorer's chance levels (the larger of the public mean image and the
  reconstructions scored against other targets' originals; sign-flip permutation p) and the
  **encoder bound**: SSIM of the victim's own encoder reconstruction of the originals (its
  decode of their true embeddings), which no attack through the embedding can beat on average.
* **Intrinsic dimension.**  Chance: ``full_dim``, what traffic independent of the input shows
  at this sample size.  p-value (1 when no hull is found): the observed spectral gap against
  the largest gap of ``gap_null`` (:class:`attacks.scoring.ScoringConfig`: 99) centered Gram
  spectra of i.i.d. Gaussian traffic (at most :data:`NULL_ROWS` rows, four times as many
  features).  Fewer rows and features than the traffic has make the null's
  gaps larger (spacings shrink as rows grow), so the test is conservative.
* **Traffic curve.**  Matchers recovered from prefixes of the traffic, scored the same way at
  the largest pool that fits (``curves["traffic"]``).

Example:
    >>> bool(null_gaps(64, n=20, rng=np.random.default_rng(0)).max() < 3.0)
    True
"""

from __future__ import annotations

import logging
import time
from typing import Optional

import numpy as np

from attacks.base import Score, register_scorer
from attacks.metrics import declare, higher
from attacks.scoring import ScoringConfig
from attacks.inversion.scoring import _mean_summary, derangement, image_metrics, spread, to_unit
from attacks.key_estimation.scoring import grade_reidentification
from attacks.structure.hull import intrinsic_dimension
from attacks.structure.outputs import StructureMatcher, StructureRecovery
from attacks.victim import AttackerView, Victim
from owsd.stats import binomial_pvalue, bootstrap_ci, permutation_pvalue, wilson_interval

log = logging.getLogger(__name__)

#: the metrics these scorers produce: which way helps the attacker, and a perfect attack's value
declare(ssim_mean=higher(1.0), reid_accuracy=higher(1.0))

SCORER_SEED = 20261125
N_NULL = ScoringConfig.gap_null  # the scoring settings' default (the runner may choose another)
NULL_ROWS = 256
GRID = 16


def null_gaps(n_rows: int, *, n: int = N_NULL, rng: np.random.Generator, features: Optional[int] = None
              ) -> np.ndarray:
    """Largest consecutive eigenvalue ratio of centered Gram spectra of i.i.d. Gaussian traffic."""
    p = features or 4 * n_rows
    out = np.empty(n)
    for i in range(n):
        x = rng.standard_normal((n_rows, p))
        x -= x.mean(0)
        lam = np.linalg.eigvalsh(x @ x.T)[::-1][: n_rows - 1]
        out[i] = float((lam[:-1] / np.maximum(lam[1:], 1e-300)).max())
    return out


def _pools(matcher: StructureMatcher, victim: Victim, targets: np.ndarray, sizes: list[int],
           rng: np.random.Generator) -> tuple[dict, dict]:
    """Hits of the pool game and of the decoy control, per pool size."""
    originals = victim.private.images[targets]
    s_orig = matcher.similarity(targets, originals)          # (n, n): diagonal = the originals
    s_held = matcher.similarity(targets, victim.heldout.images)  # (n, H)
    n, h = s_held.shape
    decoy = derangement(n, rng) if n > 1 else np.zeros(n, int)
    hits, decoys = {}, {}
    for k in sizes:
        dis = np.stack([rng.choice(h, k - 1, replace=False) for _ in range(n)])
        best = np.take_along_axis(s_held, dis, axis=1).max(1)
        hits[k] = np.diag(s_orig) > best
        dis = np.stack([rng.choice(h, k - 1, replace=False) for _ in range(n)])
        best = np.take_along_axis(s_held, dis, axis=1).max(1)
        decoys[k] = s_orig[np.arange(n), decoy] > best
    return hits, decoys


def _proportion(name: str, hits: np.ndarray, p0: float, metrics: dict, chance: dict, ci: dict, pv: dict) -> None:
    k, n = int(np.sum(hits)), len(hits)
    metrics[name], chance[name] = k / max(1, n), float(p0)
    ci[name] = wilson_interval(k, n)
    pv[name] = binomial_pvalue(k, n, p0)


def _bound(victim: Victim, images: np.ndarray) -> Optional[np.ndarray]:
    """The victim's encoder reconstruction of its own images (decode of the true embeddings)."""
    enc = victim.encoder
    if enc is None or not hasattr(enc, "decode") or not hasattr(victim.channel, "embed"):
        return None
    e = victim.channel.embed(images)
    return np.clip(enc.decode(e), 0, 1).reshape(images.shape).astype(np.float32)


@register_scorer(StructureRecovery)
def score_structure(out: StructureRecovery, victim: Victim, view: AttackerView,
                    scoring: ScoringConfig) -> Score:
    """Re-identification with decoys, reconstruction beside the encoder bound, intrinsic dimension."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(SCORER_SEED)
    n_obs = min(out.n_traffic, len(victim.private))
    h = len(victim.heldout)
    sizes = sorted({int(k) for k in out.pool_sizes if int(k) - 1 <= h})
    skipped = sorted({int(k) for k in out.pool_sizes} - set(sizes))
    if not sizes:
        raise ValueError(f"no pool size fits the victim's {h} held-out distractors: {out.pool_sizes}")
    if skipped:
        log.warning("pool sizes %s skipped: the victim has only %d held-out distractors", skipped, h)
    targets = np.sort(rng.choice(n_obs, min(out.n_targets, n_obs), replace=False))
    metrics: dict = {"n": float(len(targets))}
    chance: dict = {}
    ci: dict = {}
    pv: dict = {}
    curve = []
    hits, decoys = _pools(out.matcher, victim, targets, sizes, rng)
    for k in sizes:
        _proportion(f"reid_accuracy@{k}", hits[k], 1.0 / k, metrics, chance, ci, pv)
        _proportion(f"decoy_accuracy@{k}", decoys[k], 1.0 / k, metrics, chance, ci, pv)
        curve.append({"pool": k, "accuracy": metrics[f"reid_accuracy@{k}"], "ci_low": ci[f"reid_accuracy@{k}"][0],
                      "ci_high": ci[f"reid_accuracy@{k}"][1], "chance": 1.0 / k,
                      "p_value": pv[f"reid_accuracy@{k}"], "decoy_accuracy": metrics[f"decoy_accuracy@{k}"],
                      "decoy_p_value": pv[f"decoy_accuracy@{k}"], "targets": len(targets),
                      "grade": grade_reidentification(metrics[f"reid_accuracy@{k}"])})
    top = sizes[-1]
    for m in ("reid_accuracy", "decoy_accuracy"):
        metrics[m], chance[m], ci[m], pv[m] = (metrics[f"{m}@{top}"], chance[f"{m}@{top}"], ci[f"{m}@{top}"],
                                               pv[f"{m}@{top}"])
    # reconstruction, beside the encoder's bound
    rec_idx = targets[: max(2, min(out.n_reconstruct, len(targets)))]
    truth = to_unit(victim.private.images[rec_idx])
    rec = out.matcher.reconstruct(rec_idx)
    ssim, psnr = image_metrics(rec, truth)
    mean_img = to_unit(victim.public.images).mean(0, keepdims=True)
    ssim_m, psnr_m = image_metrics(np.repeat(mean_img, len(truth), 0), truth)
    shuffle = derangement(len(truth), rng)
    ssim_s, psnr_s = image_metrics(rec, truth[shuffle])
    _mean_summary("ssim", ssim, ssim_s, ssim_m, rng, metrics, chance, ci, pv, scoring)
    _mean_summary("psnr", psnr, psnr_s, psnr_m, rng, metrics, chance, ci, pv, scoring)
    reference: dict = {"n": len(rec_idx)}
    bound = _bound(victim, victim.private.images[rec_idx])
    if bound is not None:
        b_ssim, b_psnr = image_metrics(bound, truth)
        metrics["ssim_bound"], metrics["psnr_bound"] = float(b_ssim.mean()), float(b_psnr.mean())
        chance["ssim_bound"], chance["psnr_bound"] = chance["ssim_mean"], chance["psnr_mean"]
        ci["ssim_bound"] = bootstrap_ci(b_ssim, n_boot=scoring.bootstrap, rng=rng)
        gap = b_ssim - ssim
        metrics["ssim_gap_to_bound"] = float(gap.mean())
        ci["ssim_gap_to_bound"] = bootstrap_ci(gap, n_boot=scoring.bootstrap, rng=rng)
        reference.update(ssim_bound=metrics["ssim_bound"], psnr_bound=metrics["psnr_bound"],
                         ssim_gap_to_bound=metrics["ssim_gap_to_bound"])
    # intrinsic dimension against traffic independent of the input
    s = out.structure
    null = null_gaps(min(int(s["n_basis"]), NULL_ROWS), n=scoring.gap_null, rng=rng)
    metrics["intrinsic_dim"] = float(s["intrinsic_dim"])
    chance["intrinsic_dim"] = float(s["full_dim"])
    ci["intrinsic_dim"] = (float(s["intrinsic_dim"]), float(s["intrinsic_dim"]))
    # no hull found: the dimension is the chance level itself; else the gap against i.i.d. traffic
    pv["intrinsic_dim"] = 1.0 if s["intrinsic_dim"] >= s["full_dim"] else permutation_pvalue(float(s["gap"]), null)
    spec = victim.spec
    true_dim = spec.embedding_dim if (spec is not None and victim.has_embeddings and spec.is_linear()) else None
    structure = {**{k: v for k, v in s.items() if isinstance(v, (int, float, str, bool))},
                 "null_gap_max": float(null.max()), "null_gap_median": float(np.median(null)),
                 "true_linear_dim": true_dim}
    # traffic curve
    traffic = []
    for point in out.curve:
        m: StructureMatcher = point["matcher"]
        n_pt = min(len(m.directions), n_obs)
        t_pt = np.sort(rng.choice(n_pt, min(out.n_targets, n_pt), replace=False))
        hp, dp = _pools(m, victim, t_pt, [top], rng)
        r = {k: v for k, v in point.items() if k != "matcher" and isinstance(v, (int, float, str, bool))}
        k_, n_ = int(hp[top].sum()), len(t_pt)
        rs, _ = image_metrics(m.reconstruct(t_pt[:len(rec_idx)]), to_unit(victim.private.images[t_pt[:len(rec_idx)]]))
        r.update(pool=top, accuracy=k_ / n_, ci=list(wilson_interval(k_, n_)), chance=1.0 / top,
                 p_value=binomial_pvalue(k_, n_, 1.0 / top), decoy_accuracy=float(dp[top].mean()),
                 ssim_mean=float(rs.mean()), targets=n_)
        traffic.append(r)
    main = {"n_traffic": out.n_traffic, "n_public": out.n_public, "pool": top, "accuracy": metrics["reid_accuracy"],
            "ci": list(ci["reid_accuracy"]), "chance": 1.0 / top, "p_value": pv["reid_accuracy"],
            "decoy_accuracy": metrics["decoy_accuracy"], "ssim_mean": metrics["ssim_mean"],
            "seconds": s.get("seconds"), "targets": len(targets)}
    traffic = sorted(traffic + [main], key=lambda r: (r["n_traffic"], r["n_public"]))
    sel = spread(len(rec_idx), GRID)
    out.grid = {"originals": truth[sel], "reconstructions": rec[sel], "ssim": ssim[sel], "indices": rec_idx[sel]}
    per_sample = {"index": rec_idx, "ssim": ssim, "psnr": psnr, "ssim_shuffled": ssim_s,
                  "reid_correct": hits[top][: len(rec_idx)].astype(np.int8)}
    log.info("structure scored in %.1f s: re-identification %.3f at pool %d (decoy %.3f), SSIM %.3f",
             time.perf_counter() - t0, metrics["reid_accuracy"], top, metrics["decoy_accuracy"], metrics["ssim_mean"])
    return Score(metrics=metrics, chance=chance, ci=ci, p_values=pv, per_sample=per_sample,
                 curves={"reidentification": curve, "traffic": traffic, "structure": [structure],
                         "reconstruction_reference": [reference], "skipped_pools": skipped,
                         "attack_info": [{k: v for k, v in out.info.items() if isinstance(v, (int, float, str))}]},
                 primary="reid_accuracy")
