"""Output types of the leakage tests (each has one scorer in :mod:`attacks.leakage.scoring`).

Two kinds:

* *direct* outputs, computed on the attacker's view and graded against ground truth
  (:class:`ClusterAssignments`, :class:`PairwiseDistances`, :class:`AttackerFeatures`;
  label probes reuse :class:`attacks.base.LabelPredictions`);
* *challenge* outputs (IND-style games): ``run`` fits a decision rule on its view and returns
  it; the scorer (the challenger, on the ground-truth side) draws fresh traffic from the
  victim, hides which is which, and grades the rule's scores on it
  (:class:`Linker`, :class:`Distinguisher`, :class:`MembershipGame`).  The attack never sees
  the challenge's labels, so it cannot grade itself.

How the scores' statistics are computed (permutations, resamples, the MI estimator's settings)
is not in the outputs: the runner chooses it (:class:`attacks.scoring.ScoringConfig`).

Example:
    >>> import numpy as np
    >>> out = ClusterAssignments(np.array([0, 1, 1]), np.arange(3), source="outputs")
    >>> sorted(out.raw())
    ['clusters', 'target_indices']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from attacks.base import AttackOutput

#: maps a batch of uint8 scrambled images and (optional) cloud outputs to one score each
ScoreFn = Callable[[np.ndarray, Optional[np.ndarray]], np.ndarray]


@dataclass
class ClusterAssignments(AttackOutput):
    """Unsupervised cluster ids for targets (scored by Hungarian accuracy and NMI)."""

    clusters: np.ndarray
    target_indices: np.ndarray
    source: str = "outputs"

    def raw(self) -> dict[str, np.ndarray]:
        return {"clusters": np.asarray(self.clusters), "target_indices": np.asarray(self.target_indices)}


@dataclass
class PairwiseDistances(AttackOutput):
    """Distances the attacker computes between targets (scored by a Mantel test)."""

    distances: np.ndarray
    target_indices: np.ndarray
    source: str = "scrambled"

    def raw(self) -> dict[str, np.ndarray]:
        return {"target_indices": np.asarray(self.target_indices)}


@dataclass
class AttackerFeatures(AttackOutput):
    """Low-dimensional features of targets (scored by kNN mutual information)."""

    features: np.ndarray
    target_indices: np.ndarray
    source: str = "scrambled"

    def raw(self) -> dict[str, np.ndarray]:
        return {"features": np.asarray(self.features), "target_indices": np.asarray(self.target_indices)}


@dataclass
class Linker(AttackOutput):
    """A rule that links new traffic to the targets already seen.

    ``link(scrambled, outputs) -> (best_target_index, distance)`` per new item.  The
    challenger re-sends ``n_resend`` private images (``resend="exact"``: the same image;
    ``"augment"``: a near-duplicate) among ``n_new`` never-sent ones.
    """

    link: Callable[[np.ndarray, Optional[np.ndarray]], tuple[np.ndarray, np.ndarray]]
    resend: str
    n_resend: int
    n_new: int
    source: str = "scrambled"
    needs_outputs: bool = False
    challenge_seed: int = 0


@dataclass
class Distinguisher(AttackOutput):
    """A one-class rule: higher score = "looks like the victim's traffic".

    The challenger scores ``n_challenge`` fresh victim images against as many from a
    ``reference``: ``"other-key"`` (the same images under another key of the same scheme)
    or ``"noise"`` (uniform random images).
    """

    score: ScoreFn
    reference: str
    n_challenge: int
    challenge_seed: int = 0
    train_scores: Optional[np.ndarray] = None

    def raw(self) -> dict[str, np.ndarray]:
        return {} if self.train_scores is None else {"train_scores": np.asarray(self.train_scores)}


@dataclass
class MembershipGame(AttackOutput):
    """A membership-inference rule that needs query access to the internal model.

    ``infer(oracle) -> scores`` (higher = member) for ``target_indices``; ``oracle`` maps cloud
    output vectors to the internal model's probabilities and counts the queries.
    """

    infer: Callable[[Callable[[np.ndarray], np.ndarray]], np.ndarray]
    target_indices: np.ndarray
    method: str = "loss"
    extra: dict = field(default_factory=dict)
