"""Pinned security figures: the default kernel's, and the known-weak kernels' failures.

Bands were checked on attack/key seeds 0, 1 and 2 at the smoke budget on digits (docs/audit.md
lists the values). Figures that swing across seeds at this budget (the default kernel's
ciphertext-only re-identification: 0 to 0.28 of 32) are not pinned. A band pins a metric; ``assert_leaks`` also checks it
against chance and the declared thresholds (analysis.report.THRESHOLDS); ``assert_inapplicable``
pins an attack that scores below chance (it does not apply: no evidence of resistance).
"""

from __future__ import annotations

import pytest

from analysis.security import assert_inapplicable, assert_leaks, run_attack

pytestmark = pytest.mark.security


# --- the weak control: every key attack must break it ------------------------------------------
def test_linear_key_recovered_from_known_plaintext(linear_victim, need):
    need("key-known-plaintext")
    r = run_attack("key-known-plaintext", linear_victim, seed=0)
    assert_leaks(r, "functional_error", band=(0.0, 0.1), broken=True)


def test_linear_reidentified_ciphertext_only(linear_victim, need):
    need("key-ciphertext-only")
    r = run_attack("key-ciphertext-only", linear_victim, seed=0)
    assert_leaks(r, "reid_accuracy", band=(0.1, 1.0))  # far above chance (1/32) on every seed tried


# --- the default kernel: what it resists ------------------------------------------------------
@pytest.fixture(scope="module")
def grey_sigmoid_victim():
    """The previous default kernel (``grey-sigmoid``: leaky-ReLU stack, sigmoid; key from seed 0) on digits."""
    import warnings

    from analysis.audit import AuditTarget
    from tests.security.conftest import SIZES

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AuditTarget.from_preset("grey-sigmoid", seed=0).build_victim(dataset="digits", **SIZES)


def test_grey_sigmoid_key_estimation_from_known_plaintext_does_not_apply_at_smoke(grey_sigmoid_victim, need):
    need("key-known-plaintext")
    r = run_attack("key-known-plaintext", grey_sigmoid_victim, seed=0)
    # grey-sigmoid, the previous default (pins moved here when the default changed on 2026-11-24).
    # smoke budget: 24 pairs (< 64 embedding dims), 4 Adam steps after the least-squares warm start
    # of the last layer; 1.55, 1.64, 1.69 on key/attack seeds 0, 1, 2 (a random key scores ~4):
    # worse than the constant predictor (1.0), so the attack does not apply at this budget; this
    # is no evidence that grey-sigmoid resists (the structure attacks break it: docs/ciphertext-only.md)
    assert_inapplicable(r, "functional_error", band=(1.2, 3.0))


def test_grey_sigmoid_key_estimation_from_chosen_plaintext_does_not_apply_at_smoke(grey_sigmoid_victim, need):
    need("key-chosen-plaintext")
    r = run_attack("key-chosen-plaintext", grey_sigmoid_victim, seed=0)
    # smoke budget: 64 queries, 4 Adam steps; 1.53, 1.63, 1.63 on key/attack seeds 0, 1, 2: worse
    # than the constant predictor, so inconclusive, never "resists"
    assert_inapplicable(r, "functional_error", band=(1.2, 3.0))


def test_default_known_plaintext_key_below_identification(default_victim, need):
    need("key-known-plaintext")
    r = run_attack("key-known-plaintext", default_victim, seed=0)
    # the default (linear, standardized, texture carrier): the exact standardized estimator needs
    # 67 pairs; the smoke budget's 24 do not identify the per-image scales, yet the estimate beats
    # the constant predictor: 0.71, 0.76, 0.76 on key/attack seeds 0, 1, 2 (p < 1e-4), not broken
    assert_leaks(r, "functional_error", band=(0.5, 0.9))


def test_default_chosen_plaintext_key_nearly_recovered(default_victim, need):
    need("key-chosen-plaintext")
    r = run_attack("key-chosen-plaintext", default_victim, seed=0)
    # smoke budget: 64 queries (a zero query, which returns the carrier, and 63 Hadamard rows):
    # two queries short of identification, yet the map is nearly recovered: 0.0115, 0.0108, 0.0113
    # on key/attack seeds 0, 1, 2 (66 queries identify it exactly, see docs/key-estimation.md)
    assert_leaks(r, "functional_error", band=(0.0, 0.05), broken=True)


def test_default_surrogate_transfer_inversion_does_not_apply(default_victim, need):
    # inversion under the attacker's own random keys scores below the mean-image chance level on
    # `default` (0.477 against 0.585 at the smoke budget on digits): it does not apply, which is no
    # evidence of resistance; the structure attacks invert `default` without pairs
    # (tests/security/test_structure_regressions.py)
    need("inversion-surrogate-transfer")
    r = run_attack("inversion-surrogate-transfer", default_victim, seed=0)
    assert_inapplicable(r, "ssim_mean", band=(0.3, 0.7))


# --- the default kernel: what it is known to leak (pinned so a change shows) --------------------
def test_default_inverted_from_known_pairs_on_digits(default_victim, need):
    """300 known (image, scrambled) pairs train a decoder that inverts the default kernel on 8x8 digits."""
    need("inversion-paired")
    r = run_attack("inversion-paired", default_victim, seed=0)
    assert_leaks(r, "ssim_mean", band=(0.85, 1.0), broken=True)


def test_default_is_deterministic_resends_are_linked(default_victim, need):
    need("leak-equality")
    r = run_attack("leak-equality", default_victim, seed=0)
    assert_leaks(r, "resend_auc", band=(0.99, 1.0), broken=True)


# --- positive controls over five keys, at the CLI's standard budget (MNIST; slow) ----------------
@pytest.mark.slow
@pytest.mark.parametrize("key_seed", (0, 1, 2, 3, 4))
def test_linear_inverted_from_paired_standard_budget_on_every_key(shared_data, key_seed):
    """`owsd attack inversion-paired --preset linear --seed S --budget standard` (2,000 pairs):
    SSIM 0.928-0.931 on key seeds 0-4 (2026-11-28, docs/results/inversion-paired-linear/; issue 13 had
    measured 0.712 on seed 3 with an earlier build). About 2.5 minutes a key on one core."""
    import warnings

    from attacks.registry import get_attack
    from attacks.victim import Victim

    attack = get_attack("inversion-paired")(budget="standard", seed=key_seed, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = Victim.build(dataset="mnist", data_dir=shared_data, preset="linear", seed=key_seed,
                         **attack.victim_sizes())
    assert_leaks(attack(v), "ssim_mean", band=(0.9, 1.0), broken=True)
