"""Settings of one ``owsd bench`` run, and the constants of its result document.

Example:
    >>> BenchConfig(clouds=("tiny",), he_images=3).validate()
    >>> BenchConfig(repeats=0).validate()
    Traceback (most recent call last):
    ...
    ValueError: repeats must be a positive integer, got 0
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from owsd.cloud import CLOUD_NAMES

log = logging.getLogger(__name__)

SCHEMA = "owsd-bench-he-vs-owsd/1"
#: accuracy gap (absolute) within which two pipelines count as "comparable" for the targets
COMPARABLE_GAP = 0.05


@dataclass
class BenchConfig:
    """Settings of one ``owsd bench`` run (defaults: ~10 minutes on 2 cores, first run)."""

    data_dir: Optional[str | Path] = None
    he_images: int = 20
    #: test images packed along the slots for the amortized HE baseline (at most 4,096; 0: not run)
    he_batch: int = 0
    owsd_images: int = 256
    repeats: int = 3
    train: int = 3000
    test: int = 1000
    clouds: tuple[str, ...] = ("efficientnet-lite0", "tiny")
    he_epochs: int = 3
    he_train: Optional[int] = None
    epochs: int = 20
    batch_size: int = 64
    topk: int = 10
    preset: str = "default"
    seed: int = 0
    cache_dir: Optional[str | Path] = None
    verbose: bool = True
    #: what is sent to the cloud: float32 tensors (the scheme's setting, as in ``owsd run``) or uint8
    transmit: str = "float32"

    def validate(self) -> None:
        if self.transmit not in ("float32", "uint8"):
            raise ValueError(f"transmit must be 'float32' or 'uint8', got {self.transmit!r}")
        for name in ("he_images", "owsd_images", "repeats", "train", "test", "he_epochs", "epochs",
                     "batch_size", "topk"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.he_batch, int) or not 0 <= self.he_batch <= 4096:
            raise ValueError(f"he_batch must be an integer in [0, 4096], got {self.he_batch!r}")
        if not self.clouds:
            raise ValueError("at least one cloud is needed")
        for c in self.clouds:
            if c not in CLOUD_NAMES:
                raise ValueError(f"unknown cloud {c!r}; expected some of {CLOUD_NAMES}")

    def to_dict(self) -> dict:
        """The ``config`` of the result document (paths as text, clouds as a list)."""
        d = dataclasses.asdict(self)
        d["clouds"] = list(self.clouds)
        for k in ("data_dir", "cache_dir"):
            d[k] = None if d[k] is None else str(d[k])
        return d
