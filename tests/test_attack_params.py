"""Typed attack configuration: the budgets table, the generic validator, --param, applicability.

The pin test compares, for every attack x budget, the resolved parameters, victim sizes,
requirements and threat model (and the audit plans) with what main resolved before the
refactor (``tests/data/attack_config_main.json``): the same budget gives the same parameters.
The scoring settings that were attack parameters then (:data:`MOVED`) are now the runner's
(:class:`attacks.scoring.ScoringConfig`): the pin finds them there, with the same values.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from analysis.audit.plan import plan_jobs
from attacks import budgets
from attacks.base import Attack, LabelPredictions, RequirementError
from attacks.params import param, parse_assignment, resolve
from attacks.registry import available_attacks, get_attack
from attacks.scoring import ScoringConfig
from attacks.threat import ThreatModel
from owsd.cli import main

GOLDEN = json.loads((Path(__file__).parent / "data" / "attack_config_main.json").read_text())
#: attack -> {former parameter: the ScoringConfig field that took it over}
MOVED = {"leak-clustering": {"n_perm": "cluster_permutations"},
         "leak-distance-mantel": {"n_perm": "mantel_permutations", "n_boot": "mantel_bootstrap"},
         "leak-membership-loss": {"n_boot": "tpr_bootstrap"},
         "leak-membership-shadow": {"n_boot": "tpr_bootstrap"},
         "leak-mutual-info": {"n_perm": "mi_permutations", "n_neighbors": "mi_neighbors", "n_coords": "mi_coords"}}


def _enc(v):
    """The golden file's encoding of a parameter value (keeps int/float/tuple apart)."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return {"int": v}
    if isinstance(v, float):
        return {"float": repr(v)}
    if isinstance(v, tuple):
        return {"tuple": [_enc(x) for x in v]}
    return {"repr": repr(v)}


def _state(a: Attack) -> dict:
    return {"params": {k: _enc(v) for k, v in sorted(a.params.items())}, "victim_sizes": a.victim_sizes(),
            "requirements": a.requirements.to_dict(), "threat_model": a.threat_model().to_dict()}


@pytest.mark.parametrize("name", sorted(GOLDEN["attacks"]))
def test_every_budget_resolves_to_what_main_resolved(name):
    cls = get_attack(name)
    for b, want in GOLDEN["attacks"][name].items():
        got = _state(cls(budget=b, seed=0, verbose=False))
        scoring = ScoringConfig.for_budget(b)
        assert not set(MOVED.get(name, {})) & set(got["params"]), "a scoring setting is an attack parameter again"
        got["params"] = dict(sorted({**got["params"], **{old: _enc(getattr(scoring, new))
                                                         for old, new in MOVED.get(name, {}).items()}}.items()))
        assert got == want, (name, b)


def test_the_audit_plans_are_the_ones_main_planned():
    assert sorted(available_attacks()) == sorted(GOLDEN["attacks"])
    for b, want in GOLDEN["plan"].items():
        got = [{"id": j.id, "attack": j.attack, "params": {k: _enc(v) for k, v in j.params.items()}, "role": j.role}
               for j in plan_jobs(b)]
        assert got == want, b


# --- the generic validator --------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class _P:
    n: int = param(doc="a count", ge=1)
    rate: float = param(doc="a rate", gt=0, lt=1)
    mode: str = param(doc="a mode", choices=("a", "b"))
    sizes: tuple[int, ...] = param(doc="sizes", ge=2, min_len=1)
    flag: bool = param(False, doc="a flag")
    shape: Optional[tuple[int, ...]] = param(None, doc="a shape")

    def check(self) -> Optional[str]:
        return "mode b needs n >= 10" if self.mode == "b" and self.n < 10 else None


_OK = {"n": 3, "rate": 0.5, "mode": "a", "sizes": (2, 4)}


