"""The ops build cache: a killed build never hangs later commands; checkouts of identical code share a build."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from owsd.ops import _build

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_compile(monkeypatch, tmp_path):
    """No compiler: record each _compile call and the include paths it would use."""
    monkeypatch.setenv("OWSD_OPS_CACHE", str(tmp_path / "ops"))
    calls = []

    def compile_(name, sources, build_dir, config, with_cuda):
        calls.append({"name": name, "sources": sources, "build_dir": build_dir,
                      "torch_lock_present": (Path(build_dir) / _build.TORCH_LOCK_FILE).exists(),
                      "holder": json.loads((Path(build_dir) / _build.LOCK_FILE).read_text())})
    monkeypatch.setattr(_build, "_compile", compile_)
    return calls


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_build_holds_a_lock_naming_this_process_and_compiles_a_staged_copy(fake_compile):
    name, bdir, _ = _build._try_build(False)
    (call,) = fake_compile
    assert call["holder"]["pid"] == os.getpid() and name in call["holder"]["what"]
    assert all(Path(s).parent == Path(bdir) / "src" for s in call["sources"])
    for f in _build.HEADERS:
        assert (Path(bdir) / "src" / f).read_bytes() == (_build.CSRC / f).read_bytes()
    assert not (Path(bdir) / _build.LOCK_FILE).exists()  # released


def test_killed_build_is_taken_over_and_torch_lock_removed(fake_compile, caplog):
    cfg = _build.build_config(False)
    bdir = _build.cache_root() / _build.source_hash(cfg)
    bdir.mkdir(parents=True)
    dead = _dead_pid()
    (bdir / _build.LOCK_FILE).write_text(json.dumps({"pid": dead, "host": os.uname().nodename,
                                                     "started": time.time() - 5, "what": "killed build"}))
    (bdir / _build.TORCH_LOCK_FILE).write_text("")  # what torch's FileBaton leaves when killed
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING):
        _build._try_build(False)
    assert time.monotonic() - t0 < 30
    (call,) = fake_compile
    assert not call["torch_lock_present"]
    assert f"PID {dead}) is no longer running" in caplog.text
    assert "left by an interrupted build" in caplog.text


def test_leftover_torch_lock_without_our_lock_is_removed(fake_compile, caplog):
    cfg = _build.build_config(False)
    bdir = _build.cache_root() / _build.source_hash(cfg)
    bdir.mkdir(parents=True)
    (bdir / _build.TORCH_LOCK_FILE).write_text("")
    with caplog.at_level(logging.WARNING):
        _build._try_build(False)
    assert not fake_compile[0]["torch_lock_present"] and "interrupted build" in caplog.text


def test_staging_rewrites_nothing_that_is_unchanged(fake_compile, tmp_path):
    cfg = _build.build_config(False)
    src = _build._stage_sources(tmp_path / "b", cfg)
    before = {p.name: p.stat().st_mtime_ns for p in src.iterdir()}
    time.sleep(0.02)
    _build._stage_sources(tmp_path / "b", cfg)
    assert {p.name: p.stat().st_mtime_ns for p in src.iterdir()} == before


def test_cache_key_covers_every_header_and_no_checkout_path(monkeypatch, tmp_path):
    cfg = _build.build_config(False)
    key = _build.source_hash(cfg)
    for copy in ("a", "b"):  # two checkouts of identical code: one key
        shutil.copytree(_build.CSRC, tmp_path / copy)
        monkeypatch.setattr(_build, "CSRC", tmp_path / copy)
        assert _build.source_hash(cfg) == key
    (tmp_path / "b" / "extra_helper.h").write_text("// a header not listed in HEADERS\n")
    assert _build.source_hash(cfg) != key
    assert "extra_helper.h" in _build._staged_files(cfg)


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs Linux /proc")
def test_orphaned_compilers_are_found_by_their_working_folder(tmp_path):
    other = subprocess.Popen(["sleep", "30"], cwd=tmp_path)  # not a toolchain process: ignored
    # ninja runs compilers via sh; a session of its own, so that the kill below reaches sh's child too
    # (a child forked but not yet exec'd into `sleep` is still an `sh` working in tmp_path)
    orphan = subprocess.Popen(["sh", "-c", "sleep 30; true"], cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while orphan.pid not in _build._busy_pids(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        busy = _build._busy_pids(tmp_path)
        assert orphan.pid in busy and other.pid not in busy
    finally:
        other.kill()
        os.killpg(orphan.pid, signal.SIGKILL)
        for p in (other, orphan):
            p.wait()
    deadline = time.monotonic() + 10  # the killed group's processes leave /proc once reaped
    while _build._busy_pids(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _build._busy_pids(tmp_path) == []


def test_stale_bound_from_the_environment(monkeypatch):
    monkeypatch.setenv("OWSD_OPS_LOCK_STALE_S", "12")
    assert _build.stale_after() == 12.0
    monkeypatch.setenv("OWSD_OPS_LOCK_STALE_S", "nonsense")
    assert _build.stale_after() == _build.STALE_AFTER_S


# ----------------------------------------------------------------------------- real builds (slow)
def _env(cache: Path, pythonpath: Path) -> dict:
    return dict(os.environ, OWSD_OPS_CACHE=str(cache), PYTHONPATH=str(pythonpath), OMP_NUM_THREADS="1")


@pytest.mark.slow
def test_kill_during_first_build_then_rerun_finishes_with_a_warning(tmp_path):
    """The issue's reproduction: SIGKILL during the first build, then the same command again."""
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler: nothing is built, nothing can hang")
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32))
    env = _env(tmp_path / "ops", REPO)
    keygen = [sys.executable, "-m", "owsd.cli", "keygen", "--preset", "default", "--seed", "0", "--out",
              str(tmp_path / "k.key")]
    subprocess.run(keygen, env=env, check=True, capture_output=True, timeout=120)
    cmd = [sys.executable, "-m", "owsd.cli", "scramble", "--key", str(tmp_path / "k.key"), "--in",
           str(tmp_path / "emb.npy"), "--embeddings", "--out", str(tmp_path / "s.npy"), "--quiet"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "ops").glob(f"*/{_build.TORCH_LOCK_FILE}")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # inside the compile
    first.kill()
    first.wait()
    # Before the fix this waited forever.  Now it takes one compile (the killed build's orphaned
    # compilers finish first and their objects are reused): ~1.5 min on a loaded 2-core machine.
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr
    assert "taking over the stale lock" in second.stderr and "is no longer running" in second.stderr
    assert "Traceback" not in second.stderr


@pytest.mark.slow
def test_two_checkouts_of_identical_code_share_one_build(tmp_path):
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler")
    code = "import owsd.ops as o; s = o.status(); assert s['extension']['cpu_built'], s"
    for copy in ("a", "b"):
        shutil.copytree(REPO / "owsd", tmp_path / copy / "owsd", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "ops"
    subprocess.run([sys.executable, "-c", code], env=_env(cache, tmp_path / "a"), check=True, timeout=600)
    objects = {p: p.stat().st_mtime_ns for p in cache.glob("*/*.o")}
    assert objects
    for copy in ("b", "a", "b"):
        subprocess.run([sys.executable, "-c", code], env=_env(cache, tmp_path / copy), check=True, timeout=600)
    assert len(list(cache.iterdir())) == 1
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*/*.o")} == objects  # nothing recompiled
