"""How many threads each workload gets, and threads that wait without spinning.

On a shared machine, OpenMP threads that spin while they wait, and two threads on matrices
too small to split, made ``owsd run`` 7x slower beside other work (256 s against 36 s with
one thread; issue 17).  The policy, in one place:

* :func:`passive_waiting` asks OpenMP to sleep, not spin, between parallel regions
  (``OMP_WAIT_POLICY=PASSIVE`` unless the user set it).  It must run before the OpenMP
  runtime starts, so ``owsd/__init__.py`` calls it before anything imports torch.
* :func:`limit` caps torch's and the BLAS libraries' threads inside a block (restored after).
* :func:`for_workload` picks a count: one thread for work below ``SMALL_FLOPS`` (the
  internal model's and the attacks' small networks, ridge solves), every usable core above
  (scrambling batches of 224x224 images, the cloud model), never more than ``--threads``.
* :func:`set_cap` is what the command line's ``--threads N`` sets (default: the cores this
  process may use).

Example:
    >>> import torch
    >>> with limit(1):
    ...     torch.get_num_threads()
    1
    >>> for_workload(1e6) == 1 and for_workload(1e12) == cap()
    True
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

SMALL_FLOPS = 5e8
"""Below this many FLOPs a call, a second thread costs more in waking and waiting than it saves."""

_CAP: Optional[int] = None


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def passive_waiting() -> None:
    """OpenMP threads sleep instead of spinning while they wait (unless ``OMP_WAIT_POLICY`` is set)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_cap(n: Optional[int]) -> None:
    """The most threads any workload may use (``None``: the usable cores); also torch's default."""
    global _CAP
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    _CAP = n
    if n is not None:
        import torch

        torch.set_num_threads(n)


def cap() -> int:
    """The current cap: ``--threads`` if given, else the usable cores."""
    return _CAP if _CAP is not None else usable_cores()


def for_workload(flops: float) -> int:
    """Threads for a call of ``flops`` floating-point operations: 1 when small, the cap when large."""
    return 1 if flops < SMALL_FLOPS else cap()


@contextlib.contextmanager
def limit(n: Optional[int]) -> Iterator[None]:
    """torch and BLAS (threadpoolctl) limited to ``n`` threads inside the block (``None``: as they are)."""
    if n is None:
        yield
        return
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)
