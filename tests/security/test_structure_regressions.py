"""Attack strength as a regression (issue 13): the structure attacks must keep breaking ``default``.

Without pairs, chosen queries or the encoder, a passive observer of the MNIST traffic of a
``default`` key re-identifies each image among 1,024 candidates and reconstructs it at the
encoder's own bound; a fresh key per image keeps it at chance.  The fast test (small MNIST:
2,000 images observed, 10,000 public) runs in the normal suite; the standard-budget checks
over five keys are ``slow`` (``--runslow``; about two minutes per key on one core).
Every test reads MNIST through the ``shared_data`` fixture (skipped without ../shared/data).
"""

from __future__ import annotations

import warnings

import pytest

from analysis.security import assert_leaks, assert_resists
from attacks.controls import fresh_key_victim
from attacks.structure import StructureCiphertextOnly, StructureCloudOutputs
from attacks.victim import Victim

pytestmark = [pytest.mark.security, pytest.mark.filterwarnings("ignore::UserWarning")]

SMALL = {"n_traffic": 2000, "n_aux": 10000, "n_basis": 384, "pool_sizes": (16, 64, 256, 1024),
         "n_targets": 500, "n_reconstruct": 300, "restarts": 4, "n_ref": 4000}
KEY_SEEDS = (0, 1, 2, 3, 4)


def _victim(data_dir, *, key_seed: int, sizes: dict, cloud=None, n_fit: int = 10000) -> Victim:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Victim.build(dataset="mnist", data_dir=data_dir, preset="default", seed=key_seed, cloud=cloud,
                            n_fit=n_fit, **sizes)


def _assert_broken(r, *, min_reid: float = 0.95) -> None:
    assert_leaks(r, "reid_accuracy", band=(min_reid, 1.0), broken=True)
    assert max(int(k.split("@")[1]) for k in r.metrics if k.startswith("reid_accuracy@")) >= 1024
    assert_leaks(r, "ssim_mean", broken=True)
    assert r.metrics["ssim_bound"] - r.metrics["ssim_mean"] <= 0.05, (r.metrics["ssim_mean"], r.metrics["ssim_bound"])
    assert_resists(r, "decoy_accuracy")  # an original that was sent, but not this target's: at chance
    assert r.threat_model["known_pairs"] == 0 and r.threat_model["chosen_queries"] == 0
    assert not r.threat_model["knows_encoder"] and r.cost["queries"] == 0


def test_default_falls_to_a_passive_observer_small_mnist(shared_data):
    v = _victim(shared_data, key_seed=0, sizes={"n_private": 2000, "n_public": 10000, "n_heldout": 1023},
                n_fit=6000)
    r = StructureCiphertextOnly(seed=0, verbose=False, **SMALL)(v)
    _assert_broken(r)
    s = r.curves["structure"][0]  # the geometry it exploits: a sphere around the carrier, 64-dim hull
    assert s["mode"] == "sphere" and s["radius_rel_std"] < 1e-3 and s["true_linear_dim"] == 64
    assert r.metrics["intrinsic_dim"] == 64 and r.p_values["intrinsic_dim"] <= 0.01


@pytest.mark.slow
@pytest.mark.parametrize("key_seed", KEY_SEEDS)
def test_default_standard_budget_breaks_every_key(shared_data, key_seed):
    attack = StructureCiphertextOnly(budget="standard", seed=key_seed, verbose=False)
    r = attack(_victim(shared_data, key_seed=key_seed, sizes=attack.victim_sizes()))
    _assert_broken(r)


@pytest.mark.slow
def test_default_standard_budget_from_cloud_outputs(shared_data):
    attack = StructureCloudOutputs(budget="standard", seed=0, verbose=False)
    r = attack(_victim(shared_data, key_seed=0, sizes=attack.victim_sizes(), cloud="tiny"))
    _assert_broken(r)


@pytest.mark.slow
def test_fresh_key_per_image_standard_budget_stays_at_chance(shared_data):
    attack = StructureCiphertextOnly(budget="standard", seed=0, verbose=False, traffic_curve=())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = fresh_key_victim(preset="default", dataset="mnist", data_dir=shared_data, **attack.victim_sizes())
    r = attack(v)
    assert_resists(r, "reid_accuracy")
    assert_resists(r, "decoy_accuracy")
    assert r.metrics["intrinsic_dim"] == r.chance["intrinsic_dim"]
