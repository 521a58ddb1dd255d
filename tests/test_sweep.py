"""``owsd sweep``: grid files, the frontier, resume, the embedded Dask cluster, a real scheduler losing a worker.

Sweeps here audit the ``linear`` preset with a few cheap attacks at the smoke budget on
digits.  The real-cluster test (a ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, one killed mid-sweep) is slow: ``--runslow``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from analysis.sweep import GridError, LocalClient, SweepConfig, grid_kernels, kernels_from, load_grid, run_sweep
from analysis.sweep.frontier import FAMILIES, kernel_row, load_frontier, mean_ci
from owsd.cli import main

REPO = Path(__file__).resolve().parents[1]
ONLY = ("key-ciphertext-only", "leak-equality")


# --- kernels and grid files ----------------------------------------------------------------
def test_grid_product_and_designs_become_valid_named_specs(tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text("base: default\ngrid:\n  gain: [0.002, 0.01]\n  carrier: [none, texture]\n"
                 "designs:\n  - name: tanh\n    set: {'layers.*.activation': tanh, 'layers.-1.activation': none}\n"
                 "    reason: bounded hidden layers\n")
    ks = load_grid(g)
    assert [k.name for k in ks] == ["default-carrier-none-gain-0.002", "default-carrier-none-gain-0.01",
                                    "default-carrier-texture-gain-0.002", "default-carrier-texture-gain-0.01", "tanh"]
    assert ks[1].spec["gain"] == 0.01 and ks[1].spec["carrier"] == "none" and ks[1].spec["name"] == ks[1].name
    acts = [lay["activation"] for lay in ks[-1].spec["layers"]]
    assert acts[:-1] == ["tanh"] * (len(acts) - 1) and acts[-1] == "none" and ks[-1].reason
    assert ks[0].scrambler_spec().gain == 0.002


@pytest.mark.parametrize("doc, match", [
    ({"base": "nope", "grid": {"gain": [1.0]}}, "neither a preset"),
    ({"base": "linear", "grid": {"gain": []}}, "non-empty lists"),
    ({"base": "linear", "grid": {"gain": [-1.0]}}, "gain must be a positive"),
    ({"base": "linear", "designs": [{"name": "x", "set": {"layers.7.activation": "tanh"}}]}, "no layer 7"),
    ({"base": "linear", "designs": [{"name": "x", "set": {"colour": 1}}]}, "unknown spec field"),
    ({"base": "linear"}, "no design"),
    ({"base": "linear", "grid": {"gain": [1.0]}, "extra": 1}, "unknown grid field"),
])
def test_malformed_grids_name_the_problem(doc, match):
    with pytest.raises(GridError, match=match):
        grid_kernels(doc)


def test_kernel_names_must_be_unique():
    with pytest.raises(GridError, match="two kernels are named 'linear'"):
        kernels_from(presets=("linear", "linear"))


@pytest.mark.parametrize("args, match", [
    ([], "no kernel to sweep"),
    (["--presets", "linear", "--seeds", "0,0"], "seeds repeat"),
    (["--presets", "linear", "--scheduler", "localhost"], "tcp://HOST:PORT"),
    (["--presets", "nope"], "unknown preset"),
    (["--presets", "linear", "--dataset", "mnist"], "needs --data-dir"),
])
def test_sweep_cli_errors_are_one_line(args, match, tmp_path, capsys):
    rc = main(["sweep", "--out", str(tmp_path / "s"), "--quiet", *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "owsd sweep: error:" in err and match in err, err


# --- the frontier ----------------------------------------------------------------------------
def _report(name, util, advs, verdict="fail"):
    attacks = [{"job": f"{f}-a", "family": f, "advantage": a, "finding": "kernel"} for f, a in advs.items()]
    attacks.append({"job": "member", "family": "leakage", "advantage": 1.0, "finding": "system"})
    return {"target": {"name": name, "fingerprint": name[:4], "spec": {"name": name}}, "cloud": "tiny",
            "budget": "smoke", "utility_headline": util, "utility": {"accuracy": {"plaintext": 0.9}, "chance": 0.1},
            "summary": {"counts": {"fail": 1}}, "kernel_verdict": {"verdict": verdict}, "attacks": attacks}


def test_frontier_row_pools_seeds_per_family_and_leaves_system_findings_out():
    reps = [_report("k", 0.8, {"key-estimation": 0.2, "inversion": 0.0}),
            _report("k", 0.6, {"key-estimation": 0.4, "inversion": 0.1}, verdict="pass")]
    r = kernel_row("k", "digits", [0, 1], reps, ["k--seed-0", "k--seed-1"])
    fam = r["families"]
    assert fam["key-estimation"]["mean"] == pytest.approx(0.3) and fam["key-estimation"]["per_seed"] == [0.2, 0.4]
    lo, hi = fam["key-estimation"]["ci95"]
    assert 0.0 <= lo < 0.3 < hi <= 1.0  # t interval over 2 seeds, clipped to [0, 1]
    assert fam["leakage"]["mean"] is None  # the membership attack is a system finding
    assert r["utility"] == pytest.approx(0.7) and r["plaintext"] == 0.9 and r["utility_gap"] == pytest.approx(0.2)
    assert r["privacy"] == pytest.approx(0.3) and r["verdict"] == "fail" and r["verdicts"] == ["fail", "pass"]
    assert mean_ci([0.5, 0.5]) == (0.5, [0.5, 0.5])


def test_a_family_figure_lists_the_attacks_that_errored_instead_of_hiding_them():
    from analysis.sweep.frontier import to_csv

    reps = [_report("k", 0.8, {"key-estimation": 0.2}), _report("k", 0.6, {"key-estimation": 0.4})]
    reps[1]["attacks"].append({"job": "key-known-plaintext", "family": "key-estimation", "advantage": None,
                               "finding": "kernel", "verdict": "error"})
    r = kernel_row("k", "digits", [0, 1], reps, ["k--seed-0", "k--seed-1"])
    assert r["families"]["key-estimation"]["mean"] == pytest.approx(0.3)  # the figure of the attacks that ran
    assert r["families"]["key-estimation"]["errors"] == ["seed 1: key-known-plaintext"]
    assert r["incomplete"] == ["key-estimation: seed 1: key-known-plaintext"]
    r.update(rank=1, pareto=True)
    assert to_csv([r]).splitlines()[1].endswith(",key-estimation: seed 1: key-known-plaintext")
    assert kernel_row("k", "digits", [0, 1], reps[:1] * 2, ["a", "b"])["incomplete"] == []


def test_a_kernel_without_figures_is_ranked_last_and_off_the_front():
    from analysis.sweep.frontier import frontier_rows
    from analysis.sweep.kernels import Kernel
    from analysis.sweep.plan import AuditCell

    def cell(name):
        return (AuditCell(Kernel(name, {}, "test"), 0, "digits"), f"{name}--seed-0")
    reps = [_report("good", 0.8, {"key-estimation": 0.1}), _report("broken", None, {}, verdict="error"),
            _report("weak", 0.9, {"key-estimation": 0.9})]
    rows = frontier_rows([cell("good"), cell("broken"), cell("weak")], reps)
    # both complete kernels are on the front (ties broken by utility, as audit-compare does); not the broken one
    assert [(r["kernel"], r["rank"], r["pareto"]) for r in rows] == [("weak", 1, True), ("good", 2, True),
                                                                     ("broken", 3, False)]


# --- sweeps ------------------------------------------------------------------------------------
def _rows(out: Path) -> list[dict]:
    return load_frontier(out)["rows"]


def test_sweep_resumes_only_what_is_missing_and_compare_reads_it(tmp_path, capsys):
    out = tmp_path / "s"
    cfg = SweepConfig(out=out, seeds=(3,), only=ONLY, utility=False, verbose=False, threads=1)
    first = run_sweep(kernels_from(presets=("linear",)), cfg, client=LocalClient())
    assert first["tasks_run"] == 2 and first["audits"] == 1
    rep = json.loads((out / "audits" / "linear--seed-3" / "report.json").read_text())
    assert {e["job"] for e in rep["attacks"]} == set(ONLY) and rep["seed"] == 3
    assert rep["command"].startswith("owsd audit --spec ") and "--seed 3 --attack-seed 3" in rep["command"]
    (out / "audits" / "linear--seed-3" / "attacks" / "leak-equality" / "done").unlink()  # an interrupted job
    again = run_sweep(kernels_from(presets=("linear",)), cfg, client=LocalClient())
    assert again["tasks_run"] == 1
    assert _rows(out) == first["frontier"]["rows"]  # the job rerun alone gives the same figures
    (row,) = _rows(out)
    assert row["kernel"] == "linear" and row["seeds"] == [3] and row["families"]["leakage"]["mean"] == 1.0
    for name in ("frontier.csv", "frontier.png", "report.html"):
        assert (out / name).stat().st_size > 200
    assert "Privacy-utility frontier" in (out / "report.html").read_text()
    rc = main(["audit-compare", str(out), str(out / "audits" / "linear--seed-3")])
    res = capsys.readouterr()
    assert rc == 0 and "| linear (`" in res.out, res.err
    with pytest.raises(Exception, match="other settings"):
        run_sweep(kernels_from(presets=("linear",)), SweepConfig(out=out, seeds=(0, 1), only=ONLY, utility=False,
                                                                 verbose=False), client=LocalClient())


def test_embedded_cluster_sweep_writes_the_frontier(tmp_path, capsys):
    out = tmp_path / "s"
    rc = main(["sweep", "--presets", "linear", "--seeds", "0", "--dataset", "digits", "--budget", "smoke",
               "--only", "key-ciphertext-only", "--no-utility", "--workers", "2", "--quiet", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "1 audits, 1 tasks run" in capsys.readouterr().out
    (row,) = _rows(out)
    assert row["kernel"] == "linear" and set(row["families"]) == set(FAMILIES)
    assert json.loads((out / "timing.json").read_text())["workers"] == 2


# --- a real cluster: scheduler and two workers as processes, one killed mid-sweep --------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=str(REPO), env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
def test_real_scheduler_losing_a_worker_gives_the_embedded_frontier(tmp_path):
    from distributed import Client

    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    watch = None
    procs = [_spawn(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], tmp_path / "s.log")]
    try:
        for i in range(2):
            procs.append(_spawn(["worker", addr, "--nthreads", "1", "--no-dashboard", "--name", f"w{i}"],
                                tmp_path / f"w{i}.log"))
        watch = Client(addr, timeout=60)
        watch.wait_for_workers(2, timeout=120)
        w0 = next(a for a, w in watch.scheduler_info()["workers"].items() if w["name"] == "w0")
        kernels = kernels_from(presets=("linear",))
        cfg = dict(seeds=(0, 1), only=ONLY, utility=True, verbose=False, threads=1)
        out = tmp_path / "remote"
        res: dict = {}
        th = threading.Thread(target=lambda: res.update(run_sweep(kernels, SweepConfig(out=out, scheduler=addr,
                                                                                        **cfg))))
        th.start()
        t0 = time.time()
        while not (list(out.glob("audits/*/*/*/done")) or list(out.glob("audits/*/utility/done"))) \
                or not watch.processing(workers=[w0]).get(w0):
            assert time.time() - t0 < 300 and th.is_alive(), "no task finished"
            time.sleep(0.2)
        os.killpg(procs[1].pid, signal.SIGKILL)  # worker w0 (and its nanny) lost mid-sweep, while running a task
        th.join(timeout=600)
        assert not th.is_alive() and res["tasks_run"] == 6 and res["lost"] == []
        assert procs[1].wait(timeout=10) != 0
        local = tmp_path / "embedded"
        run_sweep(kernels, SweepConfig(out=local, workers=2, **cfg))
        assert _rows(out) == _rows(local)  # figures equal: the lost worker changed nothing
        (row,) = _rows(out)
        assert row["utility"] is not None and row["families"]["key-estimation"]["mean"] is not None
    finally:
        if watch is not None:
            watch.close()
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


def test_the_frontier_design_grid_holds_at_least_20_valid_designs_with_reasons():
    ks = load_grid(REPO / "benchmarks" / "frontier_designs.yaml")
    assert len(ks) >= 20 and len({k.name for k in ks}) == len(ks)
    assert all(k.reason for k in ks)
    assert sum(not k.scrambler_spec().is_linear() for k in ks) >= 5


def test_kernel_names_cannot_escape_the_output_folder():
    from analysis.sweep.kernels import GridError, Kernel

    for bad in ("../evil", "a/b", ".hidden", "", "x" * 121):
        with pytest.raises(GridError, match="kernel name"):
            Kernel(name=bad, spec={}, source="test")
    assert Kernel(name="d07-tanh_2.x", spec={}, source="test").name == "d07-tanh_2.x"


def test_a_cell_holding_another_audit_is_refused_before_sweep_json_is_written(tmp_path):
    """A cell folder with an audit of another kernel stops the sweep before anything records it as this sweep's."""
    out = tmp_path / "s"
    cell = out / "audits" / "linear--seed-3"
    assert main(["audit", "--preset", "linear", "--seed", "4", "--dataset", "digits", "--only", "leak-equality",
                 "--no-utility", "--quiet", "--out", str(cell)]) == 0
    cfg = SweepConfig(out=out, seeds=(3,), only=ONLY, utility=False, verbose=False, threads=1)
    with pytest.raises(Exception, match="holds an audit with another target.fingerprint"):
        run_sweep(kernels_from(presets=("linear",)), cfg, client=LocalClient())
    assert not (out / "sweep.json").exists()


