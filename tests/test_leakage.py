"""Leakage tests (attacks.leakage): positive controls flagged, negative controls at chance.

"Flagged" = p < 0.05 or the CI lies above chance; "at chance" = p >= 0.05 and the CI reaches
the chance level (the tests are one-sided: leakage is doing better than chance).  Victims are
small digits sets (8x8 upscaled to 224x224) with the tiny cloud;
BLAS/torch are held to one thread (many times faster on the shared cores).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from attacks.base import LabelPredictions
from attacks.controls import fresh_key_victim, identity_victim, noise_victim, permutation_victim
from attacks.leakage import (SUITE, ci_excludes_chance, format_table, leakage_table, run_all_leakage_tests, save_roc,
                             with_null_internal_model)
from attacks.leakage.distance import DistanceMantel, NearDuplicate
from attacks.leakage.distinguish import KeyDistinguish, NoiseDistinguish
from attacks.leakage.equality import Equality
from attacks.leakage.groundtruth import augment, internal_model_for, member_split
from attacks.leakage.label import Clustering, LabelMLP, LabelProbe
from attacks.leakage.membership import MembershipLoss, MembershipShadow
from attacks.leakage.mutual_info import MutualInfo
from attacks.leakage.outputs import Linker
from attacks.leakage.stats import (KnnMutualInfo, auc_test, hungarian_accuracy, knn_mi_known_case, mantel_test,
                                   tpr_at_fpr_ci)
from attacks.registry import available_attacks
from attacks.scoring import ScoringConfig
from attacks.victim import Victim

SIZES = {"dataset": "digits", "n_private": 100, "n_public": 8, "n_heldout": 60}
NAMES = ["leak-label-probe", "leak-label-mlp", "leak-clustering", "leak-distance-mantel", "leak-near-duplicate",
         "leak-equality", "leak-key-distinguish", "leak-noise-distinguish", "leak-membership-loss",
         "leak-membership-shadow", "leak-mutual-info"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


SMOKE = ScoringConfig.for_budget("smoke")


def _perm(**kw) -> ScoringConfig:
    """The smoke budget's scoring settings with fewer permutations (the runner's choice)."""
    return ScoringConfig.for_budget("smoke", **kw)


def _quiet(fn, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(**kw)


@pytest.fixture(scope="module")
def identity():
    return _quiet(identity_victim, cloud="tiny", **SIZES)


@pytest.fixture(scope="module")
def permutation():
    return _quiet(permutation_victim, cloud="tiny", **SIZES)


@pytest.fixture(scope="module")
def noise():
    return _quiet(noise_victim, cloud="tiny", **SIZES)


@pytest.fixture(scope="module")
def linear():
    return _quiet(Victim.build, preset="linear", seed=0, **SIZES)


def flagged(r, metric=None) -> bool:
    m = metric or r.primary
    return r.p_values.get(m, 1.0) < 0.05 or ci_excludes_chance(r, m)


def at_chance(r, metric=None) -> bool:
    """No evidence above chance: p >= 0.05 and the CI reaches down to the chance level.

    (One-sided: the label probes' chance level is the majority-class rate, an upper bound on
    an uninformed guess, so a useless probe may land below it.)
    """
    m = metric or r.primary
    ok_p = r.p_values.get(m, 1.0) >= 0.05
    ok_ci = m not in r.ci or r.ci[m][0] <= r.chance[m]
    return ok_p and ok_ci


# --- contract ---------------------------------------------------------------------------------
def test_all_leakage_attacks_registered_with_threat_models():
    reg = available_attacks()
    for name in NAMES:
        assert name in reg, name
        a = reg[name](budget="smoke", seed=0, verbose=False)
        assert a.family == "leakage"
        assert isinstance(a.threat_model().describe(), str)
        assert not a.threat_model().knows_key
    assert {n for n, _ in SUITE} == set(NAMES)


@pytest.mark.parametrize("cls,kw,err", [
    (LabelProbe, {"source": "pixels"}, ValueError),
    (LabelProbe, {"n_labelled": 1}, ValueError),
    (LabelProbe, {"k": 0}, ValueError),
    (LabelProbe, {"bogus": 1}, TypeError),
    (LabelProbe, {"k": 2.5}, TypeError),
    (Clustering, {"n_clusters": 1}, ValueError),
    (MembershipShadow, {"n_shadow": 1}, ValueError),
    (Equality, {"n_resend": 0}, ValueError),
])
def test_bad_parameters_are_rejected(cls, kw, err):
    with pytest.raises(err):
        cls(budget="smoke", seed=0, verbose=False, **kw)


def test_outputs_source_requires_a_cloud(linear):
    from attacks.base import RequirementError

    assert LabelProbe(source="outputs", verbose=False).requirements.cloud
    assert not LabelProbe(source="scrambled", verbose=False).requirements.cloud
    assert not Clustering(source="scrambled", verbose=False).requirements.cloud
    with pytest.raises(RequirementError):
        LabelProbe(source="outputs", seed=0, verbose=False)(linear)


# --- statistics -------------------------------------------------------------------------------
def test_stats_helpers_on_known_cases():
    rng = np.random.default_rng(0)
    assert hungarian_accuracy(np.array([2, 2, 0, 0, 1]), np.array([0, 0, 1, 1, 2])) == 1.0
    x = rng.normal(size=(40, 3))
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    same = mantel_test(d, d, n_perm=199, n_boot=50, rng=rng)
    assert same["r"] == pytest.approx(1.0) and same["p_value"] == pytest.approx(1 / 200)
    y = rng.normal(size=(40, 3))
    other = mantel_test(d, np.sqrt(((y[:, None] - y[None]) ** 2).sum(-1)), n_perm=199, n_boot=50, rng=rng)
    assert other["p_value"] > 0.05 and other["ci"][0] < 0 < other["ci"][1]
    lab = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    sep = auc_test(np.r_[np.ones(50), np.zeros(50)], lab)
    assert sep["auc"] == 1.0 and sep["p_value"] < 1e-10
    flat = auc_test(np.zeros(100), lab)
    assert flat["auc"] == 0.5 and flat["p_value"] == 1.0
    t = tpr_at_fpr_ci(np.r_[np.arange(50) + 100.0, np.arange(50)], lab, 0.0, n_boot=20)
    assert t["tpr"] == 1.0 and t["realized_fpr"] == 0.0 and np.isfinite(t["threshold"])
    k = knn_mi_known_case(200, repeats=2)
    assert abs(k["independent_bias"]) < 0.1 and abs(k["correlated_bias"]) < 0.15


def test_augment_is_small_and_seeded():
    x = np.random.default_rng(0).integers(0, 256, (6, 1, 8, 8), dtype=np.uint8)
    a1, kinds = augment(x, np.random.default_rng(1))
    a2, _ = augment(x, np.random.default_rng(1))
    assert np.array_equal(a1, a2) and set(kinds) == {"noise", "brightness", "shift"}
    assert not np.array_equal(a1, x)


# --- 1. label leakage -------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [LabelProbe, LabelMLP])
def test_label_probes_controls(cls, identity, permutation, noise):
    for v in (identity, permutation):
        r = cls(budget="smoke", seed=0, verbose=False, n_labelled=50)(v)
        assert flagged(r), r.metrics
    r = cls(budget="smoke", seed=0, verbose=False, n_labelled=50)(noise)
    assert at_chance(r), (r.metrics, r.ci, r.p_values)


def test_label_probe_on_outputs_and_a_useless_predictor_is_not_flagged(identity):
    r = LabelProbe(budget="smoke", seed=0, verbose=False, source="outputs", n_labelled=50)(identity)
    assert flagged(r)
    # the scorer is not fooled by a constant guess (the test can fail)
    from attacks.base import scorer_for

    view = identity.view(LabelProbe(verbose=False).threat_model(), rng=np.random.default_rng(0))
    out = LabelPredictions(np.full(len(identity.private), 3), np.arange(len(identity.private)))
    s = scorer_for(out)(out, identity, view, SMOKE)
    assert s.p_values["accuracy"] > 0.05


def test_clustering_controls(identity, noise):
    r = Clustering(budget="smoke", seed=0, verbose=False)(identity, scoring=_perm(cluster_permutations=99))
    assert flagged(r) and flagged(r, "nmi")
    assert r.chance["hungarian_accuracy"] > 0.1
    r = Clustering(budget="smoke", seed=0, verbose=False)(noise, scoring=_perm(cluster_permutations=99))
    assert at_chance(r) and at_chance(r, "nmi"), (r.metrics, r.ci, r.chance, r.p_values)


# --- 2. distances and linkability ---------------------------------------------------------------
def test_mantel_controls(identity, permutation, noise):
    for v in (identity, permutation):
        r = DistanceMantel(budget="smoke", seed=0, verbose=False)(v, scoring=_perm(mantel_permutations=199))
        assert flagged(r) and r.metrics["spearman"] > 0.8
    r = DistanceMantel(budget="smoke", seed=0, verbose=False)(noise, scoring=_perm(mantel_permutations=199))
    assert at_chance(r), (r.metrics, r.ci, r.p_values)


def test_near_duplicate_controls(permutation, noise):
    r = NearDuplicate(budget="smoke", seed=0, verbose=False, n_resend=30, n_new=30)(permutation)
    assert flagged(r) and flagged(r, "resend_auc")
    assert r.per_sample["kind"].tolist().count("new") == 30
    r = NearDuplicate(budget="smoke", seed=0, verbose=False, n_resend=30, n_new=30)(noise)
    assert at_chance(r) and at_chance(r, "resend_auc"), (r.metrics, r.ci, r.p_values)


# --- 3. equality --------------------------------------------------------------------------------
def test_equality_controls(identity, noise):
    r = Equality(budget="smoke", seed=0, verbose=False, n_resend=20, n_new=20)(identity)
    assert flagged(r) and r.metrics["exact_match_rate"] == 1.0 and r.metrics["link_accuracy"] == 1.0
    r = Equality(budget="smoke", seed=0, verbose=False, n_resend=20, n_new=20)(noise)
    assert at_chance(r) and r.metrics["exact_match_rate"] == 0.0


def test_equality_fresh_key_is_not_deterministic():
    v = _quiet(fresh_key_victim, preset="linear", dataset="digits", n_private=30, n_public=8, n_heldout=20)
    r = Equality(budget="smoke", seed=0, verbose=False, n_resend=15, n_new=15)(v)
    assert r.metrics["exact_match_rate"] == 0.0 and at_chance(r, "link_accuracy")


def test_a_random_linker_is_not_flagged(identity):
    from attacks.base import scorer_for

    rng = np.random.default_rng(0)
    out = Linker(link=lambda s, o: (rng.integers(0, len(identity.private), len(s)), rng.random(len(s))),
                 resend="exact", n_resend=20, n_new=20)
    view = identity.view(Equality(verbose=False).threat_model(), rng=np.random.default_rng(0))
    s = scorer_for(out)(out, identity, view, SMOKE)
    assert s.p_values["resend_auc"] > 0.05 and s.p_values["link_accuracy"] > 0.05


# --- 4. distinguishing --------------------------------------------------------------------------
def test_key_distinguish_controls(permutation, linear, identity, noise):
    for v in (permutation, linear):
        r = KeyDistinguish(budget="smoke", seed=0, verbose=False, n_challenge=60)(v)
        assert flagged(r), r.metrics
    for v in (identity, noise):  # the identity has no key; noise has no signature
        r = KeyDistinguish(budget="smoke", seed=0, verbose=False, n_challenge=60)(v)
        assert at_chance(r), (r.metrics, r.ci)


def test_noise_distinguish_controls(identity, noise):
    r = NoiseDistinguish(budget="smoke", seed=0, verbose=False, n_challenge=60)(identity)
    assert flagged(r) and r.metrics["auc"] > 0.95
    r = NoiseDistinguish(budget="smoke", seed=0, verbose=False, n_challenge=60)(noise)
    assert at_chance(r), (r.metrics, r.ci)


# --- 5. membership ------------------------------------------------------------------------------
def test_membership_split_and_internal_model(identity):
    m = member_split(100)
    assert m.sum() == 50 and np.array_equal(m, member_split(100))
    model, member, evaluable = internal_model_for(identity)
    assert internal_model_for(identity)[0] is model
    assert (~evaluable).sum() == 5 and member[~evaluable].all()


def test_victim_internal_model_decodes_the_embedding_where_there_is_one(identity):
    """OWSD victims train the scheme's default internal model (decoder), in both modes."""
    owsd = _quiet(Victim.build, preset="linear", seed=0, cloud="tiny", **SIZES)
    model, member, _ = internal_model_for(owsd)
    held, _, _ = internal_model_for(with_null_internal_model(owsd))
    assert model.decoder == "embedding" and held.decoder == "embedding" and held is not model
    out = owsd.private_outputs()
    assert model.predict(out).shape == held.predict(out).shape == (len(out),)  # outputs alone
    assert internal_model_for(identity)[0].decoder == "none"  # no embedding: log-probabilities