@pytest.mark.parametrize("change,err,match", [
    ({"n": 0}, ValueError, "n must be >= 1"),
    ({"n": 2.0}, TypeError, "n must be int"),
    ({"n": True}, TypeError, "n must be int"),
    ({"rate": 1}, ValueError, "rate must be < 1"),
    ({"mode": "c"}, ValueError, "mode must be one of"),
    ({"sizes": ()}, ValueError, "at least 1 item"),
    ({"sizes": (2, 1)}, ValueError, "sizes items must be >= 2"),
    ({"sizes": [2, 4]}, TypeError, "sizes must be tuple of int"),
    ({"flag": 1}, TypeError, "flag must be bool"),
    ({"bogus": 1}, TypeError, "unknown parameter"),
    ({"mode": "b"}, ValueError, "mode b needs n >= 10"),
])
def test_one_routine_validates_types_ranges_choices_and_cross_field_rules(change, err, match):
    with pytest.raises(err, match=match):
        resolve(_P, {**_OK, **change}, owner="demo")


def test_valid_values_resolve_with_defaults_and_missing_ones_are_named():
    p = resolve(_P, {**_OK, "rate": 1e-3}, owner="demo")
    assert (p.n, p.rate, p.flag, p.shape) == (3, 1e-3, False, None)
    with pytest.raises(TypeError, match=r"missing parameter\(s\) \['mode'\]"):
        resolve(_P, {k: v for k, v in _OK.items() if k != "mode"}, owner="demo")


@pytest.mark.parametrize("text,want", [("n=7", ("n", 7)), ("rate=0.25", ("rate", 0.25)), ("flag=yes", ("flag", True)),
                                       ("sizes=2,8", ("sizes", (2, 8))), ("shape=none", ("shape", None)),
                                       ("shape=1,28,28", ("shape", (1, 28, 28)))])
def test_key_value_text_is_parsed_to_the_fields_type(text, want):
    assert parse_assignment(_P, text) == want


@pytest.mark.parametrize("text,match", [("n", "expected key=value"), ("n=x", "n must be int"),
                                        ("n=0", "n must be >= 1"), ("nope=1", "unknown parameter 'nope'")])
def test_bad_key_value_text_is_one_clear_error(text, match):
    with pytest.raises(ValueError, match=match):
        parse_assignment(_P, text)


def test_a_bad_table_row_fails_when_the_attack_registers(monkeypatch):
    cls = get_attack("leak-label-probe")
    check = lambda p: resolve(cls.Params, p, owner=cls.name)  # noqa: E731
    budgets.check_budget(cls.name, check)
    row = budgets.TABLE[cls.name]["standard"]
    bad = {**budgets.TABLE[cls.name], "standard": budgets.Budget({**row.params, "k": 0}, row.victim_sizes)}
    monkeypatch.setitem(budgets.TABLE, cls.name, bad)
    with pytest.raises(ValueError, match="leak-label-probe/standard: .*k must be >= 1"):
        budgets.check_budget(cls.name, check)
    same = budgets.Budget(row.params, row.victim_sizes, ({"source": "scrambled"},))
    monkeypatch.setitem(budgets.TABLE, cls.name, {**budgets.TABLE[cls.name], "standard": same})
    with pytest.raises(ValueError, match="a variant must change a parameter"):
        budgets.check_budget(cls.name, check)
    with pytest.raises(ValueError, match="no row in the budgets table"):
        budgets.check_budget("unlisted-attack", check)


# --- requirements follow the parameters -------------------------------------------------------
def test_requirements_are_computed_from_the_parameters():
    probe, clus = get_attack("leak-label-probe"), get_attack("leak-clustering")
    assert probe(source="outputs", verbose=False).requirements.cloud
    assert not probe(verbose=False).requirements.cloud
    assert clus(verbose=False).requirements.cloud and not clus(source="scrambled", verbose=False).requirements.cloud
    assert isinstance(probe.requirements, property)  # no class-level value for callers to misread


def test_run_attack_with_an_outputs_source_gets_a_cloud():
    """Regression: the class-level ``requirements`` said no cloud, so the victim had none and the
    instance (which needs one) raised RequirementError."""
    from analysis.security import run_attack

    r = run_attack("leak-label-probe", "linear", source="outputs")
    assert r.params["source"] == "outputs" and r.requirements["cloud"] and r.metrics["n"] > 0
    assert r.to_dict()["metric_specs"]["accuracy"] == {"higher_is_attack": True, "perfect": 1.0}


