"""Tests of owsd.ops' build and implementation choice: fallback, warnings, env, cache key."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

import owsd.ops as ops
from ops_cases import SMALL
from ops_cases import stack as _stack
from owsd.ops import _api, _build
from owsd.ops.reference import fused_scramble_ref

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- impl selection
def test_ref_impl_never_builds(monkeypatch):
    fresh = _build.ExtensionState()
    monkeypatch.setattr(_build, "STATE", fresh)
    ws, bs, kw = _stack(SMALL)
    x = torch.randn(2, 4, 1, 1)
    y = ops.fused_scramble(x, ws, bs, **kw, activations=["relu"] * 4, normalization="sigmoid", impl="ref")
    torch.testing.assert_close(y, fused_scramble_ref(x, ws, bs, **kw, activations=["relu"] * 4,
                                                     normalization="sigmoid"))
    assert not fresh.attempted


def test_import_does_not_build():
    code = ("import owsd, owsd.ops, owsd.ops._build as b, torch; "
            "assert not b.STATE.attempted; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_build_failure_falls_back_with_one_warning(monkeypatch, tol):
    fresh = _build.ExtensionState()
    monkeypatch.setattr(_build, "STATE", fresh)
    monkeypatch.setattr(_build, "_ops_registered", lambda: False)

    def boom(*args, **kwargs):
        raise RuntimeError("Error building extension 'owsd_ops': simulated compiler error")

    monkeypatch.setattr(_build, "_compile", boom)
    monkeypatch.setattr(_api, "_DEFAULT_IMPL", None)
    monkeypatch.delenv("OWSD_OPS_IMPL", raising=False)
    ws, bs, kw = _stack(SMALL)
    x = torch.randn(2, 4, 1, 1)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        y1 = ops.fused_scramble(x, ws, bs, **kw, activations=["relu"] * 4, normalization="none")
        y2 = ops.conv_transpose2d(x, ws[0], bs[0])
        st = ops.status()
        ops.fused_scramble(x, ws, bs, **kw, activations=["relu"] * 4, normalization="none")
    ours = [w for w in rec if "owsd.ops" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in rec]
    assert issubclass(ours[0].category, RuntimeWarning)
    assert "simulated compiler error" in str(ours[0].message)
    torch.testing.assert_close(y1, fused_scramble_ref(x, ws, bs, **kw, activations=["relu"] * 4,
                                                      normalization="none"))
    torch.testing.assert_close(y2, F.conv_transpose2d(x, ws[0], bs[0]))
    assert st["cpu"]["impl"] == "ref"
    assert "simulated compiler error" in st["cpu"]["reason"]
    assert st["extension"]["cpu_built"] is False
    with pytest.raises(RuntimeError, match="impl='ext'.*simulated compiler error"):
        ops.fused_scramble(x, ws, bs, **kw, activations=["relu"] * 4, normalization="none", impl="ext")


def test_missing_compiler_reason(monkeypatch):
    fresh = _build.ExtensionState()
    monkeypatch.setattr(_build, "STATE", fresh)
    monkeypatch.setenv("CXX", "definitely-not-a-compiler-owsd")
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        st = _build.ensure_built()
    assert not st.cpu_ok and "no C++ compiler" in st.cpu_reason


def test_ext_error_when_unavailable(monkeypatch):
    st = _build.ExtensionState(attempted=True, cpu_ok=False, cpu_reason="compiler exploded")
    monkeypatch.setattr(_build, "STATE", st)
    with pytest.raises(RuntimeError, match="impl='ext' requested.*compiler exploded"):
        ops.conv_transpose2d(torch.randn(1, 2, 3, 3), torch.randn(2, 2, 3, 3), impl="ext")
    if not torch.cuda.is_available():  # CUDA kernels never exist on a CPU-only torch
        st.cpu_ok = True
        with pytest.raises(RuntimeError, match="impl='ext' requested.*on cuda"):
            _api._use_ext("ext", torch.device("cuda"))


def test_default_impl_env_and_setter(monkeypatch):
    monkeypatch.setattr(_api, "_DEFAULT_IMPL", None)
    monkeypatch.setenv("OWSD_OPS_IMPL", "ref")
    assert ops.get_default_impl() == "ref"
    assert ops.status()["cpu"]["impl"] == "ref"
    monkeypatch.setenv("OWSD_OPS_IMPL", "bogus")
    with pytest.raises(ValueError):
        ops.get_default_impl()
    monkeypatch.delenv("OWSD_OPS_IMPL")
    ops.set_default_impl("ext")
    assert ops.get_default_impl() == "ext"
    with pytest.raises(ValueError):
        ops.set_default_impl("fast")
    with pytest.raises(ValueError):
        ops.conv_transpose2d(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 2, 2), impl="fast")


def test_status_shape(ext):
    s = ops.status()
    assert s["cpu"] == {"impl": "ext", "reason": ""} or s["default_impl"] == "ref"
    assert set(s["cuda"]) == {"impl", "reason"}
    if not torch.cuda.is_available():
        assert s["cuda"]["impl"] == "ref" and s["cuda"]["reason"]
    assert s["extension"]["build_dir"].startswith(str(_build.cache_root()))


def test_cache_key(monkeypatch, tmp_path):
    monkeypatch.setenv("OWSD_OPS_CACHE", str(tmp_path))
    assert _build.cache_root() == tmp_path
    cfg = _build.build_config(with_cuda=False)
    assert _build.source_hash(cfg) == _build.source_hash(dict(cfg))
    assert _build.source_hash(cfg) != _build.source_hash(dict(cfg, cflags=cfg["cflags"] + ["-O0"]))
    assert _build.source_hash(cfg) != _build.source_hash(dict(cfg, torch="0.0.0"))
    monkeypatch.setenv("OWSD_OPS_ISA", "none")
    assert _build.isa_flags() == []
