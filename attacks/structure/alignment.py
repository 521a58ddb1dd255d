"""Find the rotation between the traffic's whitened directions and the attacker's own.

After :mod:`.geometry`, the traffic's unit directions ``z_i`` and the directions ``x_j`` of the
attacker's public images are samples of one distribution on the sphere, up to an unknown
orthogonal ``R`` (``z ~ R x``).  Without pairs, :func:`align` finds ``R`` by distribution
matching, in three steps (the playbook of unsupervised embedding alignment):

1. **Initialization from invariants.**  k-means centroids of each side; their Gram matrices
   and each cluster's tightness and size are rotation invariant, so an entropic fused
   Gromov-Wasserstein coupling of the two centroid sets (:func:`gromov_wasserstein`) pairs
   them without knowing ``R``; orthogonal Procrustes on the coupled centroids gives a first ``R``.
2. **Iterative matching** (:func:`icp`): nearest public direction for each traffic direction,
   then orthogonal Procrustes, until the matching stops changing.  Its basin is wide (on MNIST
   it converges from rotations 2.5 radians away), but it stops in local optima that differ
   from the right one by a half-turn in a plane: a sign ambiguity of two whitened axes.
3. **Flip repair** (:func:`repair_flips`): the flipped plane is where the matched cross
   covariance is weakest; reflect along its weakest directions and their pairs, re-run the
   matching, keep what raises the objective (mean nearest-neighbour cosine), repeat.

Restarts (other k-means seeds) run until two agree on the best objective, or the budget ends.

Example:
    >>> import numpy as np
    >>> from attacks.structure.geometry import normalize
    >>> rng = np.random.default_rng(0)
    >>> centers = rng.standard_normal((6, 5)) * 2
    >>> x = normalize(centers[rng.integers(0, 6, 1500)] + rng.standard_normal((1500, 5)))
    >>> r = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    >>> z = normalize(centers[rng.integers(0, 6, 800)] + rng.standard_normal((800, 5))) @ r.T
    >>> a = align(z, x, rng=rng, clusters=12, restarts=3)
    >>> bool(np.linalg.norm(a.rotation - r) / np.sqrt(5) < 0.3)
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

log = logging.getLogger(__name__)

GW_EPSILONS = (0.1, 0.05, 0.02, 0.01, 0.005)
#: a flip repair must raise the objective by this much (the right flip raises it by about 0.1 on MNIST)
MIN_GAIN = 1e-3
#: weight of the clusters' invariant features (tightness, size) in the fused Gromov-Wasserstein step
FUSED = 0.3
#: screened flip moves refined on all the traffic in each repair round
TRY_BEST = 2
#: flip moves (of 21) kept for a short matching on the screening sample, by their objective as they are
SCREEN_BEST = 8
#: k-means clusters per side, alternating across restarts
CLUSTERS = (100, 200)


def polar(m: np.ndarray) -> np.ndarray:
    """The orthogonal matrix nearest to ``m`` (orthogonal Procrustes)."""
    u, _, vt = np.linalg.svd(m)
    return u @ vt


def sinkhorn(score: np.ndarray, eps: float, a: np.ndarray, b: np.ndarray, *, iters: int = 300) -> np.ndarray:
    """Entropic optimal coupling with marginals ``a``, ``b`` maximizing ``<P, score>``."""
    k = np.exp((score - score.max()) / eps)
    v = np.ones(len(b))
    for _ in range(iters):
        u = a / np.maximum(k @ v, 1e-300)
        v = b / np.maximum(k.T @ u, 1e-300)
    return u[:, None] * k * v[None, :]


def gromov_wasserstein(ca: np.ndarray, cb: np.ndarray, a: np.ndarray, b: np.ndarray, *,
                       ua: Optional[np.ndarray] = None, ub: Optional[np.ndarray] = None, alpha: float = FUSED,
                       epsilons: tuple = GW_EPSILONS, iters: int = 20) -> np.ndarray:
    """Entropic (fused) Gromov-Wasserstein coupling of two Gram matrices, annealed from the product
    coupling; ``ua``, ``ub``: rotation-invariant features of each point, weighted by ``alpha``."""
    t = np.outer(a, b)
    unary = 0.0
    if ua is not None and ub is not None and alpha > 0:
        m = -((ua[:, None, :] - ub[None, :, :]) ** 2).sum(2)
        unary = alpha * m / max(np.abs(m).max(), 1e-300)
        alpha_g = 1.0 - alpha
    else:
        alpha_g = 1.0
    for eps in epsilons:
        for _ in range(iters):
            g = ca @ t @ cb
            t = sinkhorn(alpha_g * g / max(np.abs(g).max(), 1e-300) + unary, eps, a, b)
    return t


def _nearest(z: np.ndarray, ref: np.ndarray, rot: np.ndarray, batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Index and cosine of each rotated traffic direction's nearest reference direction (float32)."""
    r32 = ref.astype(np.float32) if ref.dtype != np.float32 else ref
    a = (z @ rot).astype(np.float32)
    idx, val = np.empty(len(z), np.int64), np.empty(len(z))
    for s in range(0, len(z), batch_size):
        sim = a[s:s + batch_size] @ r32.T
        idx[s:s + batch_size] = sim.argmax(1)
        val[s:s + batch_size] = np.take_along_axis(sim, idx[s:s + batch_size, None], 1)[:, 0]
    return idx, val


