"""Ranking audited kernels on privacy and utility: Pareto fronts, then fewer failures, then utility.

The one ranking of ``owsd audit-compare`` (:mod:`analysis.compare`, rows from audit reports)
and of a sweep's frontier (:mod:`analysis.sweep.frontier`, rows pooled over seeds).  A row
has ``utility`` (higher is better), ``privacy`` (the attacker's advantage: lower is better)
and ``fails``; rows without both figures dominate and are dominated by none.

Example:
    >>> rows = [{"label": "a", "utility": 0.9, "privacy": 0.9, "fails": 3},
    ...         {"label": "b", "utility": 0.8, "privacy": 0.1, "fails": 0},
    ...         {"label": "c", "utility": 0.7, "privacy": 0.5, "fails": 1}]
    >>> [(r["label"], r["rank"], r["pareto"]) for r in rank_rows(rows)]
    [('b', 1, True), ('a', 2, True), ('c', 3, False)]
"""

from __future__ import annotations

from typing import Sequence


def _dominates(a: dict, b: dict) -> bool:
    ua, ub = a.get("utility"), b.get("utility")
    pa, pb = a.get("privacy"), b.get("privacy")
    if None in (ua, ub, pa, pb):
        return False
    return ua >= ub and pa <= pb and (ua > ub or pa < pb)


def rank_rows(rows: Sequence[dict]) -> list[dict]:
    """Rank rows: Pareto fronts on (utility up, advantage down), then fewer fails, then utility."""
    rows = [dict(r) for r in rows]
    remaining, front_of = list(range(len(rows))), {}
    level = 0
    while remaining:
        front = [i for i in remaining if not any(_dominates(rows[j], rows[i]) for j in remaining if j != i)]
        for i in front:
            front_of[i] = level
        remaining = [i for i in remaining if i not in front]
        level += 1
    order = sorted(range(len(rows)), key=lambda i: (front_of[i], rows[i].get("fails", 0),
                                                    -(rows[i].get("utility") or 0.0)))
    out = []
    for rank, i in enumerate(order, 1):
        r = rows[i]
        r["rank"], r["pareto"] = rank, front_of[i] == 0
        out.append(r)
    return out
