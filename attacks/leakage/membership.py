"""Membership inference on the victim's internal model (the one trained on cloud outputs).

The victim trains its internal model (:class:`owsd.internal.InternalModel`, recipe
:data:`~attacks.leakage.common.INTERNAL_RECIPE`) on the cloud outputs of a fixed random half
of its private images (the members); the other half are non-members.  Both halves went
through the cloud, so the curious cloud holds every target's output vector.  The attacker
also knows the targets' labels (the usual membership-inference assumption) and gets
black-box query access to the internal model on output vectors (granted by the challenger:
the contract's threat model has no field for it, see ``docs/leakage.md``).

* ``leak-membership-loss``: the LOSS attack (Yeom et al. 2018): score = log-probability of
  the true label;
* ``leak-membership-shadow``: calibrated with shadow models (online LiRA, Carlini et al.
  2022): ``n_shadow`` copies of the internal model trained on random halves of the targets;
  per target, Gaussian fits of the logit-scaled confidence of the models that did and did
  not train on it (global variances); score = log-likelihood ratio.

Scored by AUC and TPR at 1%, 0.1% and 0% FPR (realized FPR and threshold recorded in
``curves["tpr_at_fpr"]``); :func:`save_roc` draws the log-log ROC.

The scrambler's negative control does not apply here: a model trained on cloud outputs of
*noise* memorizes its members even better.  The games' negative control is
:func:`~attacks.leakage.groundtruth.with_null_internal_model` (no target is a member).

Example:
    >>> import warnings
    >>> from attacks.controls import identity_victim
    >>> from attacks.leakage.groundtruth import with_null_internal_model
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = identity_victim(dataset="digits", n_private=80, n_public=8, n_heldout=40, cloud="tiny")
    >>> r = MembershipLoss(budget="smoke", seed=0, verbose=False)(with_null_internal_model(v))
    >>> r.ci["auc"][0] <= 0.5 <= r.ci["auc"][1]
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from attacks.leakage.common import INTERNAL_RECIPE, LeakageAttack, classifier_validation_positions, sub_seed
from attacks.leakage.outputs import MembershipGame
from attacks.params import param
from attacks.registry import register_attack
from attacks.threat import Requirements, ThreatModel
from attacks.victim import AttackerView
from owsd.internal import Classifier, output_features

log = logging.getLogger(__name__)

EPS = 1e-7


def true_label_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The probability each row gives its true label (0 for labels beyond its width)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    ok = labels < probs.shape[1]
    conf = np.zeros(len(labels))
    conf[ok] = probs[np.flatnonzero(ok), labels[ok]]
    return conf


def logit_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's logit scaling ``log(p / (1 - p))`` of the true-label confidence."""
    p = np.clip(true_label_confidence(probs, labels), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True, kw_only=True)
class MembershipParams:
    """Parameters of the membership games."""

    n_known: int = param(doc="targets with known labels, one internal-model query each", ge=1)


@dataclass(frozen=True, kw_only=True)
class ShadowParams(MembershipParams):
    """Parameters of online LiRA."""

    n_shadow: int = param(doc="shadow internal models (each target in about half)", ge=2)


class _Membership(LeakageAttack):
    # its outcome measures the internal model's overfitting, not the kernel: a scrambler of pure
    # noise leaks membership as well (see the module doc); reported beside the kernel verdict
    finding: ClassVar[str] = "system"
    Params: ClassVar[type] = MembershipParams

    @property
    def requirements(self) -> Requirements:
        return Requirements(cloud=True)

    def threat_model(self) -> ThreatModel:
        n = self.params["n_known"]  # one black-box query of the internal model per known target
        return ThreatModel(cloud_outputs=True, labelled_examples=n, model_queries=n, queried_model="internal")


@register_attack
class MembershipLoss(_Membership):
    """LOSS attack: members are the targets the internal model is most confident on."""

    name = "leak-membership-loss"

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> MembershipGame:
        idx, y = view.labelled_indices, view.labelled_labels
        outs = view.target_outputs[idx]

        def infer(oracle) -> np.ndarray:
            return np.log(np.maximum(true_label_confidence(oracle(outs), y), 1e-300))

        return MembershipGame(infer=infer, target_indices=idx, method="loss")


