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

import time

import numpy as np
import torch

from owsd import threads as owsd_threads
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


def matmul_peak(*, threads: int, n: int = 1024, repeats: int = 5) -> dict:
    """float32 ``torch.mm`` rate (FLOP/s, best of ``repeats``) on ``threads`` threads: the FLOP ceiling of the run."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    with owsd_threads.limit(threads), torch.inference_mode():
        torch.mm(a, b)
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
    return {"flops_per_s": 2 * n ** 3 / best, "n": n, "threads": threads, "repeats": repeats, "statistic": "best"}
