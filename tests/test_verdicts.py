"""Verdicts that mean what they say: scope, applicability, certification, callables.

Unit tests of :mod:`analysis.verdicts` on hand-made entries (each rule has a case where it
must fire and one where it must not), then cheap smoke audits of reference callables.
"""

from __future__ import annotations

import warnings

import pytest

from analysis import verdicts as V
from analysis.audit import AuditConfig, AuditTarget, run_audit
from analysis.cli import summary_text
from analysis.reference_scramblers import InputIndependent, PixelPermutation
from attacks.base import Attack
from attacks.registry import available_attacks


def _e(job, verdict, *, family="leakage", finding="kernel", metric="auc", value=0.5, chance=0.5, ci=(0.4, 0.6),
       p=None, adv=0.0, **tm):
    return {"job": job, "attack": job, "family": family, "finding": finding, "verdict": verdict,
            "threat_model": tm, "primary": metric, "metrics": {metric: value}, "chance": {metric: chance},
            "ci": {metric: list(ci)}, "p_values": {} if p is None else {metric: p}, "advantage": adv,
            "reasons": [], "victim_sizes": {}, "declared_sizes": {}}


def _battery():
    return [_e("probe", "pass", labelled_examples=100), _e("equality", "pass"),
            _e("paired", "pass", family="inversion", metric="ssim_mean", value=0.22, chance=0.223, ci=(0.21, 0.23),
               known_pairs=2000),
            _e("membership", "fail", finding="system", value=0.99, ci=(0.98, 1.0), labelled_examples=200)]


def test_system_findings_stay_out_of_the_kernel_verdict():
    doc = V.finalize(_battery(), budget="standard")
    kv, sf = doc["kernel_verdict"], doc["system_findings"]
    assert kv["verdict"] == "pass" and kv["certified"] and sf["verdict"] == "fail"
    assert [f["job"] for f in sf["findings"]] == ["membership"]
    assert "membership" not in str(kv["by_threat_model"]) and "membership" not in kv["reason"]
    # pass names the strongest attack tried on each threat model
    assert set(kv["by_threat_model"]) == {"ciphertext-only", "labelled", "known-plaintext"}
    assert kv["by_threat_model"]["known-plaintext"]["strongest"] == "paired" and "paired (ssim_mean" in kv["reason"]


def test_a_kernel_finding_that_fails_fails_the_kernel():
    es = _battery() + [_e("key-distinguish", "fail", value=1.0, ci=(1.0, 1.0), adv=1.0)]
    kv = V.finalize(es, budget="smoke")["kernel_verdict"]
    assert kv["verdict"] == "fail" and "key-distinguish" in kv["reason"] and not kv["resisted"]


def test_smoke_budget_cannot_certify_a_pass():
    kv = V.finalize(_battery(), budget="smoke")["kernel_verdict"]
    assert kv["verdict"] == "inconclusive" and kv["resisted"] and not kv["certified"]
    assert "smoke budget cannot certify" in kv["reason"]


def test_below_chance_is_inconclusive_never_pass():
    # inversion-optimization on `default`: SSIM 0.017 where chance is 0.171 (its surrogate lacks the carrier)
    low = _e("optimization", "pass", family="inversion", metric="ssim_mean", value=0.0173, chance=0.171,
             ci=(0.0170, 0.0176), known_pairs=2000)
    es = [_e("probe", "pass", labelled_examples=100), low]
    kv = V.finalize(es, budget="standard")["kernel_verdict"]
    assert low["verdict"] == "inconclusive" and low["graded_verdict"] == "pass"
    assert "below its chance level" in low["reasons"][0]
    # the only attack on known pairs did not apply: that threat model is not covered, so no pass
    assert kv["verdict"] == "inconclusive" and "known-plaintext" in kv["reason"]
    # negative control: a metric a hair below chance, one of many, is chance (BH across the audit)
    hair = [_e(f"t{i}", "pass", value=0.5, ci=(0.45, 0.55)) for i in range(15)] + \
        [_e("mantel", "pass", metric="spearman", value=-0.045, chance=0.0, ci=(-0.096, -0.0004))]
    V.finalize(hair, budget="standard")
    assert hair[-1]["verdict"] == "pass"


