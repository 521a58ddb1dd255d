"""Scorers of key-estimation outputs, computed against the victim's ground truth.

:class:`~attacks.key_estimation.outputs.KeyEstimate` is graded on the victim's held-out
images, with the victim's true float scrambler:

* ``functional_error``: relative MSE ``mean_i ||f_hat(x_i) - f(x_i)||^2 / mean_i ||f(x_i) - mean||^2``
  in the image domain (chance 1.0 = the best constant predictor; ``functional_error_random_key``
  = a random key of the public spec: 2.03 for ``linear``, 5.41 for ``grey-sigmoid`` on MNIST);
  bootstrap CI; exact sign-test p-value against the constant predictor.
  ``functional_error_link``: the same in the logit domain (sigmoid specs; affine estimates and
  surrogates).
* ``weight_error``: relative error of the recovered map (linear specs: the end-to-end linear
  map, scale-aligned where the normalization forgets scale, and with each column's pixel mean
  removed where the image is standardized) or of the surrogate's weights after
  resolving channel permutations and scalings (:func:`~.surrogate.weight_error`); chance: the
  same error for random keys of the spec.  ``carrier_error`` (standardized estimates of a
  carrier spec): ``||c_hat - c|| / ||c - mean(c)||``; chance: a random key's carrier.
* ``inversion_ssim`` / ``inversion_psnr`` / ``embedding_error``: held-out scrambled images (as
  sent: float32 for OWSD, uint8 where the channel quantizes) inverted through the estimate,
  decoded with the victim's encoder (or the attacker's own PCA for image-input estimates);
  chance: the same metric against a shuffled pairing.

:class:`~attacks.key_estimation.outputs.Matching` is set re-identification challenges: ``K``
of the victim's scrambled images against their ``K`` originals, shuffled (chance ``1/K``);
Wilson CI and exact binomial p-value; graded as the NeuraCrypt challenge did (<5% good for
the defender, >20% bad).

Example:
    >>> grade_reidentification(0.02), grade_reidentification(0.5)
    ('good for the defender (<5%)', 'bad for the defender (>20%)')
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from owsd.stats import binomial_pvalue, bootstrap_ci, wilson_interval
from attacks.base import Score, register_scorer
from attacks.metrics import declare, higher, lower
from attacks.scoring import ScoringConfig
from attacks.key_estimation.linear_fit import as_unit_float, to_link
from attacks.key_estimation.outputs import KeyEstimate, Matching
from attacks.key_estimation.surrogate import fit_domain, fit_forward, pre_normalization, weight_error
from attacks.victim import AttackerView, Victim
from owsd.keys import SECRET_BYTES, Key
from owsd.scrambler import Scrambler
from owsd.validation import as_image_batch

log = logging.getLogger(__name__)

#: the metrics these scorers produce: which way helps the attacker, and a perfect attack's value
declare(functional_error=lower(0.0), functional_error_link=lower(0.0), weight_error=lower(0.0),
        embedding_error=lower(0.0), inversion_ssim=higher(1.0), reid_accuracy=higher(1.0))

SCORER_SEED = 20261124
N_RANDOM_KEYS = 3


def grade_reidentification(accuracy: float) -> str:
    """The NeuraCrypt challenge's reading of a re-identification accuracy."""
    if accuracy < 0.05:
        return "good for the defender (<5%)"
    if accuracy > 0.20:
        return "bad for the defender (>20%)"
    return "inconclusive (5-20%)"


def _random_key(spec, rng: np.random.Generator) -> Key:
    return Key(spec=spec, secret=rng.bytes(SECRET_BYTES))


def victim_truth(victim: Victim) -> dict:
    """Held-out inputs and the victim's true float scrambling of them (cached on the victim)."""
    return victim.memo("key_truth", lambda: _victim_truth(victim))


def _victim_truth(victim: Victim) -> dict:
    images = victim.heldout.images
    emb = None
    if victim.has_embeddings:
        emb = victim.channel.embed(images)
        f = victim.channel.scramble_embeddings(emb, uint8=False, query_noise=False)  # the key's map, not the noise
    else:  # any channel: its float scrambling (the abstract method every channel implements)
        with torch.no_grad():
            f = victim.channel._scramble(as_image_batch(images)).float().clamp(0, 1).numpy()
    f = np.asarray(f, np.float32)
    quantized = getattr(victim.channel, "transmit_uint8", True)  # score on what the channel sends
    sent = np.round(f.astype(np.float64) * 255).astype(np.uint8) if quantized else f
    return {"images": images, "embeddings": emb, "float": f, "sent": sent}


