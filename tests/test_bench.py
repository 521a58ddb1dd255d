"""The HE-vs-OWSD benchmark (``owsd_bench``, ``owsd bench``): tiny sizes, the tiny cloud, no timing assertions.

HE tests need TenSEAL (``pip install 'owsd-toolkit[he]'``) and are skipped without it.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import json
import shlex
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from owsd import provenance
from owsd.cloud import CLOUD_NAMES
from owsd_bench import ckks, cli, config, network
from owsd_bench.he_side import he_round
from owsd_bench.measure import summarize
from owsd_bench.owsd_side import grey_to_cloud_input, topk_reply
from owsd_bench.report import markdown_table

REPO = Path(__file__).resolve().parents[1]
HAVE_TENSEAL = importlib.util.find_spec("tenseal") is not None
needs_tenseal = pytest.mark.skipif(not HAVE_TENSEAL, reason="tenseal is not importable: the HE baseline needs "
                                                             "pip install 'owsd-toolkit[he]' (tenseal==0.3.18)")


def _ckks_close(out: np.ndarray, ref: np.ndarray) -> None:
    """CKKS tolerance here (scale 2^26, five levels, two squarings): 0.05 absolute plus 0.1% of the range."""
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 5e-2 + 1e-3 * float(np.abs(ref).max())


# --- each module's Example ------------------------------------------------------------
@pytest.mark.parametrize("name", ["__init__", "network", "config", "measure", "owsd_side", "document", "report",
                                  "cli", "ckks", "he_side", "he_batched"])
def test_module_examples_run(name: str) -> None:
    """The docstring examples (run.py's, a whole tiny run, is the ``bench_json`` fixture's twin)."""
    if name in ("ckks", "he_side", "he_batched") and not HAVE_TENSEAL:
        pytest.skip("tenseal is not importable")
    mod = importlib.import_module("owsd_bench" if name == "__init__" else f"owsd_bench.{name}")
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert res.attempted >= 1 and res.failed == 0


# --- HE correctness -------------------------------------------------------------------
@needs_tenseal
def test_he_matches_plaintext_on_mnist_geometry() -> None:
    """The benchmarked 28x28 network (7x7/3 conv, 4 channels, 64 hidden): im2col and packing order."""
    torch.manual_seed(0)
    net = network.SquareConvNet(28).eval()
    client = ckks.HeClient(net.geometry)
    server = ckks.HeServer(net, client.public_context())
    img = (np.random.default_rng(1).random((1, 1, 28, 28)) * 255).astype(np.uint8)
    out = client.decrypt(server.infer(client.encrypt(img[0, 0])))
    _ckks_close(out, network.plaintext_logits(net, img)[0])


@needs_tenseal
def test_he_matches_plaintext_on_a_couple_of_images() -> None:
    torch.manual_seed(1)
    net = network.SquareConvNet(8, channels=2, hidden=8).eval()
    client = ckks.HeClient(net.geometry)
    server = ckks.HeServer(net, client.public_context())
    imgs = (np.random.default_rng(2).random((2, 1, 8, 8)) * 255).astype(np.uint8)
    ref = network.plaintext_logits(net, imgs)
    for i in range(2):
        _ckks_close(client.decrypt(server.infer(client.encrypt(imgs[i, 0]))), ref[i])


@needs_tenseal
def test_server_never_gets_the_secret_key() -> None:
    net = network.SquareConvNet(8, channels=1, hidden=4).eval()
    client = ckks.HeClient(net.geometry)
    ts = pytest.importorskip("tenseal")
    assert not ts.context_from(client.public_context()).is_private()
    with pytest.raises(ValueError, match="secret key"):
        ckks.HeServer(net, client.context.serialize(save_secret_key=True))


@needs_tenseal
def test_he_bytes_are_lengths_of_the_serialized_objects() -> None:
    net = network.SquareConvNet(8, channels=1, hidden=4).eval()
    client = ckks.HeClient(net.geometry)
    server = ckks.HeServer(net, client.public_context())
    sent, returned = [], []
    enc, inf = client.encrypt, server.infer
    client.encrypt = lambda img: sent.append(enc(img)) or sent[-1]  # type: ignore[method-assign]
    server.infer = lambda payload: returned.append(inf(payload)) or returned[-1]  # type: ignore[method-assign]
    imgs = (np.random.default_rng(3).random((2, 1, 8, 8)) * 255).astype(np.uint8)
    r = he_round(client, server, imgs)
    assert list(r["bytes_up"]) == [len(p) for p in sent] and all(len(p) > 1000 for p in sent)
    assert list(r["bytes_down"]) == [len(p) for p in returned]
    assert r["scores"].shape == (2, 10)


# --- helpers (no TenSEAL needed) ------------------------------------------------------
def test_summarize_and_topk_bytes() -> None:
    st = summarize([3.0, 1.0, 2.0])
    assert (st["median"], st["min"], st["max"], st["rel_spread"]) == (2.0, 1.0, 3.0, 1.0)
    with pytest.raises(ValueError):
        summarize([])
    idx, vals = topk_reply(np.linspace(0, 1, 1000, dtype=np.float32), 10)
    assert idx.dtype == np.uint16 and vals.dtype == np.float32 and idx[0] == 999
    assert idx.nbytes + vals.nbytes == 60


def test_plaintext_input_and_cli_registration() -> None:
    x = grey_to_cloud_input(np.full((2, 1, 28, 28), 255, np.uint8), (224, 224))
    assert tuple(x.shape) == (2, 3, 224, 224) and float(x.min()) == pytest.approx(1.0)
    from owsd.cli import build_parser

    a = build_parser().parse_args(["bench", "--cloud", "tiny", "--he-images", "3", "--quiet"])
    assert a.func is cli._cmd_bench, ("`owsd bench` is not owsd_bench's: the installed entry points are stale "
                                      "(pip install -e . again)")
    cfg = cli.config_from_args(a)
    assert cfg.clouds == ("tiny",) and cfg.he_images == 3 and cfg.verbose is False and cfg.data_dir is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--cloud", "nope"])
    with pytest.raises(ValueError):
        config.BenchConfig(repeats=0).validate()


# --- the whole run through the CLI, once ----------------------------------------------
@pytest.fixture(scope="module")
def bench_json(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not HAVE_TENSEAL:
        pytest.skip("tenseal is not importable: the HE baseline needs pip install 'owsd-toolkit[he]'")
    from owsd.cli import main

    d = tmp_path_factory.mktemp("bench")
    out = d / "he-vs-owsd.json"
    argv = ["bench", "--json", str(out), "--he-images", "1", "--owsd-images", "8", "--repeats", "2",
            "--train", "150", "--test", "40", "--cloud", "tiny", "--he-epochs", "1", "--epochs", "2",
            "--batch-size", "4", "--cache-dir", str(d / "cache"), "--quiet"]
    with mock.patch.object(sys, "argv", ["owsd", *argv]):  # the command line the result must record
        rc = main(argv)
    assert rc == 0
    res = json.loads(out.read_text())
    res["_argv"] = ["owsd", *argv]
    return res


def _key_paths(node: object, prefix: tuple = ()) -> set[tuple]:
    """Every key path of a JSON document, cloud names folded into '<cloud>' (lists are leaves)."""
    out: set[tuple] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            path = prefix + ("<cloud>" if k in CLOUD_NAMES else k,)
            out |= {path} | _key_paths(v, path)
    return out


@needs_tenseal
def test_json_keeps_every_key_of_the_committed_document(bench_json: dict) -> None:
    """The move out of the scheme removed and renamed nothing: docs/he-vs-owsd.json (made by owsd/bench.py)."""
    committed = json.loads((REPO / "docs" / "he-vs-owsd.json").read_text())
    missing = _key_paths(committed) - _key_paths(bench_json)
    assert not missing, sorted(missing)


@needs_tenseal
def test_json_records_provenance(bench_json: dict) -> None:
    m, v = bench_json["machine"], bench_json["machine"]["versions"]
    assert bench_json["command"] == shlex.join(bench_json["_argv"])
    assert m["cpu_model"] == provenance.cpu_model() and m["cores"] >= 1
    assert len(m["loadavg_start"]) == 3 and len(m["loadavg_end"]) == 3
    assert v["tenseal"] == "0.3.18" and v["owsd_toolkit"] and v["python"]
    assert v["git_commit"] == provenance.git_state()[0]
    assert bench_json["he"]["library"] == f"tenseal {v['tenseal']}"


@needs_tenseal
def test_json_has_the_required_fields(bench_json: dict) -> None:
    r = bench_json
    for path in ("he.seconds_per_image", "he.client_seconds_per_image", "he.server_seconds_per_image",
                 "he.accuracy", "he.bytes.client_to_server_per_image", "he.bytes.server_to_client_per_image",
                 "he.bytes.keys_one_time", "owsd.client_seconds_per_image", "owsd.cloud_seconds_per_image",
                 "owsd.accuracy", "owsd.bytes.client_to_server_per_image", "plaintext.cloud_seconds_per_image",
                 "ratio.he_over_owsd", "ratio.owsd_over_plaintext", "ratio.owsd_client_over_cloud",
                 "machine.cpu_model", "machine.cores", "targets.he_over_owsd_ge_1000.met",
                 "targets.owsd_client_le_10pct_of_cloud.met"):
        node = r
        for part in path.split("."):
            assert part in node, f"missing {path}"
            node = node[part]
    assert r["data"]["dataset"] == "digits" and "data-dir" in r["data"]["note"]  # the fallback is noted
    assert len(r["he"]["timing"]["total"]["runs"]) == 2
    assert 0.0 <= r["he"]["accuracy"] <= 1.0 and 0.0 <= r["owsd"]["accuracy"] <= 1.0
    assert r["he"]["accuracy_detail"]["argmax_agreement_with_plaintext"] == 1.0
    assert r["he"]["params"]["security_bits"] == 128
    ov = r["overhead_vs_own_plaintext"]
    assert r["he_batched"] is None and ov["he_batched"] is None  # --he-batch 0: not run
    assert ov["he_single"] == pytest.approx(r["he"]["seconds_per_image"] / ov["he_plaintext_seconds_per_image"])
    assert ov["owsd"] == r["ratio"]["owsd_over_plaintext"]


@needs_tenseal
def test_owsd_bytes_are_what_is_sent(bench_json: dict) -> None:
    b = bench_json["owsd"]["bytes"]
    assert b["transmit"] == "float32"
    assert b["client_to_server_per_image"] == 4 * 3 * 224 * 224  # raw float32 image, the scheme's setting
    assert b["server_to_client_per_image"] == 1000 * 4  # float32 output vector
    assert b["server_to_client_topk"]["bytes"] == 10 * (2 + 4)
    he = bench_json["he"]["bytes"]
    lo, hi = he["client_to_server_range"]
    assert 0 < lo <= he["client_to_server_per_image"] <= hi
    assert he["keys_one_time"] > he["client_to_server_per_image"]


@needs_tenseal
def test_ratios_come_from_the_measured_numbers(bench_json: dict) -> None:
    he_runs = bench_json["he"]["timing"]["total"]["runs"]
    tiny = bench_json["owsd"]["clouds"]["tiny"]
    ow_runs = tiny["timing"]["total"]["runs"]
    assert all(v > 0 for v in he_runs + ow_runs)
    per_round = [h / o for h, o in zip(he_runs, ow_runs)]
    assert bench_json["ratio"]["he_over_owsd"] == pytest.approx(float(np.median(per_round)))
    assert bench_json["ratio"]["spread"]["he_over_owsd"]["runs"] == pytest.approx(per_round)
    client, cloud = tiny["timing"]["client"]["runs"], tiny["timing"]["cloud"]["runs"]
    assert bench_json["ratio"]["owsd_client_over_cloud"] == pytest.approx(
        float(np.median([a / b for a, b in zip(client, cloud)])))
    assert bench_json["owsd"]["seconds_per_image"] == pytest.approx(float(np.median(ow_runs)))
    t = bench_json["targets"]["he_over_owsd_ge_1000"]
    assert t["measured"] == bench_json["ratio"]["he_over_owsd"] and t["met"] == (t["measured"] >= 1000
                                                                                 and t["comparable_accuracy"])


def test_markdown_table_from_a_result() -> None:
    """The table renders from a result document (a synthetic one: no run needed)."""
    st = lambda v: summarize([v, v * 1.1])  # noqa: E731
    cloud = {"client_seconds_per_image": 1e-3, "cloud_seconds_per_image": 2e-2, "timing": {"total": st(2.1e-2)},
             "accuracy_detail": {"cloud_only": {"accuracy": 0.9, "n": 100},
                                 "cloud_plus_embedding": {"accuracy": 0.95, "n": 100}}}
    res = {"he": {"timing": {"total": st(5.0)}, "client_seconds_per_image": 0.03, "server_seconds_per_image": 4.97,
                  "n_images": 2,
                  "bytes": {"client_to_server_per_image": 477000, "server_to_client_per_image": 70000,
                            "keys_one_time": 97_000_000},
                  "accuracy_detail": {"decrypted": {"accuracy": 1.0, "n": 2},
                                      "plaintext_full_test": {"accuracy": 0.97, "n": 10000}}},
           "owsd": {"cloud": "tiny", "timing_images": 8, "clouds": {"tiny": cloud},
                    "bytes": {"client_to_server_per_image": 150528, "server_to_client_per_image": 4000,
                              "server_to_client_topk": {"k": 10, "bytes": 60}}},
           "plaintext": {"client_to_server_per_image": 150528,
                         "clouds": {"tiny": {"timing": {"total": st(2e-2)}, "client_seconds_per_image": 1e-4,
                                             "cloud_seconds_per_image": 2e-2}}},
           "ratio": {"he_over_owsd": 238.0, "he_client_over_owsd_client": 30.0, "he_server_over_owsd_cloud": 248.0,
                     "spread": {"he_over_owsd": st(238.0), "owsd_over_plaintext": st(1.05),
                                "owsd_client_over_cloud": st(0.05)}},
           "targets": {"owsd_client_le_10pct_of_cloud": {"met": True},
                       "he_over_owsd_ge_1000": {"met": False, "accuracy_gap_he_plaintext_minus_owsd": 0.07}},
           "machine": {"cpu_model": "cpu", "cores": 2}, "data": {"dataset": "mnist"}, "config": {"repeats": 2}}
    text = markdown_table(res)
    assert text.count("\n|") >= 4 and "238x" in text and "NOT MET" in text and "150.5 kB" in text


def test_cloud_model_document_is_the_measured_rate_over_the_counted_flops() -> None:
    """The cloud's FLOP fraction: counted FLOPs / the measured seconds an image / the run's matmul peak."""
    from owsd_bench.measure import matmul_peak
    from owsd_bench.owsd_side import cloud_model_documents

    class Counted:
        session_settings = {"intra_op_num_threads": 1}

        def flops_per_image(self) -> dict:
            return {"flops": 4_000_000, "by_op": {"Conv": 4_000_000}, "uncounted_nodes": 0}

    peak = matmul_peak(threads=1, n=64, repeats=1)
    assert peak["flops_per_s"] > 0 and peak["threads"] == 1
    plain = {"clouds": {"c": {"cloud_seconds_per_image": 0.002}, "tiny": {"cloud_seconds_per_image": 0.001}}}
    doc = cloud_model_documents({"c": Counted(), "tiny": object()}, plain, peak=peak, batch_size=8)
    assert set(doc) == {"c"}  # clouds that cannot count their FLOPs are left out
    c = doc["c"]
    assert c["achieved_flops_per_s"] == pytest.approx(2e9)
    assert c["fraction_of_matmul_peak"] == pytest.approx(2e9 / peak["flops_per_s"])
    assert c["session"] == {"intra_op_num_threads": 1} and c["batch_size"] == 8


@needs_tenseal
def test_batched_he_matches_plaintext_and_never_gets_the_secret_key() -> None:
    """Images along the slots: every image of a batch scored like the plaintext net; a public context only."""
    from owsd_bench.he_batched import BatchedHeClient, BatchedHeServer, operation_count

    net = network.SquareConvNet(image_size=4, channels=1, hidden=2, num_classes=3).eval()
    client = BatchedHeClient(net.geometry)
    imgs = np.random.default_rng(1).integers(0, 256, (7, 1, 4, 4)).astype(np.uint8)
    up = client.encrypt(imgs)
    assert len(up) == 16  # one ciphertext a pixel, whatever the batch
    server = BatchedHeServer(net, client.public_context())
    assert not server.context.is_private()
    _ckks_close(client.decrypt(server.infer(up), n=7), network.plaintext_logits(net, imgs))
    assert operation_count(net) == {"scalar_products": 4 * 9 + 4 * 2 + 2 * 3, "squares": 4 + 2, "rotations": 0}
    with pytest.raises(ValueError, match="images"):
        client.encrypt(np.zeros((2, 1, 5, 5), np.uint8))


@needs_tenseal
def test_batched_round_measures_one_batch_and_the_report_prints_it() -> None:
    """The amortized baseline's document: latency = the batch, amortized = batch / images, overhead vs plaintext."""
    from owsd_bench.he_batched import batched_round, plaintext_seconds

    net = network.SquareConvNet(image_size=4, channels=1, hidden=2, num_classes=3).eval()
    imgs = np.random.default_rng(2).integers(0, 256, (6, 1, 4, 4)).astype(np.uint8)
    labels = network.plaintext_logits(net, imgs).argmax(1)
    plain = plaintext_seconds(net, imgs, repeats=1)
    r = batched_round(net, imgs, labels, plain_seconds=plain)
    assert r["images"] == 6 and r["latency_seconds_per_image"] == r["seconds"]["total"]
    assert r["amortized_seconds_per_image"] == pytest.approx(r["seconds"]["total"] / 6)
    assert r["overhead_vs_plaintext"] == pytest.approx(r["amortized_seconds_per_image"] / plain)
    assert r["accuracy"]["accuracy"] == 1.0 and r["argmax_agreement_with_plaintext"] == 1.0
    assert r["bytes"]["client_to_server_per_batch"] == 6 * r["bytes"]["client_to_server_per_image"]
    with pytest.raises(ValueError, match="he_batch"):
        config.BenchConfig(he_batch=5000).validate()