def objective(z: np.ndarray, ref: np.ndarray, rot: np.ndarray) -> float:
    """Mean cosine of each rotated traffic direction to its nearest reference direction."""
    return float(_nearest(z, ref, rot)[1].mean())


def icp(z: np.ndarray, ref: np.ndarray, rot: np.ndarray, *, iters: int = 50, settled: float = 1e-3) -> np.ndarray:
    """Nearest-neighbour matching and orthogonal Procrustes until at most a fraction ``settled`` of
    the matches change."""
    prev = None
    for _ in range(iters):
        j = _nearest(z, ref, rot)[0]
        if prev is not None and (j != prev).mean() <= settled:
            break
        rot, prev = polar(z.T @ ref[j]), j
    return rot


def weak_directions(z: np.ndarray, ref: np.ndarray, rot: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` directions (attacker's frame) where the matched cross covariance is weakest."""
    j = _nearest(z, ref, rot)[0]
    _, _, vt = np.linalg.svd((z @ rot).T @ ref[j])
    return vt[::-1][:n]


def repair_flips(z: np.ndarray, ref: np.ndarray, rot: np.ndarray, *, n_dirs: int = 6, rounds: int = 10,
                 n_screen: int = 600, min_gain: float = MIN_GAIN, rng: np.random.Generator
                 ) -> tuple[np.ndarray, float, int]:
    """Reflect along weak directions (singly and in pairs) while that raises the objective by ``min_gain``.

    Returns the rotation, its objective and the number of accepted repairs.
    """
    d = z.shape[1]
    best = objective(z, ref, rot)
    screen = z[rng.choice(len(z), min(n_screen, len(z)), replace=False)]
    accepted = 0
    for _ in range(rounds):
        v = weak_directions(z, ref, rot, min(n_dirs, d))
        moves = [np.eye(d) - 2 * np.outer(u, u) for u in v]
        moves += [np.eye(d) - 2 * np.outer(v[i], v[i]) - 2 * np.outer(v[j], v[j])
                  for i in range(len(v)) for j in range(i + 1, len(v))]
        first = np.argsort([-objective(screen, ref, rot @ m) for m in moves])[:SCREEN_BEST]
        tried = [icp(screen, ref, rot @ moves[i], iters=5) for i in first]
        order = np.argsort([-objective(screen, ref, t) for t in tried])[:TRY_BEST]
        cands = [icp(z, ref, tried[i]) for i in order]
        vals = [objective(z, ref, c) for c in cands]
        pick = int(np.argmax(vals))
        cand, val = cands[pick], vals[pick]
        if val <= best + min_gain:
            break
        rot, best, accepted = cand, val, accepted + 1
    return rot, best, accepted


@dataclass
class Alignment:
    """The rotation (traffic frame -> attacker's frame: ``z @ rotation``), objective, history."""

    rotation: np.ndarray
    objective: float
    restarts: list = field(default_factory=list)

    @property
    def agreed(self) -> bool:
        """Whether two restarts reached the best objective (evidence of a global optimum)."""
        return sum(1 for r in self.restarts if r["objective"] >= self.objective - 1e-3) >= 2


def _centroids(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means centroids, weights and invariant features (centroid norm: tightness; log size)."""
    from sklearn.cluster import KMeans

    km = KMeans(k, n_init=1, random_state=seed).fit(x)
    c = km.cluster_centers_
    w = np.maximum(np.bincount(km.labels_, minlength=k), 1) / len(x)
    f = np.stack([np.linalg.norm(c, axis=1), np.log(w)], 1)
    return c, w / w.sum(), f / np.maximum(f.std(0), 1e-12)


def align(z: np.ndarray, ref: np.ndarray, *, rng: np.random.Generator, clusters: Optional[int] = None,
          restarts: int = 3, n_ref: Optional[int] = None, n_dirs: int = 6) -> Alignment:
    """Rotation aligning traffic directions ``z`` to reference directions ``ref`` (see module doc).

    ``clusters``: k-means centroids per side (default: :data:`CLUSTERS` in turn, at most ``N / 4``);
    ``n_ref``: reference directions used in matching (a random subset; default all).
    """
    z = np.asarray(z, np.float64)
    if n_ref is not None and n_ref < len(ref):
        ref = ref[np.sort(rng.choice(len(ref), n_ref, replace=False))]
    ref = np.asarray(ref, np.float64)
    best: Optional[Alignment] = None
    history: list = []
    for r in range(max(1, restarts)):
        k = clusters or CLUSTERS[r % len(CLUSTERS)]
        k = max(2, min(k, len(z) // 4, len(ref) // 4))
        seed = int(rng.integers(2 ** 31 - 1))
        cz, az, fz = _centroids(z, k, seed)
        cx, ax, fx = _centroids(ref, k, seed + 1)
        t = gromov_wasserstein(cz @ cz.T, cx @ cx.T, az, ax, ua=fz, ub=fx)
        rot = icp(z, ref, polar(cz.T @ t @ cx))
        first = objective(z, ref, rot)
        rot, val, fixes = repair_flips(z, ref, rot, n_dirs=n_dirs, rng=rng)
        history.append({"restart": r, "clusters": k, "objective_icp": first, "objective": val, "flip_repairs": fixes})
        log.info("alignment restart %d: objective %.4f after matching, %.4f after %d flip repairs", r, first, val,
                 fixes)
        if best is None or val > best.objective:
            best = Alignment(rotation=rot, objective=val)
        best.restarts = history
        if r >= 1 and best.agreed:
            break
    return best
