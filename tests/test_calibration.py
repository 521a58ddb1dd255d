"""The calibration battery: reference scramblers whose verdicts are known, audited and compared.

The whole battery at the smoke budget (about 8 minutes on 2 shared cores) is ``slow``; the
normal suite runs a fast subset (three references, three cheap attacks) and the checks of
the data and the references themselves.
"""

from __future__ import annotations

import json

import pytest
import torch

from analysis import reference_scramblers as R
from analysis.calibration import EXPECTED_PATH, compare, expected_kernel, load_expected, run_calibration
from owsd.cli import main

REQUIRED = {"identity", "pixel-permutation", "blur", "input-independent-noise", "one-time-pad", "linear", "default",
            "grey-sigmoid"}


def test_the_battery_is_data_with_the_required_references():
    exp = load_expected()
    names = {s["name"] for s in exp["scramblers"]}
    assert REQUIRED <= names and len(names) >= 8
    assert sum(s["name"].startswith("additive-noise") for s in exp["scramblers"]) == 2  # two noise levels
    assert {s["kernel"] for s in exp["scramblers"]} == {"pass", "fail"}
    for s in exp["scramblers"]:
        assert set(s["families"]) == {"key-estimation", "inversion", "leakage"} and s["why"]
    noise = next(s for s in exp["scramblers"] if s["name"] == "input-independent-noise")
    assert expected_kernel(noise, certified=True) == "pass" and expected_kernel(noise, certified=False) == "inconclusive"
    assert EXPECTED_PATH.parent.name == "analysis"  # shipped inside the package (setup.cfg package_data)


def test_compare_needs_every_expectation_and_no_crash():
    ref = next(s for s in load_expected()["scramblers"] if s["name"] == "identity")
    fam = {f: {"verdict": v} for f, v in (("key-estimation", "n/a"), ("inversion", "fail"), ("leakage", "fail"))}
    rep = {"target": {"fingerprint": "f"}, "system_findings": {"verdict": "fail", "findings": []},
           "kernel_verdict": {"verdict": "fail", "certified": False, "by_family": fam},
           "attacks": [{"job": "a", "verdict": "fail"}]}
    assert compare(ref, rep)["match"]
    rep["attacks"].append({"job": "b", "verdict": "error"})
    assert not compare(ref, rep)["match"] and compare(ref, rep)["errors"] == ["b"]
    rep["attacks"].pop()
    fam["inversion"]["verdict"] = "pass"
    row = compare(ref, rep)
    assert not row["match"] and not row["families"]["inversion"]["match"]


def test_a_corrupt_battery_is_refused(tmp_path):
    bad = tmp_path / "b.json"
    doc = json.loads(EXPECTED_PATH.read_text())
    doc["scramblers"][0]["kernel"] = "secure"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="unknown verdicts"):
        load_expected(bad)


def test_references_do_what_they_say():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 8, 8, generator=g)
    # a secret permutation: deterministic, key-dependent, and a permutation of the identity's pixels
    p = R.PixelPermutation(seed=1)
    assert torch.equal(p(x), p(x)) and not torch.equal(p(x), p.rekey(2)(x))
    assert torch.equal(p(x).flatten(1).sort(1).values, R.Identity()(x).flatten(1).sort(1).values)
    # input independence: the same stream for two different inputs
    a, b = R.InputIndependent(seed=5), R.InputIndependent(seed=5)
    assert torch.equal(a(x), b(torch.zeros_like(x)))
    # one-time pad: a fresh pad per image (the same image twice differs), output in [0, 1)
    pad = R.OneTimePad(seed=0)
    y = pad(torch.cat([x[:1], x[:1]]))
    assert not torch.equal(y[0], y[1]) and float(y.min()) >= 0 and float(y.max()) < 1
    # additive noise: centred on the image (where it is not clipped), at the stated level
    n = R.AdditiveNoise(sigma=0.1, seed=0)
    d = n(x) - R.Identity()(x)
    assert abs(float(d.std()) - 0.1) < 0.02 and n.rekey(3).sigma == 0.1
    with pytest.raises(ValueError, match="unknown reference"):
        R.make("nothing")


def test_fast_subset_matches_expectations(tmp_path):
    res = run_calibration(tmp_path / "cal", scramblers=("identity", "pixel-permutation", "one-time-pad"),
                          only=("leak-label-probe", "leak-equality", "leak-key-distinguish"), verbose=False)
    rows = {r["scrambler"]: r for r in res["rows"]}
    assert rows["identity"]["kernel"]["observed"] == "fail" and rows["pixel-permutation"]["kernel"]["observed"] == "fail"
    otp = rows["one-time-pad"]
    assert otp["kernel"]["observed"] == "inconclusive" and otp["kernel"]["expected"] == "inconclusive"
    assert otp["families"]["leakage"]["observed"] == "pass" and otp["families"]["inversion"]["observed"] == "not run"
    assert res["all_match"], [r for r in res["rows"] if not r["match"]]
    assert all(not r["errors"] for r in res["rows"])
    md = (tmp_path / "cal" / "calibration.md").read_text()
    assert "| one-time-pad" in md and "load average" in md
    saved = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert saved["all_match"] and saved["machine"]["cpu_model"] and saved["versions"]["torch"]  # owsd.provenance
    assert len(saved["load_average"]["start"]) == 3 and saved["cpus"] == saved["machine"]["logical_cpus"]


def test_calibrate_cli_rejects_an_unknown_reference(tmp_path, capsys):
    rc = main(["audit-calibrate", "--scramblers", "nope", "--out", str(tmp_path / "c"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown reference scrambler(s) ['nope']" in err and "Traceback" not in err


@pytest.mark.slow
def test_the_whole_battery_matches_at_smoke_budget(tmp_path, capsys):
    rc = main(["audit-calibrate", "--budget", "smoke", "--out", str(tmp_path / "cal"), "--quiet"])
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert rc == 0 and res["all_match"], out
    assert len(res["rows"]) == len(load_expected()["scramblers"])
