"""The scorer of :class:`~attacks.inversion.outputs.Reconstructions`, and the grid figure.

For every reconstructed target it computes, against the victim's private original (which
the attack never saw):

* SSIM and PSNR (scikit-image, ``data_range=1``); mean, median, max, and the fraction of
  images above SSIM 0.3 (He et al.'s "recognizable" line).  Chance level: the larger of two
  input-independent baselines, (a) the mean image of the victim's public pool (the best
  input-independent reconstruction in MSE) scored against each original, and (b) the
  attack's own reconstructions scored against *another* target's original (a random
  derangement; SSIM is not maximized by the blurry mean, so a decoder that ignores its
  input can beat (a) but never (b) in expectation).  Mean: bootstrap 95% CI and a sign-flip
  permutation p-value of the paired difference to (b); median: bootstrap CI and a sign-test
  p-value against (b); max: bootstrap CI; fraction: Wilson CI and an exact binomial p-value
  against the chance fraction.
* Re-identification: is the original the nearest neighbour (Euclidean, pixels) of the
  reconstruction among a pool of :data:`REID_POOL` candidates (the original plus
  distractors drawn from the other scored originals, so that ``1 / pool`` is the exact
  chance level)?  Wilson CI, binomial p.
* A plaintext classifier (logistic regression fitted on the victim's public pool): its
  accuracy on the reconstructions and on the originals.  Chance: the majority-class rate.

Targets that were among the attacker's known pairs are dropped (a decoder may memorize
them).  Per-image values go to ``per_sample`` (``per_sample.csv``); a few originals and
their reconstructions are kept in ``raw`` for :func:`save_grid`.

Example:
    >>> import numpy as np
    >>> a = np.random.default_rng(0).random((3, 1, 8, 8)).astype(np.float32)
    >>> s, p = image_metrics(a, a)
    >>> bool(np.allclose(s, 1.0)), float(p.max())
    (True, 100.0)
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from owsd.stats import binomial_pvalue, bootstrap_ci, permutation_pvalue, wilson_interval
from attacks.base import AttackResult, Score, register_scorer
from attacks.metrics import declare, higher
from attacks.scoring import ScoringConfig
from attacks.inversion.outputs import Reconstructions
from attacks.victim import AttackerView, Victim

log = logging.getLogger(__name__)

#: the metrics these scorers produce: which way helps the attacker, and a perfect attack's value
declare(ssim_mean=higher(1.0), recognizable_rate=higher(1.0), reid_accuracy=higher(1.0))

#: He et al.'s line above which a reconstruction counts as recognizable
RECOGNIZABLE_SSIM = 0.3
#: PSNR reported for a perfect reconstruction (instead of infinity)
PSNR_CAP = 100.0
#: candidates in the re-identification pool (the original plus distractors)
REID_POOL = 10
GRID_SIZE = 16


def to_unit(images: np.ndarray) -> np.ndarray:
    """Images as float32 in ``[0, 1]`` (uint8 is divided by 255)."""
    a = np.asarray(images)
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)


def image_metrics(recon: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image SSIM and PSNR of ``recon`` against ``truth`` (both ``(N, C, H, W)`` in [0, 1])."""
    recon, truth = to_unit(recon), to_unit(truth)
    if recon.shape != truth.shape:
        raise ValueError(f"reconstructions {recon.shape} and originals {truth.shape} differ in shape")
    h, w = truth.shape[2:]
    win = min(7, h, w)
    win -= (win + 1) % 2  # odd
    ssim = np.empty(len(truth))
    psnr = np.empty(len(truth))
    for i, (r, t) in enumerate(zip(recon, truth)):
        if t.shape[0] == 1:
            ssim[i] = structural_similarity(t[0], r[0], data_range=1.0, win_size=win)
        else:
            ssim[i] = structural_similarity(t, r, data_range=1.0, win_size=win, channel_axis=0)
        mse = float(np.mean((t.astype(np.float64) - r) ** 2))
        psnr[i] = PSNR_CAP if mse == 0 else min(PSNR_CAP, peak_signal_noise_ratio(t, r, data_range=1.0))
    return ssim, psnr


def reidentify(recon: np.ndarray, truth: np.ndarray, *, pool: int = REID_POOL,
               rng: Optional[np.random.Generator] = None) -> tuple[np.ndarray, int]:
    """Whether each reconstruction's nearest candidate is its original; returns (correct, pool used).

    Each target's pool is its original plus ``pool - 1`` other scored originals drawn at
    random (Euclidean distance on pixels).  Drawing the distractors from the same finite set
    as the originals makes ``1 / pool`` the exact chance level of any reconstruction that is
    independent of its target (a fixed outside pool would add a shared bias).
    """
    rng = rng or np.random.default_rng(0)
    r = to_unit(recon).reshape(len(recon), -1).astype(np.float64)
    t = to_unit(truth).reshape(len(truth), -1).astype(np.float64)
    k = min(pool - 1, len(t) - 1)
    if k < 1:
        raise ValueError("re-identification needs at least two originals")
    correct = np.zeros(len(r), dtype=bool)
    for i in range(len(r)):
        others = rng.choice(len(t) - 1, k, replace=False)
        others += others >= i  # skip the original itself
        d_true = np.sum((r[i] - t[i]) ** 2)
        d_other = np.sum((t[others] - r[i]) ** 2, axis=1)
        correct[i] = bool(d_true < d_other.min())
    return correct, k + 1


