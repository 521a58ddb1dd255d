"""One provenance record (machine, versions, date, command) for every writer of results."""

from __future__ import annotations

import doctest
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from owsd import provenance

REPO = Path(__file__).resolve().parents[1]


def test_fields_present_and_json_ready():
    rec = provenance.record(command=["owsd", "run"])
    assert set(rec) == {"date", "command", "machine", "versions"}
    m, v = rec["machine"], rec["versions"]
    assert {"cpu_model", "cores", "logical_cpus", "load_average", "torch_threads", "thread_env", "platform",
            "gpu", "summary"} <= set(m)
    assert isinstance(m["cpu_model"], str) and m["cpu_model"]
    assert m["cores"] == len(os.sched_getaffinity(0)) and m["cores"] <= m["logical_cpus"]
    assert len(m["load_average"]) == 3 and all(x >= 0 for x in m["load_average"])
    assert m["cpu_model"] in m["summary"] and f"{m['cores']} cores" in m["summary"]
    assert {"python", "torch", "numpy", "onnxruntime", "owsd_toolkit", "git_commit", "git_dirty"} <= set(v)
    assert v["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    import numpy
    import torch

    assert v["numpy"] == numpy.__version__ and v["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert rec["date"].endswith("+00:00") and rec["date"][:2] == "20"
    assert json.loads(json.dumps(rec)) == rec


def test_extra_packages_and_missing_ones():
    v = provenance.versions(extra=("scipy", "no-such-distribution-owsd"))
    assert v["scipy"] and v["no-such-distribution-owsd"] is None


def test_gpu_is_none_without_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert provenance.machine()["gpu"] is None


def test_gpu_fields_with_a_device(monkeypatch):
    """With a CUDA device: torch's properties, then the driver and clocks from nvidia-smi."""
    import types

    import torch

    props = types.SimpleNamespace(name="NVIDIA H200", major=9, minor=0, total_memory=150_000_000_000,
                                  multi_processor_count=132)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(provenance, "_run", lambda args, cwd=None: "570.86.15, 1980 MHz, 3201 MHz\n"
                        if args[0] == "nvidia-smi" else None)
    (g,) = provenance.gpus()
    assert g == {"name": "NVIDIA H200", "compute_capability": "9.0", "memory_bytes": 150_000_000_000,
                 "sm_count": 132, "cuda": torch.version.cuda, "driver": "570.86.15", "max_sm_clock": "1980 MHz",
                 "max_memory_clock": "3201 MHz"}
    monkeypatch.setattr(provenance, "_run", lambda args, cwd=None: None)  # no nvidia-smi: no invented driver
    assert provenance.gpus()[0]["driver"] is None


def test_command_recorded_from_argv_and_as_given(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["owsd", "bench", "--data-dir", "my data", "--json", "out.json"])
    assert provenance.record()["command"] == "owsd bench --data-dir 'my data' --json out.json"
    assert provenance.command_line("owsd audit --seed 0") == "owsd audit --seed 0"


def test_no_secrets(monkeypatch, tmp_path):
    """No secret option value, environment variable, host name or key secret ends up in a record."""
    monkeypatch.setenv("OWSD_TEST_API_TOKEN", "env-secret-value-1234")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cmd = ["tool", "--api-key", "s3cr3t-a", "--password=s3cr3t-b", "--secret", "s3cr3t-c", "--token=s3cr3t-d",
           "--key", "my.key", "--seed", "7"]
    text = json.dumps(provenance.record(command=cmd))
    for secret in ("s3cr3t-a", "s3cr3t-b", "s3cr3t-c", "s3cr3t-d", "env-secret-value-1234"):
        assert secret not in text
    rec = provenance.record(command=cmd)
    assert rec["command"] == ("tool --api-key REDACTED --password=REDACTED --secret REDACTED --token=REDACTED "
                              "--key my.key --seed 7")  # a key file's path is kept
    assert rec["machine"]["thread_env"] == {"OMP_NUM_THREADS": "1",
                                            **{k: os.environ.get(k) for k in provenance.THREAD_ENV[1:]}}
    host = socket.gethostname()
    if len(host) >= 6:  # a very short name could occur by chance in a CPU model or a version
        assert host not in text
    from owsd.keys import generate_key
    from owsd.presets import get_preset

    with pytest.warns(UserWarning):
        key = generate_key(get_preset("linear"), seed=3)
    key.save(tmp_path / "k.key")
    secret_hex = json.loads((tmp_path / "k.key").read_text())["secret"]
    text = json.dumps(provenance.record(command=["owsd", "scramble", "--key", str(tmp_path / "k.key")]))
    assert secret_hex not in text


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_git_commit_when_in_a_checkout(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    commit, dirty = provenance.git_state(REPO)
    assert commit == head and len(commit) == 40 and isinstance(dirty, bool)
    assert provenance.versions()["git_commit"] == head
    assert provenance.git_state(tmp_path) == (None, None)  # not a checkout: nothing invented


def test_doctest():
    res = doctest.testmod(provenance, optionflags=doctest.ELLIPSIS)
    assert res.attempted >= 4 and res.failed == 0