def _relative_errors(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample ``||pred - truth||^2 / mean ||truth - mean||^2`` and the constant predictor's."""
    t = truth.reshape(len(truth), -1).astype(np.float64)
    p = pred.reshape(len(pred), -1).astype(np.float64)
    mean = t.mean(0)
    const = ((t - mean) ** 2).sum(1)
    denom = const.mean() + 1e-300
    return ((p - t) ** 2).sum(1) / denom, const / denom


def _linear_map(spec, weights, biases) -> np.ndarray:
    """End-to-end map ``(D, P)`` of a linear spec in its link domain (offset removed)."""
    d = spec.embedding_dim
    with torch.no_grad():
        basis = torch.eye(d, dtype=torch.float64)
        w = [torch.as_tensor(x).double() for x in weights]
        b = [None if x is None else torch.as_tensor(x).double() for x in biases]
        m = pre_normalization(spec, w, b, basis).reshape(d, -1) - pre_normalization(
            spec, w, b, torch.zeros(1, d, dtype=torch.float64)).reshape(1, -1)
    gain = spec.gain if spec.normalization == "sigmoid" else 1.0
    return (gain * m).numpy()


def _map_error(est: np.ndarray, true: np.ndarray, align_scale: bool) -> float:
    if align_scale:
        s = float((est * true).sum() / max((est * est).sum(), 1e-300))
        est = s * est
    return float(np.linalg.norm(est - true) / (np.linalg.norm(true) + 1e-300))


def _weight_metrics(out: KeyEstimate, victim: Victim) -> dict:
    """weight_error and its chance, where the comparison is defined."""
    key, spec = victim.key, victim.spec
    if key is None or spec is None or out.input_kind != "embedding":
        return {}
    rng = np.random.default_rng(SCORER_SEED)
    rand_keys = [_random_key(spec, rng) for _ in range(N_RANDOM_KEYS)]
    if spec.is_linear():
        align = spec.normalization != "sigmoid"
        std = spec.normalization == "standardize"  # the image forgets each column's pixel mean

        def lin(k: Key) -> np.ndarray:
            m = _linear_map(spec, k.weights(dtype=torch.float64), k.biases(dtype=torch.float64))
            return m - m.mean(1, keepdims=True) if std else m
        true = lin(key)
        if out.kind in ("affine", "standardized"):
            est = np.asarray(out.matrix[:-1], np.float64)
        else:
            est = _linear_map(spec, out.weights, out.biases)
        if std:
            est = est - est.mean(1, keepdims=True)
        err = _map_error(est, true, align)
        chance = float(np.mean([_map_error(lin(k), true, align) for k in rand_keys]))
        res = {"weight_error": err, "weight_error_chance": chance,
               "weight_error_kind": "end-to-end linear map" + (" (pixel mean removed, up to scale)" if std else "")}
        carrier = key.carrier(dtype=torch.float64)
        if out.kind == "standardized" and carrier is not None:
            c = carrier.numpy().reshape(-1)
            denom = np.linalg.norm(c - c.mean()) + 1e-300
            res["carrier_error"] = float(np.linalg.norm(np.asarray(out.matrix[-1], np.float64) - c) / denom)
            res["carrier_error_chance"] = float(np.mean([np.linalg.norm(
                k.carrier(dtype=torch.float64).numpy().reshape(-1) - c) / denom for k in rand_keys]))
        return res
    if out.kind != "surrogate":
        return {}
    true_w = key.weights()
    err, per = weight_error(spec, out.weights, true_w)
    chance = float(np.mean([weight_error(spec, k.weights(), true_w)[0] for k in rand_keys]))
    return {"weight_error": err, "weight_error_chance": chance, "weight_error_per_layer": per,
            "weight_error_kind": "weights after resolving permutations and scalings"}


def _ssim_psnr(rec: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    c, h, w = ref.shape
    win = min(7, h, w)
    win -= 1 - win % 2
    kw = dict(data_range=1.0, win_size=win)
    if c > 1:
        s = structural_similarity(ref, rec, channel_axis=0, **kw)
    else:
        s = structural_similarity(ref[0], rec[0], **kw)
    mse = float(((rec - ref) ** 2).mean())
    p = 100.0 if mse == 0 else float(peak_signal_noise_ratio(ref, rec, data_range=1.0))
    return float(s), min(p, 100.0)


def _inversion(out: KeyEstimate, victim: Victim, truth: dict) -> dict:
    n = min(int(out.score_options.get("n_invert", 32)), len(truth["images"]))
    if n < 2:
        return {}
    coords = out.invert(truth["sent"][:n], steps=int(out.score_options.get("invert_steps", 50)),
                        generator=torch.Generator().manual_seed(SCORER_SEED))
    shape = truth["images"].shape[1:]
    ref = as_unit_float(truth["images"][:n])
    res: dict = {}
    if out.input_kind == "embedding":
        if victim.encoder is None or not hasattr(victim.encoder, "decode"):
            return {}
        e = truth["embeddings"][:n].astype(np.float64)
        res["embedding_error"] = ((coords - e) ** 2).sum(1) / ((e ** 2).sum(1).mean())
        res["embedding_error_shuffled"] = ((coords - np.roll(e, 1, axis=0)) ** 2).sum(1) / ((e ** 2).sum(1).mean())
        rec = np.clip(victim.encoder.decode(coords.astype(np.float32)), 0, 1).reshape(n, *shape)
        bound = np.clip(victim.encoder.decode(e.astype(np.float32)), 0, 1).reshape(n, *shape)
    else:
        rec = out.decode(coords).reshape(n, *shape)
        bound = None
    sp = np.array([_ssim_psnr(rec[i], ref[i]) for i in range(n)])
    sh = np.array([_ssim_psnr(rec[i], ref[(i + 1) % n]) for i in range(n)])
    res.update(ssim=sp[:, 0], psnr=sp[:, 1], ssim_shuffled=sh[:, 0], psnr_shuffled=sh[:, 1], n=n)
    if bound is not None:
        bp = np.array([_ssim_psnr(bound[i], ref[i]) for i in range(n)])
        res.update(ssim_bound=float(bp[:, 0].mean()), psnr_bound=float(bp[:, 1].mean()))
    return res


@register_scorer(KeyEstimate)
def score_key_estimate(out: KeyEstimate, victim: Victim, view: AttackerView,
                       scoring: ScoringConfig) -> Score:
    """Functional error, weight error and inversion quality of an estimated key (see module doc)."""
    truth = victim_truth(victim)
    inputs = truth["embeddings"] if out.input_kind == "embedding" else truth["images"]
    if inputs is None:
        raise ValueError("an embedding-input key estimate needs a victim whose channel has embeddings")
    t0 = time.perf_counter()
    pred = out.predict(inputs)
    per, const = _relative_errors(pred, truth["float"])
    n = len(per)
    rng = np.random.default_rng(SCORER_SEED)
    beats = int((per < const).sum())
    metrics = {"functional_error": float(per.mean()), "n": n}
    chance = {"functional_error": 1.0}
    ci = {"functional_error": bootstrap_ci(per, n_boot=scoring.bootstrap, rng=rng)}
    pvals = {"functional_error": binomial_pvalue(beats, n, 0.5)}
    per_sample = {"index": np.arange(n), "functional_error": per}
    curves: dict = {}
    spec = victim.spec
    if spec is not None and victim.has_embeddings:
        rk = Scrambler(_random_key(spec, rng), query_noise=False)
        f_rand = rk.scramble(truth["embeddings"], verbose=False, out_dtype=torch.float32)
        chance["functional_error_random_key"] = float(_relative_errors(f_rand, truth["float"])[0].mean())
    link_pred = None
    if out.kind == "affine" and out.link == "logit":
        link_pred = out.predict_link(inputs)
    elif out.kind == "surrogate" and fit_domain(out.spec) == "link":
        with torch.no_grad():
            c = torch.from_numpy(out.coords(inputs).astype(np.float32))
            link_pred = np.concatenate([fit_forward(out.spec, out.weights, out.biases, c[s:s + 32], "link").numpy()
                                        for s in range(0, len(c), 32)])
    if link_pred is not None:
        lp, lc = _relative_errors(link_pred, to_link(truth["float"], "logit"))
        metrics["functional_error_link"] = float(lp.mean())
        chance["functional_error_link"] = 1.0
        ci["functional_error_link"] = bootstrap_ci(lp, n_boot=scoring.bootstrap, rng=rng)
        pvals["functional_error_link"] = binomial_pvalue(int((lp < lc).sum()), n, 0.5)
    wm = _weight_metrics(out, victim)
    if wm:
        metrics["weight_error"] = wm["weight_error"]
        chance["weight_error"] = wm["weight_error_chance"]
        ci["weight_error"] = (wm["weight_error"], wm["weight_error"])  # one key: a point, no sampling
        curves["weight_error"] = [{k: v for k, v in wm.items()}]
        if "carrier_error" in wm:
            metrics["carrier_error"], chance["carrier_error"] = wm["carrier_error"], wm["carrier_error_chance"]
            ci["carrier_error"] = (wm["carrier_error"], wm["carrier_error"])
    inv = _inversion(out, victim, truth)
    if inv:
        m = inv["n"]
        for name, shuffled, better in (("ssim", "ssim_shuffled", np.greater), ("psnr", "psnr_shuffled", np.greater),
                                       ("embedding_error", "embedding_error_shuffled", np.less)):
            if name not in inv:
                continue
            key = name if name == "embedding_error" else f"inversion_{name}"
            metrics[key] = float(np.mean(inv[name]))
            chance[key] = float(np.mean(inv[shuffled]))
            ci[key] = bootstrap_ci(inv[name], n_boot=scoring.bootstrap, rng=rng)
            pvals[key] = binomial_pvalue(int(better(inv[name], inv[shuffled]).sum()), m, 0.5)
            per_sample[key] = np.concatenate([inv[name], np.full(n - m, np.nan)])
        if "ssim_bound" in inv:
            curves["inversion_reference"] = [{"ssim_decoding_true_embeddings": inv["ssim_bound"],
                                              "psnr_decoding_true_embeddings": inv["psnr_bound"], "n": m}]
    curves["scoring_cost"] = [{"seconds": time.perf_counter() - t0}]
    curves["attack_info"] = [{k: v for k, v in out.info.items() if isinstance(v, (int, float, str))}]
    return Score(metrics=metrics, chance=chance, ci=ci, p_values=pvals, per_sample=per_sample, curves=curves,
                 primary="functional_error")


@register_scorer(Matching)
def score_matching(out: Matching, victim: Victim, view: AttackerView,
                   scoring: ScoringConfig) -> Score:
    """Re-identification accuracy against pool size (see module doc)."""
    n = view.num_targets
    sizes = sorted({int(k) for k in out.pool_sizes if int(k) <= n})
    if not sizes:
        raise ValueError(f"no pool size fits the victim's {n} scrambled images: {out.pool_sizes}")
    rng = np.random.default_rng(SCORER_SEED)
    metrics, chance, ci, pvals, curve = {}, {}, {}, {}, []
    per_sample: dict = {}
    for k in sizes:
        correct = total = 0
        secs = 0.0
        last = None
        for t in range(out.trials):
            idx = np.sort(rng.choice(n, k, replace=False))
            perm = rng.permutation(k)  # candidate j is the original of target perm[j]
            cands = victim.private.images[idx[perm]]
            t0 = time.perf_counter()
            assign = np.asarray(out.reidentifier.match(idx, cands, rng=np.random.default_rng([SCORER_SEED, k, t])))
            secs += time.perf_counter() - t0
            ok = assign == np.argsort(perm)
            correct, total = correct + int(ok.sum()), total + k
            last = (idx, ok)
        acc = correct / total
        name = f"reid_accuracy@{k}"
        metrics[name], chance[name] = acc, 1.0 / k
        ci[name] = wilson_interval(correct, total)
        pvals[name] = binomial_pvalue(correct, total, 1.0 / k)
        curve.append({"pool": k, "accuracy": acc, "ci_low": ci[name][0], "ci_high": ci[name][1], "chance": 1.0 / k,
                      "p_value": pvals[name], "trials": out.trials, "matches": total, "seconds": secs,
                      "grade": grade_reidentification(acc)})
        if k == sizes[-1]:
            per_sample = {"target_index": last[0], "correct": last[1].astype(np.int8)}
    top = f"reid_accuracy@{sizes[-1]}"
    metrics["reid_accuracy"], chance["reid_accuracy"] = metrics[top], chance[top]
    ci["reid_accuracy"], pvals["reid_accuracy"] = ci[top], pvals[top]
    return Score(metrics=metrics, chance=chance, ci=ci, p_values=pvals, per_sample=per_sample,
                 curves={"reidentification": curve,
                         "attack_info": [{k: v for k, v in out.info.items() if isinstance(v, (int, float, str))}]},
                 primary="reid_accuracy")
