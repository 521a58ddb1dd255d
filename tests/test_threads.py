"""The thread policy (owsd.threads): passive OpenMP waiting, caps, --threads on every command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from owsd import threads
from owsd.cli import build_parser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_owsd_asks_openmp_not_to_spin():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", "import owsd, os; print(os.environ['OMP_WAIT_POLICY'])"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.stdout.strip() == "PASSIVE", out.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # a user's own setting wins
    out = subprocess.run([sys.executable, "-c", "import owsd, os; print(os.environ['OMP_WAIT_POLICY'])"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.stdout.strip() == "ACTIVE"


def test_workloads_and_caps():
    before = torch.get_num_threads()
    try:
        threads.set_cap(1)
        assert threads.cap() == 1 and threads.for_workload(1e12) == 1 and torch.get_num_threads() == 1
        threads.set_cap(None)
        assert threads.cap() == threads.usable_cores() and threads.for_workload(1e3) == 1
        with pytest.raises(ValueError):
            threads.set_cap(0)
        with threads.limit(1):
            assert torch.get_num_threads() == 1
    finally:
        threads.set_cap(None)
        torch.set_num_threads(before)


def test_every_command_takes_threads():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = [name for name, p in sub.choices.items() if "--threads" not in p._option_string_actions]
    assert missing == []
    a = parser.parse_args(["run", "--threads", "1"])
    assert a.thread_cap == 1
