"""``owsd serve-cloud``: a model served by MLServer (a real serving framework), reached through ``--cloud URL``.

The server runs as ``python -m owsd.cli serve-cloud model.onnx --port PORT`` in a subprocess on
127.0.0.1 (a free port, its own temporary folder).  Fault injection (a slow server, one answering
the wrong shape, one refusing) stays with the Flask test double (tests/kserve_test_double.py,
tests/test_kserve.py); here the faults are real ones: a busy port, an unknown model, a server
killed mid-run.  The per-image cloud cost of each path and MLServer's start-up time are printed
(``pytest -s``), with the load average beside them.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from own_data_cases import onnx_model
from owsd.cli import main

REPO = Path(__file__).resolve().parents[1]
NEEDS = "owsd serve-cloud needs MLServer: pip install 'owsd-toolkit[serve]'"
START_TIMEOUT = 300.0  # seconds; MLServer starts in about 7 s of CPU time, far longer on a loaded machine


@pytest.fixture(scope="module")
def mlserver():
    return pytest.importorskip("mlserver", reason=NEEDS)


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").is_file() else "?"


def free_port() -> int:
    from owsd.serve import free_port as free

    return free("127.0.0.1")


class Served:
    """``owsd serve-cloud MODEL --port PORT`` in a subprocess; ``url`` once it says it serves."""

    def __init__(self, model: Path, port: int, folder: Path, *, name: str = "clf") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.err = folder, folder / f"serve-{port}-{time.monotonic_ns()}.err"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
        t0 = time.perf_counter()
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "owsd.cli", "serve-cloud", str(model), "--port",
                                          str(port), "--name", name, "--threads", "1"], cwd=folder, env=env,
                                         stdout=subprocess.PIPE, stderr=err, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            line = ""
        self.startup, self.load = time.perf_counter() - t0, load()
        if not line.startswith("serving "):
            self.kill()
            raise RuntimeError(f"owsd serve-cloud did not start: {line!r} {self.err.read_text()[-2000:]}")
        self.url = line.split(" at ", 1)[1].strip()
        assert self.url == f"http://127.0.0.1:{port}/v2/models/{name}"
        print(f"\nMLServer started in {self.startup:.1f} s (load {self.load})")

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)

    def kill(self) -> None:
        """SIGKILL: the server dies without a word."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(60)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A classifier taking 64x64 images (12x less JSON than 224x224; the runs resize the scrambled images)."""
    return onnx_model(tmp_path_factory.mktemp("served") / "clf.onnx", size=64)