def test_assert_resists_refuses_a_below_chance_score():
    from analysis.security import assert_resists
    low = _e("optimization", "pass", family="inversion", metric="ssim_mean", value=0.0173, chance=0.171,
             ci=(0.0170, 0.0176))
    with pytest.raises(AssertionError, match="inconclusive.*below its chance level"):
        assert_resists(low)
    assert_resists(_e("probe", "pass", value=0.51, ci=(0.45, 0.57)))  # at chance: resisted


def test_strongest_tie_break_is_the_job_not_the_seconds():
    a, b = _e("a-job", "pass"), _e("b-job", "pass")
    a["cost"], b["cost"] = {"seconds": 9.0}, {"seconds": 1.0}
    assert max([a, b], key=V.strength)["job"] == max([b, a], key=V.strength)["job"] == "b-job"
    a["cost"], b["cost"] = {"seconds": 1.0}, {"seconds": 9.0}
    assert max([a, b], key=V.strength)["job"] == "b-job"


def test_lower_is_attack_metrics_below_chance_mean_above_it():
    worse = _e("kp", "pass", family="key-estimation", metric="functional_error", value=3.0, chance=1.0,
               ci=(2.5, 3.5), known_pairs=128)
    better = _e("kp2", "pass", family="key-estimation", metric="functional_error", value=0.95, chance=1.0,
                ci=(0.9, 1.0), known_pairs=32)
    V.finalize([worse, better], budget="standard")
    assert worse["verdict"] == "inconclusive" and better["verdict"] == "pass"


def test_metric_directions_come_from_the_entrys_metric_specs():
    """A metric no scorer declares: only the entry's ``metric_specs`` say that lower helps the attacker."""
    from attacks.metrics import metric_spec

    assert metric_spec("made_up_error") is None

    def entry(spec):
        e = _e("custom", "pass", family="key-estimation", metric="made_up_error", value=3.0, chance=1.0,
               ci=(2.5, 3.5), known_pairs=128)
        return {**e, "metric_specs": {"made_up_error": spec}} if spec else e

    lower = entry({"higher_is_attack": False, "perfect": 0.0})  # an error three times chance's
    assert V.below_chance_pvalue(lower) < 1e-6 and "custom" in V.below_chance([lower])
    V.finalize([lower], budget="standard")
    assert lower["verdict"] == "inconclusive" and "below its chance level" in lower["reasons"][0]
    higher = entry(None)  # undeclared anywhere: higher is the attacker's side, so 3.0 beats chance 1.0
    assert V.below_chance_pvalue(higher) > 0.99 and V.below_chance([higher]) == {}
    V.finalize([higher], budget="standard")
    assert higher["verdict"] == "pass"


def test_crashes_and_cut_sizes_block_certification():
    es = _battery() + [_e("boom", "error")]
    kv = V.finalize(es, budget="full")["kernel_verdict"]
    assert kv["verdict"] == "inconclusive" and "crashed: boom" in kv["reason"]
    es = _battery()
    es[0].update(victim_sizes={"n_private": 100}, declared_sizes={"n_private": 600})
    kv = V.finalize(es, budget="standard")["kernel_verdict"]
    assert kv["verdict"] == "inconclusive" and "too small" in kv["reason"]
    kv = V.finalize(_battery(), budget="standard", missing=["later"])["kernel_verdict"]
    assert kv["verdict"] == "inconclusive" and "later" in kv["reason"]


def test_a_pass_says_which_threat_models_no_attack_applied_to():
    es = _battery() + [_e("kcp", "n/a", family="key-estimation", chosen_queries=64, pair_input="embedding")]
    kv = V.finalize(es, budget="standard")["kernel_verdict"]
    assert kv["verdict"] == "pass" and "no attack of this toolkit applies on threat model(s) chosen-plaintext" in kv["reason"]


