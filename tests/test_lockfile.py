"""The build lock: holders named, dead or too-old holders taken over, waiters told what they wait for."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from owsd.lockfile import LockTimeout, PidLock, _proc_start, pid_alive, read_holder

REPO = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write(path: Path, **fields) -> None:
    rec = {"pid": os.getpid(), "host": os.uname().nodename, "proc_start": _proc_start(os.getpid()),
           "started": time.time(), "what": "a test holder", "token": "other"}
    rec.update(fields)
    path.write_text(json.dumps(rec))


def test_holder_recorded_and_released(tmp_path):
    path = tmp_path / "lock"
    with PidLock(path, what="unit test") as lk:
        h = read_holder(path)
        assert h["pid"] == os.getpid() and h["what"] == "unit test" and h["host"] == os.uname().nodename
        assert abs(h["started"] - time.time()) < 60 and lk.took_over is None
    assert not path.exists()


def test_dead_holder_is_taken_over_with_a_warning(tmp_path, caplog):
    path = tmp_path / "lock"
    pid = _dead_pid()
    _write(path, pid=pid, proc_start=None)
    with caplog.at_level(logging.WARNING, logger="owsd.lockfile"):
        with PidLock(path, what="t", timeout=5) as lk:
            assert read_holder(path)["pid"] == os.getpid()
    assert lk.took_over["pid"] == pid
    assert f"PID {pid}) is no longer running" in caplog.text and "taking over the stale lock" in caplog.text


def test_zombie_and_reused_pids_count_as_dead(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])  # not waited for: a zombie once it exits
    for _ in range(200):
        if not pid_alive(p.pid):
            break
        time.sleep(0.05)
    assert not pid_alive(p.pid)
    p.wait()
    assert pid_alive(os.getpid())
    if _proc_start(os.getpid()) is not None:  # Linux: a PID now held by another process is not the holder
        assert not pid_alive(os.getpid(), _proc_start(os.getpid()) + 1)


def test_lock_older_than_the_bound_is_taken_over(tmp_path, caplog):
    path = tmp_path / "lock"
    _write(path, started=time.time() - 7200)  # a live holder (this process), two hours old
    with caplog.at_level(logging.WARNING, logger="owsd.lockfile"):
        with PidLock(path, what="t", stale_after=3600, timeout=5) as lk:
            pass
    assert lk.took_over is not None and "older than 3600 s" in caplog.text


def test_empty_lock_is_stale_only_after_the_grace_period(tmp_path):
    path = tmp_path / "lock"
    path.write_text("")
    with pytest.raises(LockTimeout, match="unidentified holder"):
        PidLock(path, what="t", timeout=0.3, poll=0.05).acquire()
    old = time.time() - 60
    os.utime(path, (old, old))
    with PidLock(path, what="t", timeout=2) as lk:
        pass
    assert lk.took_over == {}


def test_live_holder_makes_the_waiter_say_what_it_waits_for(tmp_path, caplog):
    path = tmp_path / "lock"
    code = ("import sys, time; sys.path.insert(0, %r); from owsd.lockfile import PidLock\n"
            "with PidLock(%r, what='the holder test'):\n    print('held', flush=True); time.sleep(1.5)\n"
            % (str(REPO), str(path)))
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with caplog.at_level(logging.WARNING, logger="owsd.lockfile"):
            with pytest.raises(LockTimeout, match=f"PID {holder.pid}"):
                PidLock(path, what="t", timeout=0.2, poll=0.05).acquire()
            with PidLock(path, what="t", timeout=30, poll=0.05) as lk:
                assert read_holder(path)["pid"] == os.getpid()
        assert lk.waited_s > 0.3 and lk.took_over is None
        assert f"held by PID {holder.pid}" in caplog.text and "the holder test" in caplog.text
    finally:
        holder.wait(timeout=30)


def test_release_leaves_a_take_over_alone(tmp_path):
    path = tmp_path / "lock"
    lk = PidLock(path, what="t").acquire()
    _write(path, token="someone-else")  # another process took it over (we were too old)
    lk.release()
    assert read_holder(path)["token"] == "someone-else"


def _worker(path: str, log_path: str, n: int) -> None:
    for _ in range(n):
        with PidLock(path, what="race", poll=0.01):
            with open(log_path, "a") as fh:
                fh.write(f"in {os.getpid()} {time.monotonic():.6f}\n")
            time.sleep(0.01)
            with open(log_path, "a") as fh:
                fh.write(f"out {os.getpid()} {time.monotonic():.6f}\n")


def test_mutual_exclusion_across_processes_even_from_a_stale_start(tmp_path):
    path, log_path = tmp_path / "lock", tmp_path / "log"
    _write(path, pid=_dead_pid(), proc_start=None)  # every worker sees a stale lock first
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(path), str(log_path), 5)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    events = [ln.split()[0] for ln in log_path.read_text().splitlines()]
    assert len(events) == 40 and events == ["in", "out"] * 20  # never two holders at once