# --- scoring settings are the runner's ---------------------------------------------------------
@pytest.mark.parametrize("name,key", [(n, k) for n, moved in sorted(MOVED.items()) for k in moved])
def test_scoring_settings_are_no_attack_parameters(name, key):
    with pytest.raises(TypeError, match=f"unknown parameter.*{key}"):
        get_attack(name)(verbose=False, **{key: 9})


def test_the_runner_chooses_the_scoring_settings_and_the_result_records_them():
    from analysis.security import run_attack

    few = ScoringConfig.for_budget("smoke", mantel_permutations=9, mantel_bootstrap=0)
    r = run_attack("leak-distance-mantel", "linear", scoring=few)
    assert r.scoring == few.to_dict() and r.to_dict()["scoring"]["mantel_permutations"] == 9
    assert r.ci["spearman"] == (r.metrics["spearman"],) * 2  # no bootstrap: a point
    assert r.p_values["spearman"] >= 0.1  # the smallest p-value 9 permutations can give
    assert run_attack("leak-distance-mantel", "linear").scoring == ScoringConfig.for_budget("smoke").to_dict()
    with pytest.raises(TypeError, match="ScoringConfig"):
        get_attack("leak-equality")(verbose=False)(None, scoring={"bootstrap": 10})


def test_scoring_on_the_command_line(capsys):
    assert main(["attack", "leak-distance-mantel", "--scoring", "mantel_permutations=0"]) == 2
    err = capsys.readouterr().err
    assert "--scoring mantel_permutations=0: parameter mantel_permutations must be >= 1" in err
    assert err.count("\n") == 1
    assert main(["attack", "leak-distance-mantel", "--scoring", "n_perm=5"]) == 2
    assert "unknown parameter 'n_perm'" in capsys.readouterr().err


# --- metric directions are declared by the scorers ----------------------------------------------
def test_declared_directions_are_the_ones_the_report_used_to_list():
    from analysis.report import THRESHOLDS
    from attacks.metrics import declared_metrics, metric_spec

    declared = declared_metrics()
    LOWER_IS_ATTACK = {n for n, s in declared.items() if not s.higher_is_attack}  # noqa: N806 (the old names)
    PERFECT = {n: s.perfect for n, s in declared.items() if s.perfect is not None}  # noqa: N806
    assert LOWER_IS_ATTACK == {"functional_error", "functional_error_link", "weight_error", "embedding_error"}
    assert PERFECT == {**dict.fromkeys(LOWER_IS_ATTACK, 0.0), **dict.fromkeys(
        ("ssim_mean", "inversion_ssim", "reid_accuracy", "accuracy", "auc", "hungarian_accuracy", "spearman",
         "resend_auc", "link_accuracy", "recognizable_rate", "nmi"), 1.0)}
    for t in THRESHOLDS:  # the verdict table agrees with the scorers
        assert metric_spec(t.metric).higher_is_attack == t.higher_is_attack, t.metric


def test_the_report_reads_directions_from_the_result():
    from analysis.report import _significant, advantage, higher_is_attack

    r = {"metrics": {"gap": 0.2}, "chance": {"gap": 1.0}, "ci": {"gap": [0.1, 0.3]}, "primary": "gap"}
    assert higher_is_attack(r, "gap") and advantage(r) is None and _significant(r, "gap", None, 0.05) is False
    r["metric_specs"] = {"gap": {"higher_is_attack": False, "perfect": 0.0}}
    assert not higher_is_attack(r, "gap") and advantage(r) == pytest.approx(0.8)
    assert _significant(r, "gap", None, 0.05) is True


# --- one applicability rule -------------------------------------------------------------------
class _NeedsCloudOutputs(Attack):
    name, family = "test-needs-outputs", "leakage"

    def threat_model(self) -> ThreatModel:
        return ThreatModel(cloud_outputs=True)

    def run(self, view, *, rng, generator):
        return LabelPredictions(view.labelled_labels, view.labelled_indices)


