"""``owsd sweep``: audits of many kernels, seeds and datasets as independent jobs on Dask distributed.

One module a job: :mod:`~analysis.sweep.kernels` (presets, spec files, grid files),
:mod:`~analysis.sweep.plan` (settings, audits, tasks), :mod:`~analysis.sweep.cluster` (the
Dask client: embedded ``LocalCluster`` or ``--scheduler``), :mod:`~analysis.sweep.worker`
(a task on a worker: the victim rebuilt from seeds and paths, one job of the audit's runner),
:mod:`~analysis.sweep.run` (prepare, run what is missing, assemble) and
:mod:`~analysis.sweep.frontier` (privacy per family vs utility over seeds, Pareto front).
Each audit of a sweep is an ordinary ``owsd audit`` run directory.

Example:
    >>> [k.name for k in kernels_from(presets=("linear", "default"))]
    ['linear', 'default']
"""

from analysis.sweep.frontier import FRONTIER_FORMAT, load_frontier, write_frontier
from analysis.sweep.kernels import GridError, Kernel, grid_kernels, kernels_from, load_grid
from analysis.sweep.plan import SweepConfig
from analysis.sweep.run import LocalClient, run_sweep

__all__ = ["FRONTIER_FORMAT", "GridError", "Kernel", "LocalClient", "SweepConfig", "grid_kernels", "kernels_from",
           "load_frontier", "load_grid", "run_sweep", "write_frontier"]
