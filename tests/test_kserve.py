"""The KServe V2 client against a TEST DOUBLE server (tests/kserve_test_double.py; see its docstring).

The double, a minimal Flask implementation of the protocol's endpoints run as a separate process
on 127.0.0.1, injects the faults (a dying, slow, wrong-shape or refusing server) and needs no
MLServer.  A real serving framework (MLServer, through ``owsd serve-cloud``) is tested in
tests/test_serve_cloud.py.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("httpx")
pytest.importorskip("flask")

from own_data_cases import image_folder, onnx_model  # noqa: E402
from owsd.cli import main  # noqa: E402
from owsd.cloud_sources import open_cloud  # noqa: E402
from owsd.kserve import CloudServiceError, KServeCloud  # noqa: E402

DOUBLE = Path(__file__).with_name("kserve_test_double.py")


class Server:
    """The test double in a subprocess; ``url`` of its model."""

    def __init__(self, model: Path, *args: str, name: str = "clf") -> None:
        self.proc = subprocess.Popen([sys.executable, str(DOUBLE), "--model", str(model), "--name", name, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"test double did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/v2/models/{name}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A model taking 64x64 images (12x less JSON than 224x224; the run resizes the scrambled images)."""
    return onnx_model(tmp_path_factory.mktemp("served") / "served.onnx", size=64)


@pytest.fixture
def server(model):
    s = Server(model)
    yield s
    s.stop()


def test_served_cloud_matches_the_onnx_file(model, server):
    local, remote = open_cloud(str(model)), open_cloud(server.url, request_batch=2, rate_limit=200)
    assert isinstance(remote, KServeCloud) and remote.input_size == (64, 64) and remote.num_outputs == 20
    x = torch.rand(5, 3, 64, 64)
    np.testing.assert_allclose(remote.predict(x, verbose=False), local.predict(x, verbose=False), rtol=1e-5, atol=1e-7)
    assert remote.queries == 5 and remote.requests == 1 + 3  # metadata, then 3 requests of at most 2 images
    d = remote.describe()
    assert d["versions"] == ["1"] and d["endpoint"] == server.url and d["digest"] != local.digest


@pytest.mark.slow  # three server starts
def test_version_enters_the_cache_key(model):
    a = Server(model, "--version", "1")
    port = a.url.split(":")[2].split("/")[0]
    key_a = open_cloud(a.url).digest
    a.stop()
    for version, same in (("2", False), ("1", True)):  # the same endpoint, restarted with a model version
        s = Server(model, "--version", version, "--port", port)
        try:
            assert (open_cloud(s.url).digest == key_a) is same
        finally:
            s.stop()


def test_down_slow_and_wrong_shape_servers_fail_clearly(model):
    dead = Server(model)
    url = dead.url
    dead.stop()
    with pytest.raises(CloudServiceError, match=r"server down or unreachable .*after 2 tries"):
        KServeCloud(url, retries=1, backoff=0.01)
    slow = Server(model, "--delay", "2")
    try:
        c = KServeCloud(slow.url, timeout=0.5, retries=0)
        with pytest.raises(CloudServiceError, match=r"no answer within 0.5 s"):
            c.predict(torch.rand(1, 3, 64, 64), verbose=False)
    finally:
        slow.stop()
    bad = Server(model, "--bad-shape")
    try:
        c = KServeCloud(bad.url, retries=0)
        with pytest.raises(ValueError, match=r"answered output shape \[2, 20\] .* for a batch of 3"):
            c.predict(torch.rand(3, 3, 64, 64), verbose=False)
    finally:
        bad.stop()


def test_credentials_in_the_url_are_refused():
    # user:token@host would be written into results, reports and logs
    with pytest.raises(ValueError, match="holds credentials"):
        KServeCloud("http://user:token@127.0.0.1:9/v2/models/m")


def test_refused_request_is_not_retried(server):
    c = KServeCloud(server.url)
    c.interface = c.interface.replace(layout="NHWC")  # the model refuses (N, H, W, C): HTTP 400 with its reason
    with pytest.raises(CloudServiceError, match=r"refused the request \(HTTP 400: "):
        c.predict(torch.rand(1, 3, 64, 64), verbose=False)
    assert c.requests == 2  # metadata + one refused request, no retries


def _run(tmp_path, cloud: str, out: str, *extra: str) -> int:
    return main(["run", "--dataset", str(tmp_path / "pets"), "--cloud", cloud, "--seed", "0", "--output-sizes",
                 "5,20", "--epochs", "3", "--decoder", "none", "--out", str(tmp_path / out), "--cache-dir",
                 str(tmp_path / f"cache-{out}"), "--quiet", *extra])


@pytest.mark.slow  # about 60 s on an idle 2-core machine (three runs, three server starts)
def test_run_through_the_server_equals_the_onnx_file_and_resumes_after_a_kill(model, tmp_path, capsys, caplog):
    image_folder(tmp_path / "pets", per_class=50, size=8)  # 70 train + 30 test images
    t0 = time.perf_counter()
    assert _run(tmp_path, str(model), "local") == 0, capsys.readouterr().err
    t_local = time.perf_counter() - t0
    # the training split takes 5 requests of at most 16 images (chunks of 64 and 6): the server dies
    # in the middle of the test split, as a killed server would
    dying = Server(model, "--die-after", "5")
    port = dying.url.split(":")[2].split("/")[0]
    try:
        assert _run(tmp_path, dying.url, "remote", "--cloud-retries", "1") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert "server down or unreachable" in err[-1] and not any("Traceback" in e for e in err), err
    finally:
        dying.stop()
    chunks = sorted((tmp_path / "cache-remote" / "outputs").glob("*-train-*/chunk_*.npz"))
    assert len(chunks) == 2, "the training split's answers were not all kept"
    revived = Server(model, "--port", port)  # the same endpoint: the cache key holds
    try:
        t0 = time.perf_counter()
        with caplog.at_level(logging.INFO, logger="owsd.pipeline"):
            assert _run(tmp_path, revived.url, "remote") == 0, capsys.readouterr().err
        t_remote = time.perf_counter() - t0
        assert "read 70 of 70 cloud outputs from cache" in caplog.text
    finally:
        revived.stop()
    local = json.loads((tmp_path / "local" / "results.json").read_text())
    remote = json.loads((tmp_path / "remote" / "results.json").read_text())
    assert local["accuracy"] == remote["accuracy"]
    assert remote["cloud_model"]["endpoint"].endswith("/v2/models/clf")
    print(f"per-image cloud seconds: onnx {local['seconds_per_image']['cloud']:.4f}, served "
          f"{remote['seconds_per_image']['cloud']:.4f} (runs {t_local:.1f} s, {t_remote:.1f} s)")
