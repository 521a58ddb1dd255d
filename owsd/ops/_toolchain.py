"""Offline checks of the CUDA sources on machines without a GPU.

* :func:`nvcc_report` compiles ``csrc/*.cu`` for a given architecture with
  ``-Werror=all-warnings -Xptxas -v`` and parses ptxas' per-kernel registers,
  spills, stack and shared memory.
* :func:`binding_syntax_check` runs ``g++ -fsyntax-only`` on the torch-side binding
  with ``-DWITH_CUDA`` against the installed torch wheel's headers (for CPU wheels
  ``-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE`` is needed) and the CUDA toolkit headers.

Run ``python -m owsd.ops._toolchain`` for a JSON report.

Example:
    >>> from owsd.ops import _toolchain
    >>> _toolchain.find_nvcc() is None or _toolchain.find_nvcc().endswith("nvcc")
    True
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from owsd.ops._build import CSRC, CUDA_SOURCES

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers(?:, used (\d+) barriers)?(?:, (\d+) bytes smem)?")


def find_nvcc() -> Optional[str]:
    """Path of nvcc from ``$CUDA_HOME/bin`` or ``PATH`` (None if absent)."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and (Path(home) / "bin" / "nvcc").exists():
        return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def cuda_include_dir(nvcc: Optional[str] = None) -> Optional[str]:
    """The toolkit's include directory (holding cuda_runtime_api.h), if found."""
    nvcc = nvcc or find_nvcc()
    cands = []
    if nvcc:
        cands.append(Path(nvcc).resolve().parent.parent / "include")
    cands += [Path("/usr/local/cuda/include")]
    for c in cands:
        if (c / "cuda_runtime_api.h").exists():
            return str(c)
    return None


def _demangle(names: List[str]) -> Dict[str, str]:
    filt = shutil.which("c++filt")
    if not filt or not names:
        return {n: n for n in names}
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True, check=False)
    lines = out.stdout.splitlines()
    return {n: (lines[i] if i < len(lines) else n) for i, n in enumerate(names)}


def parse_ptxas(text: str) -> List[dict]:
    """Per-kernel records from ``-Xptxas -v`` output."""
    kernels: List[dict] = []
    cur: Optional[dict] = None
    for line in text.splitlines():
        m = _ENTRY.search(line)
        if m:
            cur = {"mangled": m.group(1), "arch": m.group(2)}
            kernels.append(cur)
            continue
        if cur is None:
            continue
        m = _STACK.search(line)
        if m:
            cur.update(stack_bytes=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
            continue
        m = _REGS.search(line)
        if m:
            cur["registers"] = int(m.group(1))
            if m.group(3):
                cur["static_smem_bytes"] = int(m.group(3))
    names = _demangle([k["mangled"] for k in kernels])
    for k in kernels:
        k["name"] = names[k["mangled"]]
    return kernels


def nvcc_report(arch: str = "90", *, werror: bool = True, timeout: int = 600) -> dict:
    """Compile the ``.cu`` sources for ``sm_<arch>`` and return the ptxas report.

    Raises :class:`FileNotFoundError` without nvcc and :class:`RuntimeError`
    (with the compiler output) when compilation fails or warns under ``-Werror``.
    """
    nvcc = find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    kernels: List[dict] = []
    cmds = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in CUDA_SOURCES:
            cmd = [nvcc, "-c", str(CSRC / src), "-o", str(Path(tmp) / (src + ".o")), "-std=c++17", "-O3",
                   f"-gencode=arch=compute_{arch},code=[sm_{arch},compute_{arch}]",
                   "-Xptxas", "-v", f"-I{CSRC}"]
            if werror:
                cmd.append("-Werror=all-warnings")
            cmds.append(" ".join(cmd))
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
            text = proc.stdout + proc.stderr
            if proc.returncode != 0:
                raise RuntimeError(f"nvcc failed ({proc.returncode}) on {src}:\n{text}")
            kernels += parse_ptxas(text)
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False).stdout
    return {
        "nvcc": nvcc,
        "nvcc_version": version.strip().splitlines()[-1] if version.strip() else "",
        "arch": f"sm_{arch}",
        "commands": cmds,
        "kernels": kernels,
        "total_spill_bytes": sum(k.get("spill_stores", 0) + k.get("spill_loads", 0) for k in kernels),
    }


def binding_syntax_check(*, with_cuda: bool = True, timeout: int = 600) -> dict:
    """``g++ -fsyntax-only`` of ``csrc/bindings.cpp`` against the torch headers; returns the command/output."""
    from torch.utils.cpp_extension import include_paths

    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise FileNotFoundError(f"C++ compiler {cxx!r} not found")
    cmd = [cxx, "-fsyntax-only", "-std=c++20", f"-I{CSRC}"] + [f"-I{p}" for p in include_paths()]
    if with_cuda:
        inc = cuda_include_dir()
        if inc is None:
            raise FileNotFoundError("CUDA toolkit headers (cuda_runtime_api.h) not found")
        cmd += ["-DWITH_CUDA", "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE", f"-I{inc}"]
    cmd.append(str(CSRC / "bindings.cpp"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return {"command": " ".join(cmd), "returncode": proc.returncode, "output": (proc.stdout + proc.stderr)[-4000:]}


def main() -> None:  # pragma: no cover - CLI
    """Print the nvcc report and the binding syntax check as JSON."""
    report = {}
    try:
        report["nvcc"] = nvcc_report()
    except (FileNotFoundError, RuntimeError) as exc:
        report["nvcc"] = {"error": str(exc)}
    try:
        report["binding_syntax"] = binding_syntax_check()
    except FileNotFoundError as exc:
        report["binding_syntax"] = {"error": str(exc)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
