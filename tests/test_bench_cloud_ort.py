"""benchmarks/bench_cloud_ort.py: its example runs, and --quick writes every field on a tiny ONNX model."""

from __future__ import annotations

import doctest
import importlib.util
import json
from pathlib import Path

import torch

from owsd.cloud import TinyNet

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("bench_cloud_ort", REPO / "benchmarks" / "bench_cloud_ort.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_runs() -> None:
    res = doctest.testmod(_module())
    assert res.attempted > 0 and res.failed == 0


def test_quick_json_on_a_tiny_model(tmp_path: Path) -> None:
    model = tmp_path / "tiny.onnx"
    torch.onnx.export(TinyNet().eval(), torch.randn(1, 3, 32, 32), str(model), input_names=["input"],
                      dynamic_axes={"input": {0: "b"}}, dynamo=False)
    out = _module().main(["--quick", "--model", str(model), "--size", "32", "--json", str(tmp_path / "r.json")])
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["rows"] and doc["flops_per_image"] == out["flops_per_image"] > 0
    assert {r["batch"] for r in doc["rows"]} == {8, 64}
    for r in doc["rows"]:
        assert r["images_per_s"] > 0 and 0 < r["fraction_of_mm_peak"]
        assert r["images_per_cpu_s"] >= r["images_per_s"] * 0.5  # one thread: CPU time ~ wall time or less
    assert doc["best"]["images_per_s"] == max(r["images_per_s"] for r in doc["rows"])
    assert doc["machine"]["cores"] >= 1 and "load_before" in doc
