"""The audit: run directory, report, verdicts, resume, secrets, errors, compare, screenshot.

Audits here run a few cheap attacks at the smoke budget on digits (the full registry is
exercised by the CLI and docs runs); a module-scoped audit of a ``linear`` key file is shared.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from analysis import audit as audit_mod
from analysis.audit import runner as audit_runner
from analysis.audit import AuditConfig, AuditError, AuditTarget, plan_jobs, run_audit
from analysis.compare import compare, rank_rows
from analysis.report import THRESHOLDS, adjust_pvalues, advantage, grade, load_report
from attacks.registry import available_attacks
from owsd.cli import main
from owsd.keys import generate_key
from owsd.presets import get_preset

REPO = Path(__file__).resolve().parents[1]
CHEAP = ("key-known-plaintext", "key-ciphertext-only", "leak-membership-loss")


@pytest.fixture(scope="module")
def linear_key(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = generate_key(get_preset("linear"), seed=11)
    path = tmp_path_factory.mktemp("key") / "linear.key"
    key.save(path)
    return key, path


@pytest.fixture(scope="module")
def linear_audit(linear_key, tmp_path_factory):
    """A smoke audit (CLI) of a linear key file: the weak control must fail."""
    _, path = linear_key
    out = tmp_path_factory.mktemp("audit") / "run"
    rc = main(["audit", "--key", str(path), "--dataset", "digits", "--cloud", "tiny", "--budget", "smoke",
               "--only", ",".join(CHEAP), "--threads", "1", "--quiet", "--out", str(out)])
    assert rc == 0
    return out


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# --- the run directory and the report ------------------------------------------------------
def test_report_holds_every_attack_with_its_card(linear_audit, linear_key):
    key, _ = linear_key
    rep = load_report(linear_audit)
    assert rep["target"]["fingerprint"] == key.fingerprint
    assert rep["target"]["spec"]["name"] == "linear" and rep["budget"] == "smoke"
    assert rep["command"].startswith("owsd audit --key")
    assert [t["metric"] for t in rep["thresholds"]] == [t.metric for t in THRESHOLDS]
    assert {e["attack"] for e in rep["attacks"]} == set(CHEAP)
    for e in rep["attacks"]:
        assert e["verdict"] in ("pass", "warn", "fail")
        m = e["primary"]
        assert m in e["metrics"] and m in e["chance"] and len(e["ci"][m]) == 2
        assert e["cost"]["seconds"] > 0 and e["seed"] == 0
        assert e["threat_model"]["knows_key"] is False and e["threat_model_text"]
        for f in e["files"].values():
            assert (linear_audit / f).is_file(), f
    by = {e["attack"]: e for e in rep["attacks"]}
    assert by["key-known-plaintext"]["verdict"] == "fail"  # the weak control: key recovered
    assert by["key-known-plaintext"]["metrics"]["functional_error"] < 0.1
    assert rep["summary"]["overall"] == "fail"
    u = rep["utility"]
    assert set(u["accuracy"]) >= {"plaintext", "embedding_only", "cloud_only"} and rep["utility_headline"] is not None
    for name in ("key_recovery.png", "privacy_utility.png", "advantage.png"):
        assert (linear_audit / "figures" / name).stat().st_size > 1000
    assert (linear_audit / "attacks" / "leak-membership-loss" / "roc.png").is_file()
    page = (linear_audit / "report.html").read_text()
    for e in rep["attacks"]:
        assert e["job"] in page
    assert "Declared thresholds" in page and "NeuraCrypt" in page
    csv = (linear_audit / "attacks" / "key-known-plaintext" / "per_sample.csv").read_text().splitlines()
    assert len(csv) > 2 and "," in csv[0]


def test_the_secret_never_appears_in_any_written_file(linear_audit, linear_key):
    key, _ = linear_key
    needles = [key.secret, key.secret.hex().encode(), key.secret.hex().upper().encode(),
               base64.b64encode(key.secret), base64.b64encode(key.secret).rstrip(b"=")]
    files = _all_files(linear_audit)
    assert len(files) > 10
    for p in files:
        blob = p.read_bytes()
        for n in needles:
            assert n not in blob, f"secret material found in {p}"


def test_rerun_resumes_without_rerunning_finished_attacks(linear_audit, linear_key, monkeypatch):
    _, path = linear_key
    before = load_report(linear_audit)

    def boom(attack, victim):
        raise AssertionError(f"{attack.name} was rerun")
    monkeypatch.setattr(audit_runner, "_execute", boom)
    rep = run_audit(AuditTarget.from_key_file(path), AuditConfig(out=linear_audit, only=CHEAP, verbose=False))
    assert [(e["job"], e["verdict"]) for e in rep["attacks"]] == [(e["job"], e["verdict"]) for e in before["attacks"]]


def test_interrupted_audit_resumes_from_what_is_done(tmp_path, monkeypatch):
    only = ("key-ciphertext-only", "leak-membership-loss")
    target = AuditTarget.from_preset("linear", seed=3)
    cfg = AuditConfig(out=tmp_path / "run", only=only, utility=False, verbose=False, threads=1)
    real = audit_runner._execute
    calls: list[str] = []

    def interrupt_second(attack, victim):
        calls.append(attack.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(attack, victim)
    monkeypatch.setattr(audit_runner, "_execute", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        run_audit(target, cfg)
    first = calls[0]
    assert (tmp_path / "run" / "attacks" / first / "done").is_file()
    assert not (tmp_path / "run" / "attacks" / calls[1] / "done").exists()
    assert not (tmp_path / "run" / "report.json").exists()

    rerun: list[str] = []

    def count(attack, victim):
        rerun.append(attack.name)
        return real(attack, victim)
    monkeypatch.setattr(audit_runner, "_execute", count)
    rep = run_audit(target, cfg)
    assert rerun == [calls[1]]  # only what was not done
    assert {e["attack"] for e in rep["attacks"]} == set(only)


def test_callable_scrambler_is_audited_with_the_same_suite(tmp_path):
    from attacks.controls import permutation_channel

    perm = permutation_channel(seed=5)
    rep = audit_mod.audit(perm.fn, name="pixel-permutation", out=tmp_path / "run", only=CHEAP,
                          verbose=False, threads=1)
    assert rep["target"]["kind"] == "callable" and rep["target"]["spec"] is None
    by = {e["attack"]: e for e in rep["attacks"]}
    assert by["key-known-plaintext"]["verdict"] == "n/a" and "spec" in by["key-known-plaintext"]["reason"]
    assert by["leak-membership-loss"]["verdict"] in ("pass", "warn", "fail")
    assert rep["utility"]["accuracy"]["cloud_only"] and "embedding_only" not in rep["utility"]["accuracy"]
    assert (tmp_path / "run" / "report.html").is_file()


# --- plan ------------------------------------------------------------------------------------
def test_plan_covers_every_registered_attack_and_grows_with_the_budget():
    names = set(available_attacks())
    smoke = plan_jobs("smoke")
    assert {j.attack for j in smoke} == names and all(j.role == "main" for j in smoke)
    standard = plan_jobs("standard")
    assert {j.attack for j in standard} == names and len(standard) >= len(smoke)
    assert len({j.id for j in standard}) == len(standard)
    if "key-known-plaintext" in names:
        assert any(j.attack == "key-known-plaintext" and j.role == "sweep" for j in standard)
    with pytest.raises(AuditError, match="unknown attack"):
        plan_jobs("smoke", only=("no-such-attack",))


# --- verdicts --------------------------------------------------------------------------------
def _res(metric, value, chance, ci, p, family="key-estimation"):
    return {"attack": "x", "family": family, "primary": metric, "metrics": {metric: value},
            "chance": {metric: chance}, "ci": {metric: ci}, "p_values": {metric: p} if p is not None else {}}


def test_grade_reads_the_declared_lines():
    assert grade(_res("functional_error", 0.01, 1.0, [0.0, 0.02], 1e-9))["verdict"] == "fail"
    assert grade(_res("functional_error", 3.0, 1.0, [2.5, 3.5], 1.0))["verdict"] == "pass"
    assert grade(_res("functional_error", 0.5, 1.0, [0.4, 0.6], 1e-6))["verdict"] == "warn"
    # NeuraCrypt grading: 30% re-identified (chance 3%) fails; 3% passes
    assert grade(_res("reid_accuracy", 0.30, 0.03, [0.2, 0.4], 1e-8))["verdict"] == "fail"
    assert grade(_res("reid_accuracy", 0.03, 0.03, [0.0, 0.1], 0.6))["verdict"] == "pass"
    # SSIM above 0.3 but within 0.1 of the mean-image baseline (small images): not a break
    assert grade(_res("ssim_mean", 0.62, 0.58, [0.6, 0.64], 1e-5, "inversion"))["verdict"] == "warn"
    assert grade(_res("ssim_mean", 0.90, 0.58, [0.88, 0.92], 1e-5, "inversion"))["verdict"] == "fail"
    # no p-value: the CI against chance decides; a metric without a row: warn when significant
    assert grade(_res("auc", 0.9, 0.5, [0.85, 0.95], None, "leakage"))["verdict"] == "fail"
    assert grade(_res("mi_label", 0.2, 0.05, [0.15, 0.25], 1e-4, "leakage"))["verdict"] == "warn"
    assert grade(_res("mi_label", 0.05, 0.05, [0.0, 0.1], 0.4, "leakage"))["verdict"] == "pass"


def test_pvalues_are_adjusted_across_the_audit_and_advantage_is_normalized():
    rs = [_res("auc", 0.6, 0.5, [0.5, 0.7], p, "leakage") for p in (0.01, 0.02, 0.03, 0.5)]
    adj = adjust_pvalues(rs)
    assert all(a["auc"] >= r["p_values"]["auc"] for a, r in zip(adj, rs))
    assert advantage(_res("functional_error", 0.25, 1.0, [0, 1], 0.0)) == pytest.approx(0.75)
    assert advantage(_res("reid_accuracy", 0.01, 0.1, [0, 1], 0.9)) == 0.0


# --- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["spec-json", "spec-field", "key-corrupt", "key-missing", "data-dir",
                                  "needs-data-dir", "only"])
def test_malformed_inputs_give_clear_errors(case, tmp_path, capsys):
    args = ["audit", "--out", str(tmp_path / "run"), "--quiet", "--no-utility"]
    bad = tmp_path / "bad.json"
    expect = {
        "spec-json": ("{not json", ["--spec", str(bad)], "not valid JSON"),
        "spec-field": (json.dumps({**get_preset("linear").to_dict(), "colour": "blue"}), ["--spec", str(bad)],
                       "unknown spec field"),
        "key-corrupt": ('{"format": "owsd-key", "secret": "zz"}', ["--key", str(bad)], "bad.json"),
        "key-missing": (None, ["--key", str(tmp_path / "nope.key")], "does not exist"),
        "data-dir": (None, ["--preset", "linear", "--dataset", "mnist", "--data-dir", str(tmp_path / "no")],
                     "does not exist"),
        "needs-data-dir": (None, ["--preset", "linear", "--dataset", "mnist"], "needs --data-dir"),
        "only": (None, ["--preset", "linear", "--only", "no-such-attack"], "unknown attack"),
    }[case]
    if expect[0] is not None:
        bad.write_text(expect[0])
    rc = main(args + expect[1])
    err = capsys.readouterr().err
    assert rc == 2 and "owsd audit: error:" in err and expect[2] in err, err
    assert not (tmp_path / "run" / "report.json").exists()


def test_a_run_directory_of_another_kernel_is_refused(linear_audit, capsys):
    rc = main(["audit", "--preset", "linear", "--seed", "99", "--out", str(linear_audit), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "holds an audit with another target.fingerprint" in err


def test_empty_data_dir_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    rc = main(["audit", "--preset", "linear", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"),
               "--out", str(tmp_path / "run"), "--quiet", "--only", "key-ciphertext-only"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot load dataset 'mnist'" in err and "not found" in err, err
    assert not (tmp_path / "run").exists()


# --- compare ---------------------------------------------------------------------------------
def test_audit_compare_ranks_kernels(linear_audit, tmp_path, capsys):
    rep = load_report(linear_audit)
    dirs = []
    for name, util, adv, fails in (("strong", 0.7, 0.05, 0), ("weak", 0.8, 0.95, 3), ("dominated", 0.6, 0.5, 1)):
        d = tmp_path / name
        d.mkdir()
        r = json.loads(json.dumps(rep))
        r["target"]["name"], r["utility_headline"] = name, util
        r["summary"]["max_reconstruction_advantage"], r["summary"]["counts"]["fail"] = adv, fails
        (d / "report.json").write_text(json.dumps(r))
        dirs.append(str(d))
    rc = main(["audit-compare", *dirs, "--out", str(tmp_path / "cmp")])
    out = capsys.readouterr().out
    assert rc == 0 and "| 1 | strong" in out and "| 3 | dominated" in out
    assert (tmp_path / "cmp" / "privacy_utility.png").stat().st_size > 1000
    ranked = json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"]
    assert [r["label"] for r in ranked] == ["strong", "weak", "dominated"]
    assert main(["audit-compare", str(tmp_path / "nothing")]) == 2
    assert rank_rows([])== [] and compare(dirs[:1])["rows"][0]["rank"] == 1


# --- screenshot ------------------------------------------------------------------------------
def test_report_screenshot(linear_audit, tmp_path):
    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("no chromium (apt-get install -y chromium) to take the screenshot")
    png = tmp_path / "shot.png"
    proc = subprocess.run(["bash", str(REPO / "docs" / "make_screenshot.sh"), str(linear_audit), str(png)],
                          capture_output=True, text=True, timeout=120, env={"SCREENSHOT_SIZE": "1000,1200",
                                                                            "PATH": _path()})
    assert proc.returncode == 0, proc.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert img.shape == (1200, 1000) and img.std() > 10  # not a blank page


def _path() -> str:
    import os

    return os.environ.get("PATH", "/usr/bin:/bin")


def test_utility_sizes_are_a_setting_of_the_audit(tmp_path, capsys):
    """``--utility-sizes TRAIN,TEST`` (a study's 10,000/2,000) instead of the budget's; part of the resume check."""
    out = tmp_path / "run"
    args = ["audit", "--preset", "linear", "--seed", "5", "--dataset", "digits", "--cloud", "tiny", "--budget", "smoke",
            "--only", "leak-equality", "--quiet", "--out", str(out)]
    assert main(args + ["--utility-sizes", "120,60"]) == 0
    rep = load_report(out)
    assert (rep["utility"]["n_train"], rep["utility"]["n_test"]) == (120, 60)
    assert "--utility-sizes 120,60" in rep["command"]
    capsys.readouterr()
    assert main(args + ["--utility-sizes", "100,60"]) == 2
    assert "another utility_sizes" in capsys.readouterr().err
    assert main(args + ["--utility-sizes", "5"]) == 2
    err = capsys.readouterr().err
    assert "TRAIN,TEST" in err and err.count("\n") == 1
    with pytest.raises(AuditError, match="utility_sizes"):
        AuditConfig(utility_sizes=(0, 10)).validate()
