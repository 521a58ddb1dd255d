"""The victim's cached ground truth: cut down (``restrict``), cloud outputs paid once (``precompute_outputs``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from attacks.victim import Victim


@pytest.fixture()
def victim():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Victim.build(dataset="digits", preset="linear", seed=0, cloud="tiny", n_private=24, n_public=16,
                            n_heldout=12)


def _forbid_recomputation(v: Victim, monkeypatch) -> None:
    def boom(*a, **k):
        raise AssertionError("cached ground truth was recomputed")
    monkeypatch.setattr(v.channel, "scramble_images", boom)
    monkeypatch.setattr(v.channel, "embed", boom)
    monkeypatch.setattr(v.cloud, "predict", boom)


def test_restrict_slices_the_cached_ground_truth(victim, monkeypatch):
    scr, emb = victim.private_scrambled(), victim.private_embeddings()
    outs = victim.precompute_outputs(16)
    assert outs.shape[0] == 16
    _forbid_recomputation(victim, monkeypatch)
    sub = victim.restrict(n_private=10, n_public=4)
    assert (len(sub.private), len(sub.public), len(sub.heldout)) == (10, 4, 12)
    assert sub.channel is victim.channel and sub.cloud is victim.cloud
    np.testing.assert_array_equal(sub.private.images, victim.private.images[:10])
    np.testing.assert_array_equal(sub.private_scrambled(), scr[:10])
    np.testing.assert_array_equal(sub.private_embeddings(), emb[:10])
    np.testing.assert_array_equal(sub.private_outputs(), outs[:10])  # from the precomputed prefix
    assert victim.restrict(n_private=99) is victim and victim.restrict() is victim
    with pytest.raises(AssertionError, match="recomputed"):  # 20 > the 16 precomputed: the cloud is asked
        victim.restrict(n_private=20).private_outputs()


def test_outputs_precomputed_for_every_image_are_the_victims_outputs(victim, monkeypatch):
    outs = victim.precompute_outputs()
    _forbid_recomputation(victim, monkeypatch)
    np.testing.assert_array_equal(victim.private_outputs(), outs)
    with pytest.raises(ValueError, match="at least one image"):
        victim.precompute_outputs(0)


def test_precompute_outputs_needs_a_cloud():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = Victim.build(dataset="digits", preset="linear", seed=0, n_private=8, n_public=8, n_heldout=8)
    with pytest.raises(ValueError, match="no cloud"):
        v.precompute_outputs(4)


def test_memo_computes_once(victim):
    calls = []
    for _ in range(3):
        got = victim.memo(("truth", 1), lambda: calls.append(1) or len(calls))
    assert got == 1 and calls == [1]