_CLASSIFIERS: dict[str, Any] = {}


def plaintext_classifier(victim: Victim):
    """Logistic regression on the victim's public pool (cached by the pool's content hash)."""
    from sklearn.linear_model import LogisticRegression

    key = victim.public.digest()
    if key not in _CLASSIFIERS:
        if len(_CLASSIFIERS) > 8:
            _CLASSIFIERS.clear()
        _CLASSIFIERS[key] = LogisticRegression(max_iter=300, C=0.1).fit(victim.public.flat(), victim.public.labels)
    return _CLASSIFIERS[key]


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of ``range(n)`` without fixed points (``n >= 2``)."""
    perm = rng.permutation(n)
    while True:
        fixed = np.flatnonzero(perm == np.arange(n))
        if not len(fixed):
            return perm
        for i in fixed:
            j = (i + 1 + rng.integers(n - 1)) % n
            perm[i], perm[j] = perm[j], perm[i]


def _pair_mask(victim: Victim, view: AttackerView, idx: np.ndarray) -> np.ndarray:
    """True for targets whose scrambled image is one of the attacker's known pairs."""
    if view.pairs_scrambled is None:
        return np.zeros(len(idx), dtype=bool)
    h = lambda a: hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).digest()  # noqa: E731
    known = {h(p) for p in view.pairs_scrambled}
    scr = victim.private_scrambled()
    return np.array([h(scr[i]) in known for i in idx], dtype=bool)


def _mean_summary(name: str, values: np.ndarray, shuffled: np.ndarray, mean_image: np.ndarray,
                  rng: np.random.Generator, metrics: dict, chance: dict, ci: dict, p_values: dict,
                  scoring: ScoringConfig) -> None:
    """mean/median/max of ``values``: chance = the larger baseline; p-values paired with ``shuffled``.

    ``shuffled`` scores each reconstruction against another target's original: for any
    reconstruction independent of its target it has the same distribution as ``values``,
    so the paired tests against it are exact.  ``mean_image`` scores the public mean image.
    """
    diff = values - shuffled
    for stat, fn in (("mean", np.mean), ("median", np.median), ("max", np.max)):
        key = f"{name}_{stat}"
        metrics[key] = float(fn(values))
        chance[key] = float(max(fn(shuffled), fn(mean_image)))
        ci[key] = bootstrap_ci(values, fn, n_boot=scoring.bootstrap, rng=rng)
    signs = rng.choice([-1.0, 1.0], size=(scoring.sign_flips, len(diff)))
    p_values[f"{name}_mean"] = permutation_pvalue(float(diff.mean()), (signs * diff).mean(1))
    nz = diff[diff != 0]
    p_values[f"{name}_median"] = binomial_pvalue(int((nz > 0).sum()), len(nz), 0.5)


def _proportion(name: str, hits: np.ndarray, p0: float, metrics: dict, chance: dict, ci: dict,
                p_values: dict) -> None:
    k, n = int(np.sum(hits)), len(hits)
    metrics[name] = k / max(1, n)
    chance[name] = float(p0)
    ci[name] = wilson_interval(k, n)
    p_values[name] = binomial_pvalue(k, n, p0)