@register_attack
class MembershipShadow(_Membership):
    """Online LiRA with ``n_shadow`` shadow internal models trained on halves of the targets."""

    name = "leak-membership-shadow"
    Params: ClassVar[type] = ShadowParams

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> MembershipGame:
        idx, y = view.labelled_indices, view.labelled_labels
        outs = view.target_outputs[idx]
        feats = output_features(outs)
        n, s = len(idx), self.params["n_shadow"]
        phi = np.full((s, n), np.nan)
        inside = np.zeros((s, n), bool)
        used = np.zeros((s, n), bool)
        for t in tqdm(range(s), desc=f"{self.name} shadows", disable=not self.verbose, unit="model"):
            train = np.sort(rng.permutation(n)[: n // 2])
            seed = sub_seed(rng)
            clf = Classifier(seed=seed, verbose=False, **INTERNAL_RECIPE).fit(feats[train], y[train])
            val = train[classifier_validation_positions(len(train), seed)]
            inside[t, train] = True
            used[t] = True
            used[t, val] = False  # seen only through early stopping: neither in nor out
            phi[t] = logit_confidence(clf.predict_proba(feats), y)
        is_in, is_out = used & inside, used & ~inside
        g_in, g_out = np.nanmean(np.where(is_in, phi, np.nan)), np.nanmean(np.where(is_out, phi, np.nan))
        with np.errstate(invalid="ignore"):
            mu_in = np.where(is_in.any(0), np.nansum(np.where(is_in, phi, 0), 0) / np.maximum(is_in.sum(0), 1), g_in)
            mu_out = np.where(is_out.any(0), np.nansum(np.where(is_out, phi, 0), 0) / np.maximum(is_out.sum(0), 1),
                              g_out)
        sd_in = float(np.std((phi - mu_in)[is_in])) if is_in.sum() > 1 else 1.0
        sd_out = float(np.std((phi - mu_out)[is_out])) if is_out.sum() > 1 else 1.0
        sd_in, sd_out = max(sd_in, 1e-3), max(sd_out, 1e-3)

        def infer(oracle) -> np.ndarray:
            p = logit_confidence(oracle(outs), y)
            ll_in = -0.5 * ((p - mu_in) / sd_in) ** 2 - np.log(sd_in)
            ll_out = -0.5 * ((p - mu_out) / sd_out) ** 2 - np.log(sd_out)
            return ll_in - ll_out

        return MembershipGame(infer=infer, target_indices=idx, method="lira-online",
                              extra={"n_shadow": s, "shadow_sd_in": sd_in, "shadow_sd_out": sd_out})


def save_roc(results, path: str | Path, *, labels: Sequence[str] | None = None) -> Path:
    """Log-log ROC of one or more membership results (``curves["roc"]``) to a PNG.

    Example:
        >>> import tempfile, os
        >>> from types import SimpleNamespace
        >>> r = SimpleNamespace(attack="x", curves={"roc": {"fpr": [0, .5, 1], "tpr": [0, .7, 1]}})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     os.path.getsize(save_roc(r, os.path.join(d, "roc.png"))) > 0
        True
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = list(results) if isinstance(results, (list, tuple)) else [results]
    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=110)
    floor = 1e-4
    for i, r in enumerate(results):
        roc = r.curves.get("roc")
        if roc is None:
            raise ValueError(f"result of {r.attack} has no ROC curve")
        fpr, tpr = np.maximum(np.asarray(roc["fpr"]), floor), np.maximum(np.asarray(roc["tpr"]), floor)
        name = labels[i] if labels else r.attack
        auc = getattr(r, "metrics", {}).get("auc")
        ax.step(fpr, tpr, where="post", label=f"{name}" + (f" (AUC {auc:.3f})" if auc is not None else ""))
    grid = np.logspace(np.log10(floor), 0, 50)
    ax.plot(grid, grid, "k--", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("membership inference, log-log ROC", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
