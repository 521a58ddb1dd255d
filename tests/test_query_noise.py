"""Fresh noise per query and a quantized channel: spec fields, the scrambler, the equality attack.

``query_noise`` and ``quantize_levels`` are the two design directions of the frontier study
(issue 18) that make a kernel randomized or coarse; here they are checked against the spec's
JSON and fingerprints, the scrambler's output, and the attack built to see through them.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch

from analysis.audit import AuditConfig, AuditTarget, runner
from analysis.audit.plan import Job
from attacks.leakage.equality import Equality
from owsd.keys import generate_key
from owsd.presets import get_preset
from owsd.query_noise import SeededNoiseWarning, is_seeded, next_noise_seed, seed_query_noise, seeded_query_noise
from owsd.scrambler import Scrambler
from owsd.spec import ScramblerSpec, SpecError


def _key(spec: ScramblerSpec, seed: int = 0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return generate_key(spec, seed=seed)


@pytest.fixture(autouse=True)
def _secure_noise_after():
    yield
    seed_query_noise(None)


# --- the spec ----------------------------------------------------------------------------------
def test_deterministic_specs_keep_their_json_and_fingerprints():
    spec = get_preset("default")
    assert "query_noise" not in spec.to_json() and "quantize_levels" not in spec.to_json()
    noisy = dataclasses.replace(spec, query_noise=0.5, quantize_levels=256)
    d = json.loads(noisy.to_json())
    assert d["query_noise"] == 0.5 and d["quantize_levels"] == 256
    assert ScramblerSpec.from_json(noisy.to_json()) == noisy
    assert _key(spec).fingerprint != _key(noisy).fingerprint  # another scheme, another cache entry


@pytest.mark.parametrize("field,value", [("query_noise", -0.1), ("query_noise", float("nan")),
                                         ("query_noise", True), ("query_noise", 1e4),
                                         ("quantize_levels", 1), ("quantize_levels", 2.5),
                                         ("quantize_levels", 70000)])
def test_bad_values_are_refused_by_name(field, value):
    with pytest.raises(SpecError, match=field):
        dataclasses.replace(get_preset("default"), **{field: value})


# --- the scrambler -----------------------------------------------------------------------------
def test_the_same_embedding_scrambles_differently_each_query():
    spec = dataclasses.replace(get_preset("default"), query_noise=0.5)
    s = Scrambler(_key(spec))
    e = torch.randn(4, spec.embedding_dim, generator=torch.Generator().manual_seed(0))
    a, b = s(e), s(e)
    assert (a - b).abs().max() > 0
    exact = Scrambler(_key(spec), query_noise=False)
    assert torch.equal(exact(e), exact(e))
    # the noise is the spec's size: 0.5 of a unit-variance coordinate moves the image less than a new embedding does
    other = torch.randn(4, spec.embedding_dim, generator=torch.Generator().manual_seed(1))
    assert (a - b).norm() < (exact(e) - exact(other)).norm()


def test_the_noise_is_secure_unless_seeded_and_then_reproducible():
    assert not is_seeded()
    assert next_noise_seed() != next_noise_seed()
    spec = dataclasses.replace(get_preset("default"), query_noise=1.0)
    s = Scrambler(_key(spec))
    e = torch.zeros(2, spec.embedding_dim)
    with pytest.warns(SeededNoiseWarning):
        seed_query_noise(3)
    a = s(e)
    with pytest.warns(SeededNoiseWarning):
        seed_query_noise(3)
    assert torch.equal(a, s(e)) and not torch.equal(a, s(e))  # a rerun repeats it; a resend gets fresh noise
    seed_query_noise(None)
    with seeded_query_noise(3):  # quiet, and the previous (secure) state is back after the block
        b = s(e)
        s(torch.ones(1, spec.embedding_dim))  # another batch first does not move the noise of this one
    assert not is_seeded()
    with seeded_query_noise(3):
        s(torch.ones(1, spec.embedding_dim))
        assert torch.equal(b, s(e))


@pytest.mark.parametrize("levels", [256, 16, 2])
def test_quantized_channel_sends_that_many_grey_levels_and_stays_differentiable(levels):
    spec = dataclasses.replace(get_preset("default"), quantize_levels=levels)
    s = Scrambler(_key(spec))
    e = torch.randn(3, spec.embedding_dim, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = s(e)
    steps = (y.detach().double() * (levels - 1))
    assert torch.allclose(steps, steps.round(), atol=1e-4)
    assert len(torch.unique(y.detach())) <= levels
    y.sum().backward()  # straight-through: attacks can still differentiate through the key's map
    assert e.grad is not None and e.grad.abs().sum() > 0
    exact = Scrambler(_key(dataclasses.replace(spec, quantize_levels=0)))
    assert (y.detach() - exact(e.detach())).abs().max() <= 0.5 / (levels - 1) + 1e-6


# --- the equality attack: a positive and a negative control on noisy kernels -------------------
def _equality_on_noisy_kernel(sigma: float):
    """leak-equality against ``linear`` with query noise ``sigma`` (the noise seeded: a fixed draw)."""
    spec = dataclasses.replace(get_preset("linear"), query_noise=sigma)
    with warnings.catch_warnings(), seeded_query_noise(11):
        warnings.simplefilter("ignore")
        v = AuditTarget.from_spec(spec, seed=0).build_victim(dataset="digits", n_private=100, n_public=8,
                                                             n_heldout=60)
        return Equality(budget="smoke", seed=0, verbose=False, n_resend=40, n_new=40)(v)


def test_equality_still_links_resends_under_small_query_noise():
    r = _equality_on_noisy_kernel(0.25)
    assert r.metrics["exact_match_rate"] == 0.0  # the noise is fresh: no byte-identical resend
    assert r.metrics["resend_auc"] > 0.9 and r.p_values["resend_auc"] < 1e-3, (r.metrics, r.p_values)


def test_equality_is_at_chance_when_the_noise_drowns_the_image():
    r = _equality_on_noisy_kernel(100.0)
    assert r.metrics["exact_match_rate"] == 0.0
    assert r.p_values["resend_auc"] >= 0.05 and r.ci["resend_auc"][0] <= 0.5, (r.metrics, r.ci, r.p_values)


def test_a_key_estimate_is_scored_against_the_keys_exact_map_not_the_clients_noise():
    from attacks.key_estimation.scoring import victim_truth

    spec = dataclasses.replace(get_preset("linear"), query_noise=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = AuditTarget.from_spec(spec, seed=0).build_victim(dataset="digits", n_private=40, n_public=8,
                                                             n_heldout=30)
    truth = victim_truth(v)
    exact = Scrambler(v.channel.key, query_noise=False).scramble(truth["embeddings"], verbose=False)
    assert np.array_equal(truth["float"], exact)  # a perfect key estimate scores a perfect 0


# --- the audit: a kernel with query noise gives the same figures twice -------------------------
def test_audit_jobs_of_a_noisy_kernel_are_reproducible(tmp_path):
    spec = dataclasses.replace(get_preset("linear"), query_noise=1.5)  # linking neither sure nor hopeless
    target = AuditTarget.from_spec(spec, seed=0)
    cfg = AuditConfig(dataset="digits", budget="smoke", cloud="tiny", out=str(tmp_path), verbose=False)
    job = Job(id="leak-equality", attack="leak-equality", params={"n_resend": 20, "n_new": 20}, role="main")
    metrics = []
    for i in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            victim = runner.build_victim(target, cfg, {"n_private": 200, "n_public": 16, "n_heldout": 100}, [job])
        seed_query_noise(None)  # the audit seeds each piece itself, whatever came before
        next_noise_seed()
        st = runner.run_job(job, victim, cfg, tmp_path / f"run{i}")
        assert st["status"] == "ok", st
        metrics.append(json.loads((tmp_path / f"run{i}" / "result.json").read_text())["metrics"])
    assert metrics[0] == metrics[1]
    assert 0.55 < metrics[0]["resend_auc"] < 0.99, metrics[0]  # a figure the noise's draw moves


def test_the_key_holders_bound_falls_with_the_noise():
    """benchmarks/noise_reid_bound.py: what an attacker who reads back ``e + n`` exactly can still do."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "noise_reid_bound.py"
    spec = importlib.util.spec_from_file_location("noise_reid_bound", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.noise_bounds("digits", None, sigmas=(0.0, 1.0, 50.0), dim=32, n_targets=80, pool=16, n_train=400,
                         n_test=150)
    assert r["0.0"]["reid_accuracy"] == 1.0 and r["0.0"]["link_auc"] == 1.0  # positive control: no noise, no hiding
    assert r["50.0"]["reid_p"] > 1e-3 and abs(r["50.0"]["link_auc"] - 0.5) < 0.15  # negative control: drowned
    accs = [r[s]["embedding_accuracy"] for s in ("0.0", "1.0", "50.0")]
    assert accs[0] > accs[1] > accs[2] - 0.05 and accs[0] > 0.85  # utility falls with the same noise
