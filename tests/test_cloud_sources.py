"""Your own cloud: ONNX files with their settings, MODULE:CALLABLE, resizing, cache keys by model hash."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from attacks.oracles import BudgetExceededError, CloudOracle, QueryMeter
from own_data_cases import SmallNet, onnx_model
from owsd.cli import main
from owsd.cloud import ResizedCloud, TinyCloud, TorchCloud, fit_cloud
from owsd.cloud_interface import CloudInterface
from owsd.cloud_sources import open_cloud


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    (d / "other").mkdir()
    return {"plain": onnx_model(d / "plain.onnx"), "small": onnx_model(d / "small.onnx", size=64),
            "other": onnx_model(d / "other" / "plain.onnx", seed=1),
            "probs": onnx_model(d / "probs.onnx", probs=True), "rank3": onnx_model(d / "rank3.onnx", out_rank3=True)}


SETTINGS = {"input_size": [224, 224], "channel_order": "BGR", "scale": 255, "mean": [120, 110, 100],
            "std": [60, 55, 50], "output": "logits"}


def test_onnx_with_sidecar_settings_matches_the_torch_model(models, tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(models["plain"], model)
    (tmp_path / "m.json").write_text(json.dumps(SETTINGS))
    cloud = open_cloud(str(model), threads=1)
    assert cloud.threads == 1 and cloud.num_outputs == 20 and cloud.input_size == (224, 224)
    ref = TorchCloud(SmallNet(20, 0), name="ref", input_size=(224, 224), num_outputs=20,
                     preprocess=CloudInterface(**SETTINGS).preprocess)
    x = torch.rand(3, 3, 224, 224)
    np.testing.assert_allclose(cloud.predict(x, verbose=False), ref.predict(x, verbose=False), rtol=1e-4, atol=1e-6)
    assert cloud.queries == 3
    plain = open_cloud(str(models["plain"]))  # without the settings: another input handling, another digest
    assert plain.digest != cloud.digest and not np.allclose(plain.predict(x, verbose=False),
                                                            cloud.predict(x, verbose=False))


def test_cache_key_is_the_model_not_its_name(models, tmp_path):
    a, b = open_cloud(str(models["plain"])), open_cloud(str(models["other"]))
    assert a.name == b.name == "plain" and a.digest != b.digest  # same name, other weights
    copy = tmp_path / "renamed.onnx"
    shutil.copy(models["plain"], copy)
    assert open_cloud(str(copy)).digest == a.digest  # same bytes, same settings: same outputs
    assert TinyCloud().digest == TinyCloud().digest != TinyCloud(num_outputs=10).digest


@pytest.mark.parametrize("case, match", [
    ("rank3", r"has shape \['b', 1, 20\]; expected \(N, K\)"),
    ("size", "takes 224x224 images .* but the settings say input_size 260x260"),
    ("layout", "has 224 channels under layout NHWC"),
    ("probs-as-logits", None),
    ("logits-as-probs", "declared to return probabilities but its rows sum"),
])
def test_onnx_mismatches_say_what_does_not_match(models, case, match):
    kw = {"rank3": ("rank3", {}), "size": ("plain", {"input_size": 260}), "layout": ("plain", {"layout": "NHWC"}),
          "probs-as-logits": ("probs", {"output": "probabilities"}),
          "logits-as-probs": ("plain", {"output": "probabilities"})}[case]
    if match is None:  # a model returning probabilities, declared so: used as they are
        p = open_cloud(str(models[kw[0]]), **kw[1]).predict(torch.rand(2, 3, 224, 224), verbose=False)
        assert np.allclose(p.sum(1), 1, atol=1e-5)
        return
    with pytest.raises(ValueError, match=match):
        open_cloud(str(models[kw[0]]), **kw[1]).predict(torch.rand(2, 3, 224, 224), verbose=False)


def test_module_callable_clouds(tmp_path, monkeypatch):
    (tmp_path / "mycloud.py").write_text(
        "import torch\nfrom own_data_cases import SmallNet\nnet = SmallNet(12, 0)\n"
        "def score(x):\n    return net(x).detach().numpy()\n"
        "def bad(x):\n    return x.mean((1, 2, 3))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod, fn = open_cloud("mycloud:net", input_size=32), open_cloud("mycloud:score", input_size=32)
    assert isinstance(mod, TorchCloud) and mod.num_outputs == fn.num_outputs == 12
    x = torch.rand(2, 3, 32, 32)
    np.testing.assert_allclose(mod.predict(x, verbose=False), fn.predict(x, verbose=False), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"returned shape \(1,\) for one image; expected \(1, K\)"):
        open_cloud("mycloud:bad", input_size=32)
    with pytest.raises(ValueError, match="has no attribute 'nope'"):
        open_cloud("mycloud:nope")


def test_callable_cloud_key_follows_its_weights_and_user_errors_are_one_line(tmp_path, monkeypatch):
    # the same source file with other weights (loaded from elsewhere) must not share cached outputs
    (tmp_path / "retrained.py").write_text(
        "import os\nfrom own_data_cases import SmallNet\nnet = SmallNet(12, int(os.environ.get('SEED', '0')))\n"
        "def score(x):\n    return net(x).detach().numpy()\n"
        "def crash(x):\n    raise RuntimeError('wrong input size for this network')\n")
    (tmp_path / "broken_import.py").write_text("raise KeyError('missing setting')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    import sys as _sys

    first = open_cloud("retrained:score", input_size=32).digest
    monkeypatch.setenv("SEED", "1")
    _sys.modules.pop("retrained", None)
    importlib.invalidate_caches()
    assert open_cloud("retrained:score", input_size=32).digest != first
    with pytest.raises(ValueError, match="the callable raised RuntimeError.*wrong input size"):
        open_cloud("retrained:crash", input_size=32)
    with pytest.raises(ValueError, match="importing module 'broken_import' raised KeyError"):
        open_cloud("broken_import:f")


def test_other_input_size_is_resized_or_refused(models):
    small = open_cloud(str(models["small"]))
    fitted = fit_cloud(small, (3, 224, 224))
    assert isinstance(fitted, ResizedCloud) and fitted.describe()["resized_from"] == [224, 224]
    x = torch.rand(2, 3, 224, 224)
    ref = small.predict(torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True),
                        verbose=False)
    np.testing.assert_allclose(fitted.predict(x, verbose=False), ref, rtol=1e-5, atol=1e-7)
    assert fitted.digest != small.digest and fitted.queries == small.queries == 4
    with pytest.raises(ValueError, match="takes 64x64; refused"):
        fit_cloud(small, (3, 224, 224), resize="refuse")


def test_metered_oracle_works_with_any_cloud(models):
    cloud = open_cloud(str(models["plain"]))
    oracle = CloudOracle(cloud, QueryMeter("cloud", 3))
    assert oracle.predict(torch.rand(2, 3, 224, 224)).shape == (2, 20) and oracle.used == cloud.queries == 2
    with pytest.raises(BudgetExceededError):
        oracle.predict(torch.rand(2, 3, 224, 224))
    assert cloud.queries == 2  # refused before the cloud was asked


def test_cli_run_with_a_wrong_onnx_is_one_line(models, tmp_path, capsys):
    code = main(["run", "--cloud", str(models["rank3"]), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "expected (N, K) class scores" in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()  # refused before anything was made
    code = main(["run", "--cloud", "tiny", "--cloud-mean", "0.5", "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2 and "apply to your own model" in capsys.readouterr().err


def test_audit_resume_against_a_replaced_model_or_other_settings_is_refused(models, tmp_path, capsys):
    """Same kernel, data, budget and ``--cloud PATH``, but another model in the file (or other
    ``--cloud-*`` settings): the audit's finished jobs came from the old model and are not reused."""
    path, out = tmp_path / "clf.onnx", tmp_path / "run"
    shutil.copy(models["small"], path)
    args = ["audit", "--preset", "linear", "--seed", "3", "--dataset", "digits", "--cloud", str(path), "--budget",
            "smoke", "--only", "leak-equality", "--no-utility", "--quiet", "--out", str(out)]
    assert main(args) == 0
    manifest = json.loads((out / "audit.json").read_text())
    first = manifest["cloud_model"]["digest"]
    assert first == fit_cloud(open_cloud(str(path)), (3, 224, 224)).digest  # the model behind its resize
    assert main(args) == 0  # the same model: resumed
    capsys.readouterr()
    assert main(args + ["--cloud-mean", "0.5"]) == 2  # other settings: another digest
    assert "holds an audit with another cloud_model" in capsys.readouterr().err
    shutil.copy(models["other"], path)  # another model (224x224) in the same file
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "another cloud_model" in err and "--cloud-* settings" in err and err.count("\n") == 1
    assert json.loads((out / "audit.json").read_text())["cloud_model"]["digest"] == first  # nothing overwritten


