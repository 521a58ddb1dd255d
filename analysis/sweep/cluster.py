"""Where a sweep runs: an embedded Dask ``LocalCluster``, or an existing scheduler, through one client.

The two differ only in how the :class:`distributed.Client` is made; the sweep's code is the
same.  The embedded cluster starts ``workers`` processes of one task each (a task is one
attack: work is spread across processes, not threads of one interpreter), and each task gets
``usable cores // workers`` torch/BLAS threads (:func:`owsd.threads.usable_cores`), so the
workers together never run more threads than the cores this process may use.  Tasks on an
existing cluster get 1 thread unless told otherwise (the workers' machines are not ours to
count).

Example:
    >>> task_threads(workers=2, scheduler=None, threads=None) >= 1
    True
    >>> task_threads(workers=4, scheduler="tcp://10.0.0.1:8786", threads=None)
    1
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from typing import Iterator, Optional

from owsd.threads import usable_cores

log = logging.getLogger(__name__)


def task_threads(*, workers: int, scheduler: Optional[str], threads: Optional[int]) -> int:
    """Torch/BLAS threads of each task: ``threads`` if given, else cores / workers (1 on a remote cluster)."""
    if threads is not None:
        return int(threads)
    if scheduler is not None:
        return 1
    return max(1, usable_cores() // max(1, workers))


def dashboard_link(client) -> Optional[str]:
    """The Dask dashboard's address, or ``None`` when the scheduler serves none."""
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:  # an old or unreachable scheduler: no link
        return None
    return client.dashboard_link if "dashboard" in services else None


@contextlib.contextmanager
def open_client(*, workers: int = 1, scheduler: Optional[str] = None, timeout: float = 30.0) -> Iterator:
    """A :class:`distributed.Client` on ``scheduler``, or on an embedded cluster of ``workers`` processes."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({exc})") from None
        try:
            yield client
        finally:
            client.close()
        return
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(max(logging.WARNING, quiet.getEffectiveLevel()))
    # the dashboard on a free port (":0"): several sweeps on one machine do not fight over 8787
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=":0", silence_logs=logging.WARNING)
    client = Client(cluster)
    try:
        yield client
    finally:
        quiet.setLevel(logging.ERROR)  # a worker slow to exit is killed by its nanny: no news
        client.close(timeout=10)
        cluster.close(timeout=20)  # busy workers are killed by their nannies, not waited for
        quiet.setLevel(level)


def has_dashboard_pages() -> bool:
    """Whether this machine can draw the dashboard's pages (they need ``bokeh``)."""
    return importlib.util.find_spec("bokeh") is not None