def test_membership_loss_controls_and_roc(identity, tmp_path):
    r = MembershipLoss(budget="smoke", seed=0, verbose=False)(identity)
    assert flagged(r)
    for f in (0.01, 0.001, 0.0):
        m = f"tpr_at_fpr_{f:g}"
        assert r.chance[m] == f and m in r.ci
    at = r.curves["tpr_at_fpr"]
    assert all(a["realized_fpr"] <= a["target_fpr"] + 1e-12 and "threshold" in a for a in at)
    json.dumps(r.to_dict())
    path = save_roc(r, tmp_path / "roc.png")
    assert path.stat().st_size > 1000
    null = MembershipLoss(budget="smoke", seed=0, verbose=False)(with_null_internal_model(identity))
    assert null.curves["internal_training"] == "heldout"
    assert at_chance(null), (null.metrics, null.ci)


def test_membership_shadow_controls(identity):
    r = MembershipShadow(budget="smoke", seed=0, verbose=False, n_shadow=2)(identity)
    assert flagged(r) and r.curves["n_shadow"] == 2
    assert r.threat_model["queried_model"] == "internal" and r.threat_model["model_queries"] == 200
    assert r.cost["scorer_seconds"] >= 0 and r.cost["total_seconds"] >= r.cost["seconds"]
    null = MembershipShadow(budget="smoke", seed=0, verbose=False, n_shadow=2)(with_null_internal_model(identity))
    assert at_chance(null), (null.metrics, null.ci)


