"""Provenance of a result: the machine, the software versions, the date and the command.

Every writer of results (``owsd run``'s ``results.json``, the audit's manifest, each attack's
``result.json``, ``owsd bench`` and the ``benchmarks/`` scripts) records :func:`record`, so a
figure can always be traced to the machine, load, code and command that produced it:

* :func:`machine`: CPU model (``lscpu``, else ``/proc/cpuinfo``), cores usable by this
  process (its CPU affinity) and logical CPUs, the load average, torch's threads, the
  thread-count environment (``OMP_NUM_THREADS`` and the like), the GPUs torch sees (else
  ``None``) and a one-line ``summary``;
* :func:`versions`: Python, torch, numpy, onnxruntime (and any other distribution asked
  for), the toolkit's version and, when it runs from a git checkout, its commit and
  whether the working tree had uncommitted changes;
* :func:`record`: both, with the UTC date and the command line.

For the audit (``analysis/audit``), whose manifest still builds its own ``_machine()``:
its ``"machine"`` is :func:`machine` (the HTML report shows its ``summary``), its
``"toolkit_version"`` is ``versions()["owsd_toolkit"]``, and ``"versions": versions()``
adds the git commit.

Nothing secret is recorded: no environment variable outside an allow-list of thread
settings, no host or user name, and in the command line the value of any option whose
name says secret, token, password or API key is replaced by ``REDACTED`` (key files
are passed by path, and a path is kept).

Example:
    >>> rec = record(command=["owsd", "run", "--token", "hunter2"])
    >>> sorted(rec)
    ['command', 'date', 'machine', 'versions']
    >>> rec["command"]
    'owsd run --token REDACTED'
    >>> rec["machine"]["cores"] >= 1 and "torch" in rec["versions"]
    True
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import logging
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from owsd import __version__

log = logging.getLogger(__name__)

#: distributions whose version every record carries (``None`` when not installed)
BASE_PACKAGES = ("torch", "numpy", "onnxruntime")
#: the only environment variables recorded: thread settings, which change every timing
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: an option whose name matches this has its value redacted from the recorded command line
SECRET_OPTION = re.compile(r"^--?[\w-]*(secret|token|passw(or)?d|api[-_]?key)[\w-]*$", re.IGNORECASE)
REDACTED = "REDACTED"
_REPO = Path(__file__).resolve().parents[1]


def _run(args: Sequence[str], *, cwd: Optional[Path] = None) -> Optional[str]:
    """stdout of a short external command, or ``None`` if it is missing, fails or hangs."""
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=10, cwd=cwd, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``lscpu``, else ``/proc/cpuinfo``, else :mod:`platform`)."""
    for line in (_run(["lscpu"]) or "").splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cores_usable() -> int:
    """CPUs this process may run on (its affinity mask), not the machine's total."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - not on Linux


def load_average() -> Optional[list[float]]:
    """The 1-, 5- and 15-minute load averages, rounded to 0.01 (``None`` where unknown)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):  # pragma: no cover - not on every platform
        return None


def gpus() -> Optional[list[dict]]:
    """The CUDA devices torch sees, else ``None``.

    Each: name, compute capability, memory, SMs, CUDA version and, from ``nvidia-smi`` when
    it runs, the driver and the maximum SM and memory clocks.
    """
    if not torch.cuda.is_available():
        return None
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append({"name": p.name, "compute_capability": f"{p.major}.{p.minor}",
                    "memory_bytes": int(p.total_memory), "sm_count": int(p.multi_processor_count)})
    smi = _run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,clocks.max.mem",
                "--format=csv,noheader"])
    # nvidia-smi lists the devices in torch's order unless CUDA_VISIBLE_DEVICES reorders them
    rows = [[f.strip() for f in line.split(",")] for line in (smi or "").splitlines() if line.strip()]
    for i, g in enumerate(out):
        row = rows[i] if i < len(rows) and len(rows[i]) == 3 else [None] * 3
        g.update(cuda=torch.version.cuda, driver=row[0], max_sm_clock=row[1], max_memory_clock=row[2])
    return out


def machine() -> dict:
    """What the figures ran on, now: CPU, cores, load, threads, GPUs and a one-line ``summary``.

    This is the ``machine`` of every result document.  The audit's manifest takes it as it is
    (``"machine": provenance.machine()`` in place of ``analysis.audit._machine()``; the HTML
    report shows its ``summary``).
    """
    g = gpus()
    cores = cores_usable()
    summary = f"{cpu_model()}, {cores} cores usable, torch {torch.__version__}"
    if g:
        summary += ", " + ", ".join(d["name"] for d in g)
    return {"cpu_model": cpu_model(), "cores": cores, "logical_cpus": os.cpu_count(),
            "load_average": load_average(), "torch_threads": torch.get_num_threads(),
            "thread_env": {k: os.environ.get(k) for k in THREAD_ENV}, "platform": platform.platform(),
            "gpu": g, "summary": summary}


def package_version(dist: str) -> Optional[str]:
    """The installed version of distribution ``dist`` (``None`` if absent), without importing it."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def git_state(root: Path = _REPO) -> tuple[Optional[str], Optional[bool]]:
    """(commit, dirty) of the checkout the toolkit runs from; ``(None, None)`` outside one."""
    if not (root / ".git").exists():
        return None, None
    commit = _run(["git", "rev-parse", "HEAD"], cwd=root)
    if not commit:
        return None, None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root)
    return commit.strip(), None if status is None else bool(status.strip())


def versions(*, extra: Sequence[str] = ()) -> dict:
    """Python, :data:`BASE_PACKAGES` and ``extra`` distributions, the toolkit and its git commit."""
    commit, dirty = git_state()
    out = {"python": platform.python_version()}
    out.update({d: package_version(d) for d in (*BASE_PACKAGES, *extra)})
    out.update(owsd_toolkit=__version__, git_commit=commit, git_dirty=dirty)
    return out


def command_line(command: Union[None, str, Sequence[str]] = None) -> str:
    """``command`` (default ``sys.argv``) as one shell-quoted string, secret option values redacted."""
    if isinstance(command, str):
        try:
            command = shlex.split(command)
        except ValueError:  # unbalanced quotes: keep the text, nothing to parse
            return command
    args = list(sys.argv if command is None else command)
    out, hide_next = [], False
    for a in args:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        name, eq, _ = a.partition("=")
        if SECRET_OPTION.match(name):
            out.append(f"{name}={REDACTED}" if eq else a)
            hide_next = not eq
        else:
            out.append(a)
    return shlex.join(out)


def utc_now() -> str:
    """The date and time in UTC, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def record(*, command: Union[None, str, Sequence[str]] = None, extra_packages: Sequence[str] = ()) -> dict:
    """The provenance block of a result: ``date``, ``command``, ``machine``, ``versions``."""
    rec = {"date": utc_now(), "command": command_line(command), "machine": machine(),
           "versions": versions(extra=extra_packages)}
    log.debug("provenance: %s", rec["machine"]["summary"])
    return rec