def test_sweep_through_your_own_onnx_cloud_and_its_settings(tmp_path, capsys):
    """A sweep takes any cloud ``owsd audit`` takes: the model file and its --cloud-* settings reach every audit."""
    from own_data_cases import onnx_model

    from owsd.cloud import fit_cloud
    from owsd.cloud_sources import open_cloud

    model = onnx_model(tmp_path / "clf.onnx", size=64)
    opts = {"mean": (0.5, 0.5, 0.5)}
    cfg = SweepConfig(out=tmp_path / "s", seeds=(3,), only=("leak-equality",), cloud=str(model), cloud_options=opts,
                      verbose=False, threads=1)
    res = run_sweep(kernels_from(presets=("linear",)), cfg, client=LocalClient())
    assert res["audits"] == 1 and res["lost"] == []
    cell = tmp_path / "s" / "audits" / "linear--seed-3"
    digest = json.loads((cell / "audit.json").read_text())["cloud_model"]["digest"]
    assert digest == fit_cloud(open_cloud(str(model), **opts), (3, 224, 224)).digest
    rep = json.loads((cell / "report.json").read_text())
    assert rep["utility"]["cloud"] == "clf" and "--cloud-mean 0.5,0.5,0.5" in rep["command"]
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["settings"]["cloud_options"] == {"mean": [0.5] * 3}
    rc = main(["sweep", "--presets", "linear", "--cloud", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "missing.onnx" in err and err.count("\n") == 1


def test_sweep_utility_sizes_reach_every_audit(tmp_path):
    cfg = SweepConfig(out=tmp_path / "s", seeds=(3,), only=("leak-equality",), utility_sizes=(120, 60), verbose=False,
                      threads=1)
    run_sweep(kernels_from(presets=("linear",)), cfg, client=LocalClient())
    rep = json.loads((tmp_path / "s" / "audits" / "linear--seed-3" / "report.json").read_text())
    assert (rep["utility"]["n_train"], rep["utility"]["n_test"]) == (120, 60)
    assert "--utility-sizes 120,60" in rep["command"]
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["settings"]["utility_sizes"] == [120, 60]


def test_the_submitting_machine_opens_one_cloud_per_image_shape_not_per_audit(tmp_path, monkeypatch):
    import analysis.sweep.run as sweep_run

    opened = []
    real = sweep_run.make_audit_cloud

    def counting(cfg, *, image_shape=None):
        opened.append(image_shape)
        return real(cfg, image_shape=image_shape)

    monkeypatch.setattr(sweep_run, "make_audit_cloud", counting)
    cfg = SweepConfig(out=tmp_path / "s", seeds=(0, 1), only=("leak-equality",), utility=False, verbose=False,
                      threads=1)
    run_sweep(kernels_from(presets=("linear", "default")), cfg, client=LocalClient())
    assert opened == [(3, 224, 224)]  # 4 audits of one image shape: one cloud
    digests = [json.loads((d / "audit.json").read_text())["cloud_model"]["digest"]
               for d in (tmp_path / "s" / "audits").iterdir()]
    assert len(digests) == 4 and all(digests)  # every audit still records the cloud it will be measured with


def test_a_staged_study_is_combined_into_one_frontier(tmp_path, capsys):
    """benchmarks/frontier_study.py: the stages' rows per design, privacy pooled, utility per size."""
    import doctest
    import importlib.util

    spec = importlib.util.spec_from_file_location("frontier_study", REPO / "benchmarks" / "frontier_study.py")
    fs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fs)
    assert doctest.testmod(fs).failed == 0

    def fam(leak=None, key=None, errors=()):
        return {"key-estimation": {"mean": key, "ci95": None, "strongest": ["key-known-plaintext"] if key else [None],
                                   "errors": list(errors)},
                "inversion": {"mean": None, "ci95": None, "strongest": [None], "errors": []},
                "leakage": {"mean": leak, "ci95": [leak / 2, min(1.0, leak * 1.5)] if leak else None, "strongest": ["leak-equality"],
                            "errors": []}}

    def stage(name, settings, rows):
        d = tmp_path / name
        d.mkdir()
        (d / "sweep.json").write_text(json.dumps({"settings": settings}))
        (d / "frontier.json").write_text(json.dumps({"rows": rows}))
        return str(d)

    row = lambda k, u, fams, inc=(): {"kernel": k, "utility": u, "utility_ci": None, "plaintext": 0.95,  # noqa: E731
                                      "seeds": [0, 1], "families": fams, "verdicts": ["fail", "fail"], "fails": 2,
                                      "incomplete": list(inc)}
    s1 = stage("s1", {"only": ["leak-equality"]}, [row("a", 0.94, fam(leak=1.0)), row("b", 0.90, fam(leak=0.2))])
    s2 = stage("s2", {"only": ["key-known-plaintext"]},
               [row("b", 0.91, fam(key=0.7), inc=["key-estimation: seed 1: key-chosen-plaintext"])])
    s3 = stage("s3", {"only": ["leak-equality"], "utility_sizes": [10000, 2000]}, [row("b", 0.93, fam(leak=0.1))])
    assert fs.main(["--stage", s1, "--stage", s2, "--confirm", s3, "--out", str(tmp_path / "out")]) == 0
    table = capsys.readouterr().out
    rows = {r["kernel"]: r for r in json.loads((tmp_path / "out" / "frontier.json").read_text())["rows"]}
    b = rows["b"]
    assert b["families"]["key-estimation"]["mean"] == 0.7 and b["families"]["leakage"]["mean"] == 0.2  # strongest
    assert b["privacy"] == 0.7 and b["attacks_run"] == ["key-known-plaintext", "leak-equality"]
    assert b["utility_by_size"]["10000/2000"]["mean"] == 0.93 and b["utility"] == 0.90  # the stage-1 size places it
    assert b["incomplete"] == ["key-estimation: seed 1: key-chosen-plaintext"]
    assert b["verdicts"] == ["fail", "fail"]  # one a seed, not one a stage
    assert rows["a"]["privacy"] == 1.0 and {rows["a"]["pareto"], b["pareto"]} == {True}  # neither dominates
    assert "| b |" in table.replace("| 1 | b |", "| b |").replace("| 2 | b |", "| b |") and "(incomplete)" in table
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 1000