@register_scorer(Reconstructions)
def score_reconstructions(out: Reconstructions, victim: Victim, view: AttackerView,
                          scoring: ScoringConfig) -> Score:
    """Grade reconstructions against the victim's private originals (see the module doc)."""
    idx = out.target_indices
    rec = out.images
    if idx.size and (idx.min() < 0 or idx.max() >= len(victim.private)):
        raise ValueError(f"target indices must lie in [0, {len(victim.private)})")
    truth_shape = victim.private.images.shape[1:]
    if rec.shape[1:] != truth_shape:
        raise ValueError(f"reconstructions have shape {rec.shape[1:]}, the originals {truth_shape}")
    if out.exclude_pairs:
        keep = ~_pair_mask(victim, view, idx)
        if (~keep).any():
            log.info("scoring: %d targets that were known pairs are left out", int((~keep).sum()))
        idx, rec = idx[keep], rec[keep]
    if len(idx) < 2:
        raise ValueError(f"only {len(idx)} reconstructions left to score (need at least 2)")
    rng = np.random.default_rng(0)
    truth = to_unit(victim.private.images[idx])
    ssim, psnr = image_metrics(rec, truth)
    # two input-independent baselines; the chance level of each statistic is the larger one
    mean_img = to_unit(victim.public.images).mean(0, keepdims=True)
    ssim_m, psnr_m = image_metrics(np.repeat(mean_img, len(truth), 0), truth)
    ssim_s, psnr_s = image_metrics(rec, truth[derangement(len(truth), rng)])
    metrics: dict[str, float] = {"n": float(len(idx))}
    chance: dict[str, float] = {}
    ci: dict[str, tuple[float, float]] = {}
    p_values: dict[str, float] = {}
    _mean_summary("ssim", ssim, ssim_s, ssim_m, rng, metrics, chance, ci, p_values, scoring)
    _mean_summary("psnr", psnr, psnr_s, psnr_m, rng, metrics, chance, ci, p_values, scoring)
    rec_hits = ssim > RECOGNIZABLE_SSIM
    _proportion("recognizable_rate", rec_hits, float(max(np.mean(ssim_m > RECOGNIZABLE_SSIM),
                                                         np.mean(ssim_s > RECOGNIZABLE_SSIM))),
                metrics, chance, ci, p_values)
    reid, pool = reidentify(rec, truth, pool=REID_POOL, rng=rng)
    _proportion("reid_accuracy", reid, 1.0 / pool, metrics, chance, ci, p_values)
    labels = victim.private.labels[idx]
    clf = plaintext_classifier(victim)
    pred_rec = clf.predict(rec.reshape(len(rec), -1))
    pred_org = clf.predict(truth.reshape(len(truth), -1))
    majority = float(np.max(np.bincount(labels, minlength=victim.private.num_classes)) / len(labels))
    _proportion("classifier_accuracy_reconstructions", pred_rec == labels, majority, metrics, chance, ci, p_values)
    _proportion("classifier_accuracy_originals", pred_org == labels, majority, metrics, chance, ci, p_values)
    sel = spread(len(idx), GRID_SIZE)
    out.grid = {"originals": truth[sel], "reconstructions": rec[sel], "indices": idx[sel], "ssim": ssim[sel]}
    per_sample = {"index": idx, "ssim": ssim, "psnr": psnr, "ssim_shuffled": ssim_s, "psnr_shuffled": psnr_s,
                  "ssim_mean_image": ssim_m, "psnr_mean_image": psnr_m,
                  "recognizable": (ssim > RECOGNIZABLE_SSIM).astype(np.int8), "reid_correct": reid.astype(np.int8),
                  "label": labels, "pred_reconstruction": pred_rec, "pred_original": pred_org}
    curves = {k: [float(v) for v in np.asarray(c).reshape(-1)] for k, c in out.curves.items()}
    return Score(metrics=metrics, chance=chance, ci=ci, p_values=p_values, per_sample=per_sample,
                 curves=curves, primary="ssim_mean")


def spread(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` indices spread evenly over ``range(n)`` (private images may be ordered by class)."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def save_grid(result_or_arrays: Any, path: str | Path, *, victim: Optional[Victim] = None,
              n: int = GRID_SIZE, title: Optional[str] = None, dpi: int = 60) -> Path:
    """Save a PNG grid: originals (top row) above their reconstructions (bottom row).

    ``result_or_arrays`` is an :class:`~attacks.base.AttackResult` of an inversion attack
    (its ``raw`` holds a few originals and reconstructions), a scored
    :class:`Reconstructions`, or a pair ``(originals, reconstructions)`` of arrays
    ``(N, C, H, W)`` (uint8 or floats in [0, 1]).  With ``victim``, the originals are read
    from the victim's private images by target index.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = None
    if isinstance(result_or_arrays, AttackResult):
        raw = result_or_arrays.raw
        if victim is not None:
            sel = spread(len(raw["target_indices"]), n)
            orig, rec = victim.private.images[raw["target_indices"][sel]], raw["reconstructions"][sel]
        elif "grid_originals" in raw:
            orig, rec = raw["grid_originals"], raw["grid_reconstructions"]
            sub = raw.get("grid_ssim")
        else:
            raise ValueError("this result holds no originals for a grid; pass victim=")
        title = title or result_or_arrays.attack
    elif isinstance(result_or_arrays, Reconstructions):
        r = result_or_arrays
        if victim is not None:
            sel = spread(len(r.target_indices), n)
            orig, rec = victim.private.images[r.target_indices[sel]], r.images[sel]
        elif r.grid is not None:
            orig, rec, sub = r.grid["originals"], r.grid["reconstructions"], r.grid.get("ssim")
        else:
            raise ValueError("unscored reconstructions: pass victim= to read the originals")
    else:
        orig, rec = result_or_arrays
    orig, rec = to_unit(orig)[:n], to_unit(rec)[:n]
    if len(orig) != len(rec) or len(orig) == 0:
        raise ValueError(f"need as many originals as reconstructions (got {len(orig)} and {len(rec)})")
    if sub is None:
        sub, _ = image_metrics(rec, orig)
    k = len(orig)
    fig, axes = plt.subplots(2, k, figsize=(0.9 * k, 2.2), squeeze=False)
    for j in range(k):
        for row, img in ((0, orig[j]), (1, rec[j])):
            ax = axes[row, j]
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(np.transpose(img, (1, 2, 0)))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[1, j].set_xlabel(f"{float(sub[j]):.2f}", fontsize=7)
    axes[0, 0].set_ylabel("original", fontsize=7)
    axes[1, 0].set_ylabel("recon.", fontsize=7)
    if title:
        fig.suptitle(f"{title} (SSIM under each)", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