def test_applicable_is_the_rule_call_obeys():
    from attacks.victim import Victim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = Victim.build(dataset="digits", preset="linear", seed=0, n_private=30, n_public=8, n_heldout=8)
    ok, why = _NeedsCloudOutputs(verbose=False).applicable(v)
    assert not ok and "cloud outputs" in why
    with pytest.raises(RequirementError, match="cloud outputs"):
        _NeedsCloudOutputs(seed=0, verbose=False)(v)
    kp = get_attack("key-known-plaintext")
    assert kp(verbose=False).applicable(v) == (True, None)
    ok, why = kp(n_pairs=31, verbose=False).applicable(v)
    assert not ok and "needs 31 known pairs" in why and kp(n_pairs=31, verbose=False).too_small(v) == why


# --- the command line -------------------------------------------------------------------------
@pytest.mark.parametrize("args,match", [
    (["--param", "k=0"], "--param k=0: parameter k must be >= 1, got 0"),
    (["--param", "k=two"], "--param k=two: k must be int"),
    (["--param", "kk=2"], "unknown parameter 'kk'; accepted: k, n_labelled, source"),
    (["--param", "source"], "expected key=value"),
])
def test_bad_params_on_the_command_line_are_one_line_exit_2(capsys, args, match):
    assert main(["attack", "leak-label-probe", *args]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err


def _budget_lines(block: str) -> dict[str, str]:
    """``budget -> its line`` of one attack's block of ``owsd attack --list`` (wrapped lines joined)."""
    rows: dict[str, str] = {}
    last = None
    for line in block.splitlines()[1:]:
        if line.startswith(" " * 12) and last:
            rows[last] += " " + line.strip()
        elif line.startswith("    "):  # the header's threat model, wrapped
            continue
        else:
            last = line.split()[0]
            rows[last] = line.strip()
    return rows


def test_list_shows_the_budgets_table(capsys):
    from attacks.cli import _text

    assert main(["attack", "--list"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    *attack_blocks, scoring = out.strip().split("\n\n")[1:]
    blocks = {b.split(" ", 1)[0]: b for b in attack_blocks}
    assert sorted(blocks) == sorted(available_attacks())
    for name, block in blocks.items():
        cls = get_attack(name)
        assert block.startswith(f"{name} ({cls.family}): knows the architecture")
        rows = _budget_lines(block)
        assert list(rows) == list(budgets.BUDGETS), name
        before: dict = {}
        for b, line in rows.items():
            sizes = cls(budget=b, verbose=False).victim_sizes()
            assert f" victim {sizes['n_private']}/{sizes['n_public']}/{sizes['n_heldout']} " in line, (name, b)
            params = cls.budget_row(b).params
            shown = {k: v for k, v in params.items() if before.get(k, object()) != v}
            words = [w for w in line.split("; variants:")[0].split() if "=" in w]
            assert words == [f"{k}={_text(v)}" for k, v in shown.items()], (name, b)  # the changed ones, in order
            before = params
    probe = _budget_lines(blocks["leak-label-probe"])
    assert probe["smoke"].endswith("k=32; variants: source=outputs") and "variants" not in probe["full"]
    assert "n_labelled=100 k=64" in probe["standard"] and "source=" not in probe["standard"]
    assert "pool_sizes=16,64 " in _budget_lines(blocks["structure-ciphertext-only"])["smoke"]
    assert scoring.startswith("scoring (not attack parameters")
    rows = _budget_lines(scoring)
    assert list(rows) == ["every", *budgets.BUDGETS] and "bootstrap=1000" in rows["every"].split()
    for b in budgets.BUDGETS:
        assert rows[b].split()[1:] == [f"{k}={v}" for k, v in budgets.SCORING[b].items()]


def test_help_params_lists_every_field_with_the_budgets_value(capsys):
    assert main(["attack", "leak-clustering", "--help-params", "--budget", "standard"]) == 0
    out = capsys.readouterr().out
    for f in ("source", "n_clusters", "k", "n_init"):
        assert f"\n  {f}  " in out
    assert "n_perm" not in out  # a scoring setting: the runner's (ScoringConfig), see --list
    assert "standard: 10\n" in out and "audit variant at standard: {'source': 'scrambled'}" in out
