"""The settings of one audit (:class:`AuditConfig`) and their validation.

Example:
    >>> AuditConfig(budget="smoke").validate()
    >>> AuditConfig(budget="huge").validate()
    Traceback (most recent call last):
    ...
    analysis.audit.errors.AuditError: budget must be one of ('smoke', 'standard', 'full'), got 'huge'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from analysis.audit.errors import AuditError
from owsd.cloud import CLOUD_NAMES
from owsd.data import DATASETS

BUDGETS = ("smoke", "standard", "full")


@dataclass
class AuditConfig:
    """Settings of one audit.

    Attributes:
        out: run directory (created; an existing audit of the same target is resumed).
        dataset, data_dir: the victim's data (``digits`` is built in).
        cloud: cloud model name, or ``None`` for none (attacks that need one become ``n/a``).
        budget: ``smoke``, ``standard`` or ``full`` (attack parameters, victim sizes, utility).
        seed: seed of every attack's own randomness (and the victim's data split).
        only, exclude: attack names (or job ids) to restrict to / leave out.
        utility: measure the scheme's utility (``False`` to skip).
        threads: torch/BLAS (and onnxruntime cloud) threads during the audit (``None``: leave as
            is).  Default 1: the attacks' small networks gain little from a second thread and lose
            10-20x when threads outnumber the free cores of a shared machine.
        command: the command line, recorded in the report.
    """

    out: str | Path = "owsd-audit"
    dataset: str = "digits"
    data_dir: Optional[str | Path] = None
    cloud: Optional[str] = "tiny"
    budget: str = "smoke"
    seed: int = 0
    only: Optional[Sequence[str]] = None
    exclude: Sequence[str] = ()
    utility: bool = True
    device: str = "cpu"
    verbose: bool = True
    threads: Optional[int] = 1
    html: bool = True
    command: Optional[str] = None

    def validate(self) -> None:
        """Raise :class:`AuditError` on a setting the audit cannot honour."""
        if self.budget not in BUDGETS:
            raise AuditError(f"budget must be one of {BUDGETS}, got {self.budget!r}")
        if self.dataset not in DATASETS:
            raise AuditError(f"unknown dataset {self.dataset!r}; expected one of {DATASETS}")
        if self.cloud is not None and self.cloud not in CLOUD_NAMES:
            raise AuditError(f"unknown cloud {self.cloud!r}; expected one of {CLOUD_NAMES} (or None)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise AuditError(f"seed must be an integer, got {self.seed!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise AuditError(f"threads must be a positive integer, got {self.threads!r}")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise AuditError(f"data directory {self.data_dir} does not exist or is not a directory")
        if self.dataset != "digits" and self.data_dir is None:
            raise AuditError(f"dataset {self.dataset!r} needs --data-dir (a folder holding it); "
                             "the built-in dataset is 'digits'")