def test_audit_report_command_keeps_the_cloud_flags(models, tmp_path):
    out = tmp_path / "run"
    assert main(["audit", "--preset", "linear", "--seed", "3", "--dataset", "digits", "--cloud", str(models["small"]),
                 "--cloud-mean", "0.5,0.4,0.3", "--cloud-output", "logits", "--cloud-threads", "1", "--budget",
                 "smoke", "--only", "leak-equality", "--no-utility", "--quiet", "--out", str(out)]) == 0
    cmd = json.loads((out / "report.json").read_text())["command"]
    assert "--cloud-mean 0.5,0.4,0.3" in cmd and "--cloud-output logits" in cmd and "--cloud-threads 1" in cmd
    assert "--cloud-resize" not in cmd  # the default is left out


def test_clouds_close_what_they_opened(models):
    import httpx

    from owsd.kserve import KServeCloud

    meta = {"name": "m", "versions": ["1"], "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 8, 8]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}
    theirs = httpx.Client(transport=httpx.MockTransport(lambda req: httpx.Response(200, json=meta)))
    with KServeCloud("http://127.0.0.1:9/v2/models/m", client=theirs) as cloud:
        assert cloud.num_outputs == 4
    assert not theirs.is_closed  # a client passed in is the caller's
    cloud._own_client = True  # as if it had opened the client itself
    ResizedCloud(cloud, (16, 16)).close()  # a resize in front closes the model behind it
    assert theirs.is_closed
    with open_cloud(str(models["small"])) as local:  # local models: close() is a no-op
        assert local.num_outputs == 20


def test_onnx_cloud_records_its_session_options(models):
    d = open_cloud(str(models["small"]), threads=1).describe()
    assert d["session"]["intra_op_num_threads"] == 1 and d["session"]["intra_op_allow_spinning"] is False
    assert d["session"]["execution_mode"] == "sequential" and d["digest"]