# --- 6. mutual information ----------------------------------------------------------------------
@pytest.mark.parametrize("n", [100, 600])
def test_fast_knn_mi_equals_scikit_learn(n):
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    rng = np.random.default_rng(n)
    f = rng.normal(size=(n, 5)) * rng.uniform(0.01, 100, 5)
    f[:, 4] = np.round(f[:, 0], 1)  # ties, broken by the estimator's noise
    e = f[:, :3] * 0.3 + rng.normal(size=(n, 3))
    y = rng.integers(0, 4, n)
    est = KnnMutualInfo(f, n_neighbors=3, random_state=0)
    kw = {"n_neighbors": 3, "random_state": 0}
    for i in range(3):
        assert np.array_equal(est.regression(e[:, i]), mutual_info_regression(f, e[:, i], **kw))
    assert np.array_equal(est.classif(y), mutual_info_classif(f, y, **kw))
    assert est.regression(e[:, 0])[0] > 0.05 and est.classif(y).max() < 0.15  # signal vs independent labels


def test_mutual_info_controls(permutation, noise):
    few = _perm(mi_permutations=39, mi_coords=2)
    r = MutualInfo(budget="smoke", seed=0, verbose=False, k=4)(permutation, scoring=few)
    assert flagged(r) and flagged(r, "mi_embedding")
    known = r.curves["estimator_known_case"]
    assert known["n"] == 100 and "correlated_bias" in known
    r = MutualInfo(budget="smoke", seed=0, verbose=False, k=4)(noise, scoring=few)
    assert at_chance(r) and at_chance(r, "mi_embedding"), (r.metrics, r.chance, r.p_values)


