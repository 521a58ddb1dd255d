"""Curves of the key-estimation attacks: functional error against pairs or queries, and
re-identification accuracy against pool size, each point with its CI, chance and cost.

Example:
    >>> from attacks.key_estimation.victims import small_victim
    >>> v = small_victim(dataset="digits", preset="linear", seed=0, n_private=32, n_public=8, n_heldout=16)
    >>> pts = error_vs_pairs(v, [20], seed=0, n_invert=2)
    >>> pts[0]["n"], pts[0]["functional_error"] < 1e-2
    (20, True)
"""

from __future__ import annotations

import logging
from typing import Iterable

from attacks.key_estimation.chosen_plaintext import ChosenPlaintextKeyEstimation
from attacks.key_estimation.ciphertext_only import CiphertextOnlyKeyEstimation
from attacks.key_estimation.known_plaintext import KnownPlaintextKeyEstimation
from attacks.victim import Victim

log = logging.getLogger(__name__)


def _point(r, n: int) -> dict:
    m = r.metrics
    pt = {"n": n, "functional_error": m["functional_error"], "ci": list(r.ci["functional_error"]),
          "p_value": r.p_values["functional_error"], "chance": r.chance["functional_error"],
          "chance_random_key": r.chance.get("functional_error_random_key"), "seconds": r.cost["seconds"],
          "queries": r.cost["queries"], "known_pairs": r.cost["known_pairs"]}
    for k in ("functional_error_link", "weight_error", "inversion_ssim", "inversion_psnr", "embedding_error"):
        if k in m:
            pt[k], pt[k + "_chance"] = m[k], r.chance.get(k)
    if "inversion_reference" in r.curves:
        pt["ssim_decoding_true_embeddings"] = r.curves["inversion_reference"][0]["ssim_decoding_true_embeddings"]
    return pt


def error_vs_pairs(victim: Victim, ns: Iterable[int], *, seed: int = 0, budget: str = "smoke", **params) -> list[dict]:
    """Known-plaintext: one scored run per number of pairs."""
    out = []
    for n in ns:
        r = KnownPlaintextKeyEstimation(n_pairs=int(n), seed=seed, budget=budget, verbose=False, **params)(victim)
        out.append(_point(r, int(n)))
        log.info("pairs %d: functional error %.3g (%.1f s)", n, out[-1]["functional_error"], out[-1]["seconds"])
    return out


def error_vs_queries(victim: Victim, ns: Iterable[int], *, seed: int = 0, budget: str = "smoke", **params) -> list[dict]:
    """Chosen-plaintext: one scored run per number of queries."""
    out = []
    for n in ns:
        r = ChosenPlaintextKeyEstimation(n_queries=int(n), seed=seed, budget=budget, verbose=False, **params)(victim)
        out.append(_point(r, int(n)))
        log.info("queries %d: functional error %.3g (%.1f s)", n, out[-1]["functional_error"], out[-1]["seconds"])
    return out


def queries_to_reach(points: list[dict], threshold: float) -> int | None:
    """The fewest queries (or pairs) whose functional error is below ``threshold``."""
    ok = [p["n"] for p in points if p["functional_error"] < threshold]
    return min(ok) if ok else None


def reid_vs_pool(victim: Victim, pools: Iterable[int], *, seed: int = 0, budget: str = "smoke", **params) -> dict:
    """Ciphertext-only: re-identification accuracy per pool size (one attack, scorer's challenges)."""
    r = CiphertextOnlyKeyEstimation(pool_sizes=tuple(int(k) for k in pools), seed=seed, budget=budget,
                                    verbose=False, **params)(victim)
    return {"learn_seconds": r.cost["seconds"], "points": r.curves["reidentification"],
            "info": r.curves["attack_info"][0]}
