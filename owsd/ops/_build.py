"""Compile-on-first-use of the owsd C++/CUDA operator library, with a cache and a fallback.

Nothing here runs at ``import owsd``: the library is built (or loaded from the
cache) the first time :func:`ensure_built` is called, which the public entry
points of :mod:`owsd.ops` do on their first call, as does :func:`owsd.ops.status`.

* Sources: ``csrc/*.cpp`` (+ ``csrc/*.cu`` only when torch has CUDA and a device
  is present).  Compiled with :func:`torch.utils.cpp_extension.load` (ninja).
* Cache: ``$OWSD_OPS_CACHE/<key>`` (default ``~/.cache/owsd/ops/<key>``) where
  ``<key>`` hashes the sources and every header in ``csrc/``, the compiler flags
  (including the SIMD flags detected for this CPU), the compiler, Python, torch
  and CUDA versions.  The sources are compiled from a copy inside the build
  folder (``<key>/src``), so two checkouts of identical code share one build
  instead of rebuilding on every alternation (ninja's file holds no checkout path).
* Lock: one build per folder at a time, under ``<key>/owsd-build.lock`` (a
  :class:`owsd.lockfile.PidLock`: holder PID, host and start time inside).  A
  waiting command logs what it waits for; a lock whose holder died (SIGKILL,
  SIGTERM) or that is older than ``$OWSD_OPS_LOCK_STALE_S`` seconds (default
  1800) is taken over with a warning, together with the ``lock`` file that
  :func:`torch.utils.cpp_extension.load` leaves behind when killed mid-build
  (torch would wait on it forever) and after the dead build's orphaned compiler
  processes have finished.
* SIMD flags: ``-mavx2 -mfma`` (+ AVX-512 F/DQ/BW/VL) when ``/proc/cpuinfo``
  lists them; ``OWSD_OPS_ISA=none|avx2|avx512`` overrides the detection.
* Any failure (no compiler, compile error, load error) leaves the reference
  implementation active; ONE :class:`RuntimeWarning` is issued and
  :func:`owsd.ops.status` reports the reason.

Example:
    >>> from owsd.ops import _build
    >>> st = _build.ensure_built()          # compiles once, then cached
    >>> isinstance(st.cpu_ok, bool)
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import List, Optional

import torch

from owsd.lockfile import PidLock

log = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parent / "csrc"
CPU_SOURCES = ("bindings.cpp", "deconv_cpu.cpp", "affine_cpu.cpp")
CUDA_SOURCES = ("deconv_cuda.cu", "affine_cuda.cu")
HEADERS = ("deconv_index.h", "deconv_kernels.h", "affine_kernels.h")

_LOCK = threading.RLock()
LOCK_FILE = "owsd-build.lock"
TORCH_LOCK_FILE = "lock"  # torch.utils.cpp_extension's FileBaton in the build folder
STALE_AFTER_S = 1800.0
_LAYOUT = "staged-sources-v2"  # build-folder layout, hashed into the key


@dataclasses.dataclass
class ExtensionState:
    """Outcome of the (lazy) build; read it through :func:`owsd.ops.status`."""

    attempted: bool = False
    cpu_ok: bool = False
    cuda_ok: bool = False
    cpu_reason: str = "not built yet (builds on first use)"
    cuda_reason: str = "not built yet (builds on first use)"
    name: Optional[str] = None
    build_dir: Optional[str] = None
    info: str = ""
    cxx_flags: List[str] = dataclasses.field(default_factory=list)
    cuda_flags: List[str] = dataclasses.field(default_factory=list)
    warned: bool = False


STATE = ExtensionState()
"""Process-wide build state (replaced wholesale by tests)."""

_LOADED_NAME: Optional[str] = None  # name of the library loaded into this process


def cache_root() -> Path:
    """Root of the build cache: ``$OWSD_OPS_CACHE`` or ``~/.cache/owsd/ops``."""
    env = os.environ.get("OWSD_OPS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "owsd" / "ops"


def _cpu_flags_from_proc() -> set:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def isa_flags() -> List[str]:
    """SIMD flags for the CPU kernels, detected on this machine (x86-64 only)."""
    choice = os.environ.get("OWSD_OPS_ISA", "auto").lower()
    if platform.machine().lower() not in ("x86_64", "amd64") or choice == "none":
        return []
    have = _cpu_flags_from_proc()
    avx2 = ["-mavx2", "-mfma"]
    avx512 = avx2 + ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl"]
    if choice == "avx2":
        return avx2
    if choice == "avx512":
        return avx512
    if {"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx2", "fma"} <= have:
        return avx512
    if {"avx2", "fma"} <= have:
        return avx2
    return []


def _compiler_id(cmd: str) -> str:
    try:
        out = subprocess.run([cmd, "--version"], capture_output=True, text=True, timeout=30, check=False)
        return out.stdout.splitlines()[0] if out.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _want_cuda() -> bool:
    return bool(torch.version.cuda) and torch.cuda.is_available()


def cuda_arch_flags() -> List[str]:
    """``-gencode`` flags for the visible devices (``TORCH_CUDA_ARCH_LIST`` wins if set)."""
    archs = set()
    env = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if env:
        for a in env.replace(";", " ").split():
            archs.add(a.split("+")[0].replace(".", ""))
    else:
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            archs.add(f"{major}{minor}")
    return [f"-gencode=arch=compute_{a},code=[sm_{a},compute_{a}]" for a in sorted(archs)]


def build_config(with_cuda: bool) -> dict:
    """Everything that determines the compiled library (hashed into the cache key)."""
    cxx = os.environ.get("CXX", "c++")
    cflags = ["-O3", "-ffp-contract=fast", "-fno-math-errno", "-fopenmp", "-DNDEBUG"] + isa_flags()
    cuda_flags: List[str] = []
    sources = list(CPU_SOURCES)
    if with_cuda:
        cflags.append("-DWITH_CUDA")
        cuda_flags = ["-O3", "-DWITH_CUDA"] + cuda_arch_flags()
        sources += list(CUDA_SOURCES)
    return {
        "sources": sources,
        "cflags": cflags,
        "cuda_flags": cuda_flags,
        "ldflags": ["-fopenmp"],
        "cxx": cxx,
        "cxx_id": _compiler_id(cxx),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }


def _staged_files(config: dict) -> List[str]:
    """Files copied into the build folder: the sources, :data:`HEADERS` and every header in csrc."""
    extra = {p.name for p in CSRC.iterdir() if p.suffix in (".h", ".cuh") and p.is_file()} if CSRC.is_dir() else set()
    return sorted(set(config["sources"]) | set(HEADERS) | extra)


def source_hash(config: dict) -> str:
    """Cache key: sha256 over the sources, headers, the build config and the folder layout."""
    h = hashlib.sha256(_LAYOUT.encode())
    for fname in _staged_files(config):
        h.update(fname.encode())
        h.update((CSRC / fname).read_bytes())
    h.update(json.dumps(config, sort_keys=True).encode())
    return h.hexdigest()[:20]


def stale_after() -> float:
    """Seconds after which a build lock counts as stale even if its holder runs."""
    try:
        v = float(os.environ.get("OWSD_OPS_LOCK_STALE_S", STALE_AFTER_S))
    except ValueError:
        v = STALE_AFTER_S
    return v if v > 0 else STALE_AFTER_S


def _stage_sources(build_dir: Path, config: dict) -> Path:
    """Copy the sources into ``build_dir/src`` (only files that differ, so ninja sees no change)."""
    src = build_dir / "src"
    src.mkdir(parents=True, exist_ok=True)
    for fname in _staged_files(config):
        data = (CSRC / fname).read_bytes()
        dst = src / fname
        try:
            if dst.read_bytes() == data:
                continue
        except OSError:
            pass
        tmp = src / f".{fname}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, dst)
    return src


_TOOLCHAIN = {"ninja", "sh", "cc", "c++", "gcc", "g++", "cc1", "cc1plus", "clang", "clang++", "as", "ld",
              "collect2", "nvcc", "cicc", "ptxas", "fatbinary", "nvlink", "cudafe++"}


def _busy_pids(build_dir: Path) -> List[int]:
    """Toolchain processes working in ``build_dir`` (a killed build's orphaned ninja and compilers)."""
    target, me, found = str(build_dir.resolve()), os.getpid(), []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for e in entries:
        if not e.isdigit() or int(e) == me:
            continue
        try:
            cwd = os.readlink(f"/proc/{e}/cwd")
            if not (cwd == target or cwd.startswith(target + os.sep)):
                continue
            with open(f"/proc/{e}/comm", encoding="utf-8", errors="replace") as fh:
                comm = fh.read().strip()
        except OSError:
            continue
        if comm in _TOOLCHAIN:
            found.append(int(e))
    return found


def _after_takeover(build_dir: Path) -> None:
    """Clean up after a dead build: let its orphaned compilers finish, drop torch's lock file."""
    t0 = time.monotonic()
    bound, next_report = stale_after(), 0.0
    while True:
        pids = _busy_pids(build_dir)
        waited = time.monotonic() - t0
        if not pids or waited > bound:
            break
        if waited >= next_report:
            log.warning("owsd.ops: waiting for %d compiler process(es) left running by the dead build "
                        "(PIDs %s) to finish in %s", len(pids), ", ".join(map(str, pids[:8])), build_dir)
            next_report = waited + 30.0
        time.sleep(0.5)
    torch_lock = build_dir / TORCH_LOCK_FILE
    if torch_lock.exists():
        log.warning("owsd.ops: removing %s, left by an interrupted build (torch would wait on it forever)",
                    torch_lock)
        torch_lock.unlink(missing_ok=True)


def _compile(name: str, sources: List[str], build_dir: str, config: dict, with_cuda: bool) -> None:
    """Compile and load the library (tests monkeypatch this to simulate failures)."""
    from torch.utils.cpp_extension import load

    load(
        name=name,
        sources=sources,
        extra_cflags=config["cflags"],
        extra_cuda_cflags=config["cuda_flags"] or None,
        extra_ldflags=config["ldflags"],
        extra_include_paths=[str(Path(sources[0]).parent)] if sources else [str(CSRC)],
        build_directory=build_dir,
        with_cuda=with_cuda,
        is_python_module=False,
        verbose=log.isEnabledFor(logging.DEBUG),
    )


def _ops_registered() -> bool:
    try:
        torch.ops.owsd.fused_scramble  # noqa: B018 - attribute lookup raises when absent
        torch.ops.owsd.conv_transpose2d  # noqa: B018
        torch.ops.owsd.affine_scramble  # noqa: B018
        return True
    except (AttributeError, RuntimeError):
        return False


def _short(exc: BaseException, limit: int = 600) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # keep the first line and the first compiler error line, which is what matters
    errs = [ln for ln in lines if "error" in ln.lower()][:3]
    msg = " | ".join(dict.fromkeys(lines[:1] + errs))
    return msg[:limit]


def _try_build(with_cuda: bool) -> tuple:
    config = build_config(with_cuda)
    key = source_hash(config)
    name = f"owsd_ops_{key}"
    build_dir = cache_root() / key
    build_dir.mkdir(parents=True, exist_ok=True)
    lock = PidLock(build_dir / LOCK_FILE, what=f"the owsd.ops build of {name}", stale_after=stale_after())
    with lock:
        if lock.took_over is not None:
            _after_takeover(build_dir)
        elif (build_dir / TORCH_LOCK_FILE).exists():
            # every builder of this folder holds our lock, so torch's is a leftover
            _after_takeover(build_dir)
        src = _stage_sources(build_dir, config)
        sources = [str(src / s) for s in config["sources"]]
        log.info("owsd.ops: building/loading %s in %s (cuda=%s)", name, build_dir, with_cuda)
        _compile(name, sources, str(build_dir), config, with_cuda)
    return name, str(build_dir), config


def _fail(state: ExtensionState, msg: str) -> None:
    log.warning("%s", msg)
    if not state.warned:
        state.warned = True
        warnings.warn(msg, RuntimeWarning, stacklevel=4)


def ensure_built() -> ExtensionState:
    """Build/load the library once per process; return the resulting :class:`ExtensionState`."""
    global _LOADED_NAME
    state = STATE
    if state.attempted:
        return state
    with _LOCK:
        if state.attempted:
            return state
        state.attempted = True
        want_cuda = _want_cuda()
        if not want_cuda:
            state.cuda_reason = ("torch has no CUDA support (CPU wheel)" if not torch.version.cuda
                                 else "no CUDA device available")
        cxx = os.environ.get("CXX", "c++")
        if shutil.which(cxx) is None:
            state.cpu_reason = f"no C++ compiler found ({cxx!r} is not on PATH)"
            if want_cuda:
                state.cuda_reason = state.cpu_reason
            _fail(state, f"owsd.ops: compiled kernels unavailable, using the reference: {state.cpu_reason}")
            return state
        if _LOADED_NAME is not None and _ops_registered():
            # already loaded in this process (e.g. the state was reset by a test)
            attempts = []
        else:
            attempts = [True, False] if want_cuda else [False]
        errors = []
        for with_cuda in attempts:
            try:
                name, bdir, config = _try_build(with_cuda)
            except Exception as exc:  # noqa: BLE001 - any build failure means fallback
                errors.append(("cuda+cpu" if with_cuda else "cpu", _short(exc)))
                log.debug("owsd.ops build failure", exc_info=True)
                continue
            _LOADED_NAME = name
            state.name, state.build_dir = name, bdir
            state.cxx_flags, state.cuda_flags = config["cflags"], config["cuda_flags"]
            if with_cuda:
                state.cuda_ok = True
                state.cuda_reason = ""
            elif want_cuda:
                state.cuda_reason = "CUDA build failed: " + errors[-1][1]
            break
        if _ops_registered():
            from owsd.ops import _register  # local: registers the Python side only once the library is loaded

            _register.register_python_side()
            state.cpu_ok = True
            state.cpu_reason = ""
            try:
                state.info = str(torch.ops.owsd._build_info())
            except Exception:  # noqa: BLE001
                state.info = ""
            if not state.cuda_ok and want_cuda:
                _fail(state, f"owsd.ops: CUDA kernels unavailable, using the reference on CUDA: {state.cuda_reason}")
        else:
            reason = "; ".join(f"{k} build failed: {m}" for k, m in errors) or "library did not register its ops"
            state.cpu_reason = reason
            if want_cuda:
                state.cuda_reason = reason
            _fail(state, f"owsd.ops: compiled kernels unavailable, using the reference: {reason}")
        return state


def reset_state() -> ExtensionState:
    """Start from a fresh, un-attempted state (tests).  A library already loaded stays loaded."""
    global STATE
    STATE = ExtensionState()
    return STATE
