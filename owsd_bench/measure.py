"""Summaries of measured values: timings over rounds (median and spread) and accuracies (Wilson).

Example:
    >>> st = summarize([1.0, 3.0, 2.0])
    >>> st["median"], st["min"], st["max"], st["rel_spread"]
    (2.0, 1.0, 3.0, 1.0)
    >>> accuracy([1, 2, 3, 4], [1, 2, 3, 0])["accuracy"]
    0.75
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from owsd.stats import wilson_interval

log = logging.getLogger(__name__)


def summarize(values: Sequence[float]) -> dict:
    """Median, min, max, relative spread ``(max - min) / median`` and the values themselves."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        raise ValueError("nothing to summarize")
    med = float(np.median(a))
    return {"median": med, "min": float(a.min()), "max": float(a.max()),
            "rel_spread": float((a.max() - a.min()) / med) if med else 0.0,
            "runs": [float(v) for v in a]}


def accuracy(pred: Sequence[int], labels: Sequence[int]) -> dict:
    """Fraction of ``pred`` equal to ``labels``, its 95% Wilson interval and ``n``."""
    correct = int((np.asarray(pred) == np.asarray(labels)).sum())
    return {"accuracy": correct / len(labels), "ci95": list(wilson_interval(correct, len(labels))),
            "n": int(len(labels))}