# --- the suite ---------------------------------------------------------------------------------
def test_suite_table_with_fdr_on_noise(noise, tmp_path):
    res = run_all_leakage_tests(noise, budget="smoke", seed=1, only=("leak-label-probe", "leak-distance-mantel",
                                                                     "leak-equality", "leak-noise-distinguish"))
    assert [r.attack for r in res] == ["leak-label-probe", "leak-label-probe", "leak-distance-mantel",
                                       "leak-distance-mantel", "leak-equality", "leak-noise-distinguish"]
    rows = leakage_table(res)
    assert not any(row["flagged"] for row in rows), format_table(rows)
    assert all(row["p_bh"] >= row["p"] for row in rows)
    assert "p (BH)" in format_table(rows)
    res[0].save(tmp_path / "r")
    assert (tmp_path / "r" / "per_sample.csv").is_file()


def test_suite_skips_output_tests_without_a_cloud(linear):
    res = run_all_leakage_tests(linear, budget="smoke", seed=0, only=("leak-label-probe", "leak-equality"),
                                threads=1)
    assert [(r.attack, r.params["source"]) for r in res] == [("leak-label-probe", "scrambled"),
                                                             ("leak-equality", "scrambled")]
    assert all(flagged(r) for r in res)


def test_default_preset_equality_and_distance():
    """The default spec (whatever it is now): a deterministic scheme is linkable (equality)."""
    v = _quiet(Victim.build, dataset="digits", preset="default", seed=0, n_private=60, n_public=8, n_heldout=30)
    r = Equality(budget="smoke", seed=0, verbose=False, n_resend=15, n_new=15)(v)
    assert flagged(r) and r.target["spec"]["name"] == "default"
    r = DistanceMantel(budget="smoke", seed=0, verbose=False, n_pairs_items=40)(v,
                                                                              scoring=_perm(mantel_permutations=99))
    assert "spearman_embedding" in r.metrics and np.isfinite(r.metrics["spearman"])


@pytest.mark.slow
def test_default_preset_suite_on_mnist(shared_data):
    v = _quiet(Victim.build, dataset="mnist", data_dir=shared_data, preset="default", seed=0, cloud="tiny",
               n_private=200, n_public=16, n_heldout=100)
    rows = leakage_table(run_all_leakage_tests(v, budget="smoke", seed=0, threads=1))
    assert len(rows) == len(SUITE) and all(r["p_bh"] is not None for r in rows)
