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
from typing import Any, Optional, Sequence

from analysis.audit.errors import AuditError
from owsd.cloud import CLOUD_NAMES, Cloud
from owsd.cloud_sources import is_cloud_source
from owsd.data import DATASETS, is_builtin

BUDGETS = ("smoke", "standard", "full")


@dataclass
class AuditConfig:
    """Settings of one audit.

    Attributes:
        out: run directory (created; an existing audit of the same target is resumed).
        dataset, data_dir: the victim's data (``digits`` is built in); ``dataset`` may be a path
            to your own data (a folder of class subfolders or an ``.npz`` of x, y; no ``data_dir``).
        image_size: resize every image to this square size (``None``: the data's own size).
        cloud: a cloud name, source (``PATH.onnx``, ``MODULE:CALLABLE``, a KServe V2 URL) or
            :class:`~owsd.cloud.Cloud`, or ``None`` for none (attacks that need one become ``n/a``).
        cloud_options: keyword arguments of :func:`owsd.cloud_sources.open_cloud` (interface settings,
            HTTP settings); cloud_resize: ``bilinear`` or ``refuse`` for a cloud of another input size.
        budget: ``smoke``, ``standard`` or ``full`` (attack parameters, victim sizes, utility).
        seed: seed of every attack's own randomness (and the victim's data split).
        only, exclude: attack names (or job ids) to restrict to / leave out.
        utility: measure the scheme's utility (``False`` to skip).
        utility_sizes: ``(n_train, n_test)`` of the utility measurement (``None``: the budget's,
            :data:`analysis.audit.utility.UTILITY_BUDGETS`), e.g. ``(10000, 2000)`` for a study.
        threads: torch/BLAS (and onnxruntime cloud) threads during the audit (``None``: leave as
            is).  Default 1: the attacks' small networks gain little from a second thread and lose
            10-20x when threads outnumber the free cores of a shared machine.
        command: the command line, recorded in the report.
    """

    out: str | Path = "owsd-audit"
    dataset: str | Path = "digits"
    data_dir: Optional[str | Path] = None
    image_size: Optional[int] = None
    cloud: Optional[Any] = "tiny"
    cloud_options: Optional[dict] = None
    cloud_resize: str = "bilinear"
    budget: str = "smoke"
    seed: int = 0
    only: Optional[Sequence[str]] = None
    exclude: Sequence[str] = ()
    utility: bool = True
    utility_sizes: Optional[tuple[int, int]] = None
    device: str = "cpu"
    verbose: bool = True
    threads: Optional[int] = 1
    html: bool = True
    command: Optional[str] = None

    def validate(self) -> None:
        """Raise :class:`AuditError` on a setting the audit cannot honour."""
        if self.budget not in BUDGETS:
            raise AuditError(f"budget must be one of {BUDGETS}, got {self.budget!r}")
        user_data = not is_builtin(self.dataset)
        if user_data and not Path(self.dataset).exists():
            raise AuditError(f"unknown dataset {self.dataset!r}; expected one of {DATASETS}, or the path of a folder "
                             "(one subfolder per class) or an .npz with x and y")
        if user_data and self.data_dir is not None:
            raise AuditError(f"data directory {self.data_dir}: not used with dataset {self.dataset} (a path names the "
                             "data itself); it is for the built-in datasets")
        if self.dataset == "digits" and self.data_dir is not None:
            raise AuditError(f"data directory {self.data_dir}: dataset 'digits' is built in and reads no folder; name "
                             "the data in that folder as the dataset")
        if self.image_size is not None and (not isinstance(self.image_size, int) or not 1 <= self.image_size <= 4096):
            raise AuditError(f"image_size must be an integer in 1..4096, got {self.image_size!r}")
        if isinstance(self.cloud, str) and self.cloud not in CLOUD_NAMES and not is_cloud_source(self.cloud):
            raise AuditError(f"unknown cloud {self.cloud!r}; expected one of {CLOUD_NAMES}, a PATH.onnx, "
                             "MODULE:CALLABLE, a KServe V2 URL (or None)")
        if self.cloud is not None and not isinstance(self.cloud, (str, Cloud)):
            raise AuditError(f"cloud must be a name, a source or a Cloud, got {type(self.cloud).__name__}")
        if self.cloud_resize not in ("bilinear", "refuse"):
            raise AuditError(f"cloud_resize must be 'bilinear' or 'refuse', got {self.cloud_resize!r}")
        if self.utility_sizes is not None and (
                len(tuple(self.utility_sizes)) != 2
                or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in self.utility_sizes)):
            raise AuditError(f"utility_sizes must be two positive integers (train, test), got {self.utility_sizes!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise AuditError(f"seed must be an integer, got {self.seed!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise AuditError(f"threads must be a positive integer, got {self.threads!r}")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise AuditError(f"data directory {self.data_dir} does not exist or is not a directory")
        if not user_data and self.dataset != "digits" and self.data_dir is None:
            raise AuditError(f"dataset {self.dataset!r} needs --data-dir (a folder holding it); "
                             "the built-in dataset is 'digits'")