@pytest.fixture(scope="module")
def served(mlserver, model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    s = Served(model, free_port(), folder)
    yield s
    assert s.stop() == 0, s.err.read_text()[-2000:]
    assert "stopped clf (SIGTERM)" in s.err.read_text()
    assert sorted(p.name for p in folder.iterdir()) == [s.err.name], "the server wrote into its working folder"


def _run(tmp_path: Path, cloud: str, out: str, *extra: str, train: int = 64, test: int = 20) -> int:
    """The same `owsd run` (key seed 0, digits split ``train`` / ``test``) through ``cloud``."""
    return main(["run", "--dataset", "digits", "--train", str(train), "--test", str(test), "--cloud", cloud,
                 "--seed", "0", "--output-sizes", "5,20", "--epochs", "3", "--decoder", "none", "--threads", "1",
                 "--out", str(tmp_path / out), "--cache-dir", str(tmp_path / f"cache-{out}"), "--quiet", *extra])


def _results(tmp_path: Path, out: str) -> dict:
    return json.loads((tmp_path / out / "results.json").read_text())


def _flat(acc: dict) -> dict:
    """``{"cloud_only": {"5": a}, "plaintext": b}`` -> ``{"cloud_only/5": a, "plaintext": b}``."""
    return {f"{k}/{j}" if isinstance(v, dict) else k: w for k, v in acc.items()
            for j, w in (v.items() if isinstance(v, dict) else [(None, v)])}


def test_the_runtime_answers_logits_that_give_the_models_probabilities(tmp_path):
    """A probability model with its settings JSON: the server preprocesses and answers log-probabilities."""
    from owsd.cloud_sources import open_cloud
    from owsd.serve_runtime import answer_logits

    path = onnx_model(tmp_path / "probs.onnx", size=32, probs=True)
    (tmp_path / "probs.json").write_text(json.dumps({"output": "probabilities", "scale": 255, "mean": [120] * 3,
                                                     "std": [60] * 3, "channel_order": "BGR"}))
    cloud = open_cloud(str(path))
    x = torch.rand(3, 3, 32, 32)
    z = answer_logits(cloud, x.numpy())
    assert z.dtype == np.float32 and np.isfinite(z).all()
    p = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(p / p.sum(1, keepdims=True), cloud.predict(x, verbose=False), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"has shape \[3, 32, 32, 3\]; this model takes \[N, 3, 32, 32\]"):
        answer_logits(cloud, x.permute(0, 2, 3, 1).numpy())
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        answer_logits(cloud, 2 * x.numpy() + 1)


# --- without MLServer, and bad input ---------------------------------------------------------
def test_without_mlserver_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlserver", None)  # `import mlserver` fails as if not installed
    assert main(["serve-cloud", "tiny", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs MLServer" in err[0] and "pip install 'owsd-toolkit[serve]'" in err[0], err


@pytest.mark.parametrize("args, match", [
    (["resnet50"], "MODEL: 'resnet50': expected efficientnet-lite0, tiny or a PATH.onnx"),
    (["{tmp}/missing.onnx"], "missing.onnx: does not exist"),
    (["{tmp}/bad.onnx"], "cannot load ONNX model"),
    (["tiny", "--port", "70000"], "expected a port number 0..65535"),
    (["tiny", "--name", "a/b"], "a model name is letters"),
])
def test_bad_model_or_option_is_one_line(mlserver, tmp_path, capsys, args, match):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    (tmp_path / "bad.onnx").write_bytes(b"not an ONNX model")
    assert main(["serve-cloud", *args, *(["--port", "0"] if "--port" not in args else [])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("owsd serve-cloud: error: ") and match in err[0], err


def test_busy_port_is_one_line(served, model, capsys):
    port = served.url.split(":")[2].split("/")[0]
    assert main(["serve-cloud", str(model), "--port", port]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--port {port}: 127.0.0.1:{port} is in use" in err[0], err


# --- the served model ------------------------------------------------------------------------
def test_served_model_answers_as_the_onnx_file(served, model):
    from owsd.cloud_sources import open_cloud
    from owsd.kserve import CloudServiceError, KServeCloud

    local, remote = open_cloud(str(model)), open_cloud(served.url, request_batch=2)
    assert isinstance(remote, KServeCloud) and remote.input_size == (64, 64) and remote.num_outputs == 20
    x = torch.rand(5, 3, 64, 64)
    np.testing.assert_allclose(remote.predict(x, verbose=False), local.predict(x, verbose=False), rtol=1e-5, atol=1e-7)
    assert remote.queries == 5 and remote.requests == 1 + 3  # metadata, then 3 requests of at most 2 images
    d = remote.describe()  # the version is the model's own digest: the cache key follows the model, not the name
    assert d["versions"] == [local.digest] and d["platform"] == "owsd/OnnxCloud" and d["endpoint"] == served.url
    assert open_cloud(f"{served.url}/versions/{local.digest}").num_outputs == 20  # the version's own URL
    remote.interface = remote.interface.replace(layout="NHWC")  # (N, H, W, C): refused with the server's reason
    with pytest.raises(CloudServiceError, match=r"refused the request \(HTTP 400: input 'images' has shape "
                                                r"\[1, 64, 64, 3\]; this model takes \[N, 3, 64, 64\]"):
        remote.predict(x[:1], verbose=False)


def test_run_through_the_server_equals_the_onnx_file(served, model, tmp_path, capsys):
    assert _run(tmp_path, str(model), "local") == 0, capsys.readouterr().err
    load_local = load()
    assert _run(tmp_path, served.url, "remote") == 0, capsys.readouterr().err
    local, remote = _results(tmp_path, "local"), _results(tmp_path, "remote")
    assert _flat(remote["accuracy"]) == pytest.approx(_flat(local["accuracy"]), abs=1e-6)
    assert remote["cloud_model"]["endpoint"] == served.url and local["cloud_model"]["kind"] == "OnnxCloud"
    with capsys.disabled():
        print(f"\nper-image cloud seconds: ONNX file {local['seconds_per_image']['cloud']:.4f} (load {load_local}), "
              f"MLServer {remote['seconds_per_image']['cloud']:.4f} (load {load()})")


def test_smoke_audit_through_the_server(served, tmp_path, capsys):
    # the cheapest audit that queries the cloud: one attack on cloud outputs (200 images at smoke);
    # the utility measurement (500 more images) is `owsd run`'s path, tested above
    out = tmp_path / "audit"
    rc = main(["audit", "--preset", "linear", "--seed", "11", "--dataset", "digits", "--cloud", served.url,
               "--budget", "smoke", "--only", "leak-membership-loss", "--no-utility", "--threads", "1", "--quiet",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    assert rep["budget"] == "smoke" and [e["attack"] for e in rep["attacks"]] == ["leak-membership-loss"]
    assert rep["attacks"][0]["verdict"] in ("pass", "warn", "fail")
    assert rep["cloud"] == served.url and rep["attacks"][0]["metrics"]  # its 200 private images went to the server


# --- a server killed mid-run -----------------------------------------------------------------
@pytest.mark.slow  # two more server starts and two runs: about 40 s of CPU time
def test_killed_server_fails_the_run_in_one_line_and_the_rerun_resumes(mlserver, model, tmp_path, capsys, caplog):
    port = free_port()
    first = Served(model, port, tmp_path / "s1")
    chunks = tmp_path / "cache-remote" / "outputs"

    def kill_after_the_first_chunk() -> None:  # the training split's first 64 answers are on disk: kill
        deadline = time.monotonic() + START_TIMEOUT
        while not list(chunks.glob("*-train-*/chunk_*.npz")) and time.monotonic() < deadline:
            time.sleep(0.02)
        first.kill()

    killer = threading.Thread(target=kill_after_the_first_chunk, daemon=True)
    killer.start()
    try:  # two requests a second: the second chunk (36 images, 3 requests) is still being sent when it dies
        rc = _run(tmp_path, first.url, "remote", "--cloud-retries", "1", "--cloud-rate-limit", "2", train=100, test=40)
    finally:
        killer.join(START_TIMEOUT)
        first.kill()
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "server down or unreachable" in err[-1] and not any("Traceback" in e for e in err), err
    assert [p.name for p in chunks.glob("*-train-*/chunk_*.npz")] == ["chunk_00000000.npz"]
    revived = Served(model, port, tmp_path / "s2")  # the same endpoint and model: the cache key holds
    try:
        with caplog.at_level(logging.INFO, logger="owsd.pipeline"):
            assert _run(tmp_path, revived.url, "remote", train=100, test=40) == 0, capsys.readouterr().err
        assert "read 64 of 100 cloud outputs from cache" in caplog.text
    finally:
        assert revived.stop() == 0
    assert _run(tmp_path, str(model), "local", train=100, test=40) == 0
    local, remote = _results(tmp_path, "local"), _results(tmp_path, "remote")
    assert _flat(remote["accuracy"]) == pytest.approx(_flat(local["accuracy"]), abs=1e-6)