def test_nothing_applicable_is_not_a_pass():
    kv = V.finalize([_e("kp", "n/a", family="key-estimation")], budget="full")["kernel_verdict"]
    assert kv["verdict"] == "n/a"
    kv = V.finalize([_e("x", "error")], budget="full")["kernel_verdict"]
    assert kv["verdict"] == "inconclusive"


def test_finding_is_declared_data_on_the_attack_class():
    attacks = available_attacks()
    system = sorted(n for n, c in attacks.items() if c.finding == "system")
    assert system == ["leak-membership-loss", "leak-membership-shadow"]
    assert all(c.finding in ("kernel", "system") for c in attacks.values())
    assert Attack.finding == "kernel"  # the default for new attacks

    class Bad(Attack):
        name, family, finding = "bad", "leakage", "elsewhere"

        def threat_model(self):
            raise AssertionError

        def run(self, view, *, rng, generator):
            raise AssertionError
    with pytest.raises(TypeError, match="finding must be one of"):
        Bad(verbose=False)


# --- audits of reference callables -------------------------------------------------------------
CHEAP = ("leak-key-distinguish", "leak-label-probe", "leak-membership-loss")


def _audit(fn, name, out, only=CHEAP, budget="smoke"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_audit(AuditTarget.from_callable(fn, name=name),
                         AuditConfig(out=out, only=only, utility=False, verbose=False, threads=1, budget=budget))


def test_noise_callable_kernel_resists_while_membership_is_a_system_finding(tmp_path):
    rep = _audit(InputIndependent(seed=0), "noise", tmp_path / "run")
    by = {e["attack"]: e for e in rep["attacks"]}
    assert by["leak-membership-loss"]["finding"] == "system" and by["leak-membership-loss"]["verdict"] == "fail"
    assert by["leak-key-distinguish"]["verdict"] == "pass"  # rekey() gives the game its second key
    kv = rep["kernel_verdict"]
    assert kv["verdict"] == "inconclusive" and kv["resisted"] and "cannot certify" in kv["reason"]
    assert rep["summary"]["overall"] == "inconclusive" and rep["summary"]["counts"]["fail"] == 0
    assert rep["system_findings"]["verdict"] == "fail"
    page = (tmp_path / "run" / "report.html").read_text()
    assert "System findings (not the kernel's)" in page and "kernel verdict" in page
    text = summary_text(rep)
    assert "kernel verdict INCONCLUSIVE" in text and "NOT certified" in text
    assert text.index("system findings") < text.index("leak-membership-loss")


def test_permutation_callable_fails(tmp_path):
    rep = _audit(PixelPermutation(seed=3), "perm", tmp_path / "run")
    assert rep["kernel_verdict"]["verdict"] == "fail"
    assert {e["attack"]: e["verdict"] for e in rep["attacks"]}["leak-key-distinguish"] == "fail"


def test_a_callable_without_rekey_makes_key_distinguish_not_applicable(tmp_path):
    rep = _audit(lambda x: InputIndependent(seed=1)(x), "plain", tmp_path / "run", only=("leak-key-distinguish",))
    e = rep["attacks"][0]
    assert e["verdict"] == "n/a" and "another key" in e["reason"] and "rekey" in e["reason"]
    assert rep["kernel_verdict"]["verdict"] == "n/a"


def test_a_threat_model_the_dataset_cannot_grant_is_not_applicable(tmp_path):
    rep = _audit(InputIndependent(seed=0), "noise", tmp_path / "run", only=("inversion-paired",), budget="standard")
    e = rep["attacks"][0]
    assert e["verdict"] == "n/a" and "needs 2000 known pairs" in e["reason"] and e["reduced"]
    assert rep["kernel_verdict"]["verdict"] == "n/a" and "too small" in rep["kernel_verdict"]["reason"]
