"""Shared pytest options and fixtures (after kornia's --device/--runslow options)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# float tolerance table per dtype (rtol, atol)
TOLERANCES = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False,
                     help="run tests marked slow (real cloud model, long runs)")
    parser.addoption("--device", action="store", default="cpu", choices=("cpu", "cuda", "all"),
                     help="device of the device-parametrized tests (the `device` fixture): cpu, cuda or all")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if not config.getoption("--runslow"):
        skip_slow = pytest.mark.skip(reason="slow test: pass --runslow to run it")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip_slow)
    for item in items:  # a test run on the cuda device is a gpu test (`-m gpu` selects it)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and str(callspec.params.get("device", "")).startswith("cuda"):
            item.add_marker(pytest.mark.gpu)
    if not torch.cuda.is_available():
        skip_gpu = pytest.mark.skip(reason="no CUDA device: torch.cuda.is_available() is False")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)


MAX_TEST_WORKERS = 4
"""``-n auto`` (pytest-xdist) starts one worker per usable core, at most this many: each worker
holds its own torch and session fixtures, and the suite's tests are single-threaded."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for ``-n auto``: the cores this process may use (CPU affinity), capped at MAX_TEST_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_TEST_WORKERS, cores))


def _devices(config: pytest.Config) -> list[str]:
    opt = config.getoption("--device")
    if opt == "all":
        return ["cpu", "cuda"]
    return [opt]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", _devices(metafunc.config))


def _shared_data_dir() -> Path | None:
    env = os.environ.get("OWSD_DATA_DIR")
    cand = Path(env) if env else REPO.parent / "shared" / "data"
    return cand if cand.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data directory (../shared/data or $OWSD_DATA_DIR); skips when absent."""
    d = _shared_data_dir()
    if d is None:
        pytest.skip("shared data directory not found (set OWSD_DATA_DIR or place it at ../shared/data)")
    return d


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Every test on one torch/BLAS thread (restored after): small problems run many times faster on
    shared cores, the suite's workers (``-n auto``) do not oversubscribe them, and an attack's figures
    do not depend on which tests ran before it in the same process (a thread count changes the order
    of floating-point sums, and an attack's optimization can amplify that)."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _exact_float32_on_cuda():
    """References on CUDA in true float32: no TF32 in cuDNN convolutions or cuBLAS products."""
    if torch.cuda.is_available():
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    yield


@pytest.fixture
def ext(device: str):
    """The compiled owsd ops for ``device``: skips on CPU when they cannot be built here; on
    CUDA (asked for with ``--device cuda``) a failed CUDA build is a test failure, not a skip."""
    import shutil

    from owsd.ops import _build

    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        pytest.skip(f"no C++ compiler ({cxx!r} not on PATH): compiled owsd ops cannot be built")
    state = _build.ensure_built()
    if device == "cuda":
        if not state.cuda_ok:
            pytest.fail(f"CUDA kernels unavailable: {state.cuda_reason}")
    elif not state.cpu_ok:
        pytest.skip(f"compiled owsd ops unavailable: {state.cpu_reason}")
    return state


@pytest.fixture
def tol():
    """Tolerance table: tol(dtype) -> dict(rtol=..., atol=...)."""
    def _get(dtype: torch.dtype) -> dict:
        rtol, atol = TOLERANCES[dtype]
        return {"rtol": rtol, "atol": atol}
    return _get
