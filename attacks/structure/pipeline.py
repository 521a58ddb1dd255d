"""The structure attack end to end, on any observed traffic: hull, rays, own embedding, alignment.

:func:`recover` is shared by the ciphertext and the cloud-output attacks; they differ only in
the features (pixels in the link domain, or centered log-probabilities) and in the geometry
of the center (a sphere in pixel space, an ellipsoid in output space).

Example:
    >>> import warnings, numpy as np
    >>> from attacks.key_estimation.victims import small_victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = small_victim(dataset="digits", preset="linear", seed=0, n_private=300, n_public=500,
    ...                      n_heldout=8)
    >>> rec = recover(v.private_scrambled(), public=v.public.images, spec=v.spec, kind="scrambled",
    ...               n_basis=256, rng=np.random.default_rng(0), restarts=2)
    >>> rec["matcher"].directions.shape[0], rec["structure"]["mode"]
    (300, 'affine')
"""

from __future__ import annotations

import logging
import time
from typing import Optional

import numpy as np

from attacks.structure.alignment import align
from attacks.structure.geometry import traffic_rays
from attacks.structure.hull import fit_affine_hull, image_features, output_features
from attacks.structure.outputs import StructureMatcher
from attacks.structure.own_embedding import OwnEmbedding
from owsd.spec import ScramblerSpec

log = logging.getLogger(__name__)

KINDS = ("scrambled", "outputs")
#: a sphere (or ellipsoid) residual below this marks per-image standardization (no spec known)
STANDARDIZED_RESIDUAL = 0.01
HELDOUT_ROWS = 256


def choose_mode(spec: Optional[ScramblerSpec], kind: str, w: np.ndarray) -> str:
    """``sphere``/``ellipsoid`` for standardized traffic, else ``affine`` (tested when no spec)."""
    curved = "sphere" if kind == "scrambled" else "ellipsoid"
    if spec is not None:
        return curved if spec.normalization == "standardize" else "affine"
    try:
        rel = traffic_rays(w, mode=curved).radius_rel_std
    except (ValueError, np.linalg.LinAlgError):
        return "affine"
    return curved if rel < STANDARDIZED_RESIDUAL else "affine"


def recover(data: np.ndarray, *, public: np.ndarray, spec: Optional[ScramblerSpec], kind: str, n_basis: int,
            rng: np.random.Generator, max_dim: int = 64, clusters: Optional[int] = None, restarts: int = 3,
            n_ref: Optional[int] = None) -> dict:
    """Recover the traffic's embedding directions in the attacker's frame.

    ``data``: scrambled images ``(N, C, H, W)`` or cloud outputs ``(N, K)``; ``public``: the
    attacker's public images.  Returns ``{"matcher", "structure", "spectrum", "heldout_residual",
    "seconds"}``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    t0 = time.perf_counter()
    link = "logit" if (kind == "scrambled" and spec is not None and spec.normalization == "sigmoid") else "identity"
    features = image_features(link) if kind == "scrambled" else output_features
    want = min(max_dim, spec.embedding_dim) if spec is not None else max_dim
    hull = fit_affine_hull(data, n_basis=n_basis, rank=want, features=features)
    dim = max(2, min(want, hull.intrinsic_dim, hull.rank))
    own = OwnEmbedding.fit(public, dim=dim)
    dim = own.dim
    w = hull.coordinates(data)[:, :dim]
    mode = choose_mode(spec, kind, w)
    rays = traffic_rays(w, mode=mode)
    t_geo = time.perf_counter() - t0
    al = align(rays.directions, own.public_dirs, rng=rng, clusters=clusters, restarts=restarts, n_ref=n_ref)
    directions = rays.directions @ al.rotation
    norms = None
    if mode == "affine":  # the scale of Tyler's whitening is arbitrary: match the public norms' median
        norms = rays.norms * np.median(own.public_norms) / max(np.median(rays.norms), 1e-300)
    rest = np.arange(hull.n_basis, len(data))
    held = rest[np.sort(rng.choice(len(rest), min(HELDOUT_ROWS, len(rest)), replace=False))] if len(rest) else rest
    residual = hull.residual_fraction(data[held]) if len(held) else np.zeros(0)
    structure = {**hull.summary(), "dim_used": dim, "mode": mode, "link": link,
                 "radius_rel_std": rays.radius_rel_std, "alignment_objective": al.objective,
                 "alignment_agreed": al.agreed, "alignment_restarts": len(al.restarts),
                 "alignment_objectives": " ".join(f"{r['objective']:.4f}" for r in al.restarts),
                 "flip_repairs": int(sum(r["flip_repairs"] for r in al.restarts)),
                 "heldout_residual_mean": float(residual.mean()) if len(residual) else float("nan"),
                 "seconds_geometry": t_geo, "seconds": time.perf_counter() - t0}
    log.info("structure recovered from %d observations in %.1f s: dim %d (%s), objective %.4f", len(data),
             structure["seconds"], dim, mode, al.objective)
    return {"matcher": StructureMatcher(directions=directions, own=own, norms=norms), "structure": structure,
            "spectrum": hull.spectrum, "heldout_residual": residual, "seconds": structure["seconds"]}
