"""The internal model's embedding decoder and the cloud-output features it reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from owsd.cloud import truncate_topk
from owsd.decoder import EmbeddingDecoder
from owsd.internal import InternalModel, centered_logits, output_features


def linear_cloud(n: int, *, dim: int = 6, outputs: int = 200, noise: float = 0.05, seed: int = 0,
                 weakest_gain: float = 1.0):
    """Embeddings, labels and softmax outputs of logits linear in the embedding (plus noise).

    Embedding dimension ``i`` reaches the logits with gain ``geomspace(1, weakest_gain)[i]``
    (the real cloud passes some directions far more faintly than others); the four labels
    depend on the first three dimensions, or on the two weakest when ``weakest_gain < 1``.
    """
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n, dim)).astype(np.float32)
    if weakest_gain < 1:
        y = (e[:, -1] > 0).astype(int) + 2 * (e[:, -2] > 0)
    else:
        y = (e[:, 0] + 0.5 * e[:, 1] > 0).astype(int) + 2 * (e[:, 2] > 0)
    gains = np.geomspace(1.0, weakest_gain, dim)
    z = (e * gains) @ rng.normal(size=(dim, outputs)) + noise * rng.normal(size=(n, outputs))
    p = np.exp(z - z.max(1, keepdims=True))
    return e, y, (p / p.sum(1, keepdims=True)).astype(np.float32)


def ridge_reference(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Slow, obvious ridge on standardized features: solve (X'X + alpha n I) W = X'(y - mean)."""
    xs = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
    w = np.linalg.solve(xs.T @ xs + alpha * len(x) * np.eye(x.shape[1]), xs.T @ (y - y.mean(0)))
    return xs @ w + y.mean(0)


def test_decoder_matches_a_plain_ridge_solve():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(120, 15)), rng.normal(size=(120, 3))
    dec = EmbeddingDecoder(alphas=(0.1,)).fit(x, y)
    torch.testing.assert_close(torch.from_numpy(dec.transform(x).astype(np.float64)),
                               torch.from_numpy(ridge_reference(x, y, 0.1)), rtol=1e-5, atol=1e-5)


def test_decoder_out_of_fold_matches_refits_on_the_other_folds():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(60, 8)), rng.normal(size=(60, 2))
    dec = EmbeddingDecoder(alphas=(0.01,), folds=3, seed=5)
    oof = dec.fit_transform(x, y)
    fold = np.random.default_rng(5).permutation(60) % 3
    xs = (x - x.mean(0)) / x.std(0)  # the decoder standardizes with the statistics of all rows
    for k in range(3):
        tr = fold != k
        a = xs[tr]
        w = np.linalg.solve(a.T @ a + 0.01 * tr.sum() * np.eye(8), a.T @ (y[tr] - y.mean(0)))
        np.testing.assert_allclose(oof[~tr], xs[~tr] @ w + y.mean(0), rtol=1e-4, atol=1e-5)


def test_decoder_recovers_a_linear_map_and_picks_a_weak_penalty():
    e, _, p = linear_cloud(800)
    dec = EmbeddingDecoder()
    dec.fit(centered_logits(p[:600]), e[:600])
    assert dec.r2(centered_logits(p[600:]), e[600:]).min() > 0.98
    assert dec.alpha <= 1e-2 and dec.cv_r2 > 0.98


def test_decoder_negative_control_features_without_the_embedding():
    """Features independent of the embedding: the held-out R^2 stays at (or below) zero."""
    rng = np.random.default_rng(3)
    e, f = rng.normal(size=(600, 4)), rng.normal(size=(600, 100))
    dec = EmbeddingDecoder()
    dec.fit(f[:400], e[:400])
    assert dec.r2(f[400:], e[400:]).max() < 0.05
    assert dec.cv_r2 < 0.05 and dec.alpha >= 0.1  # cross-validation shrinks hard


def test_out_of_fold_decodings_are_as_noisy_as_new_data():
    """With more features than examples the in-sample fit is near exact; the out-of-fold one is not."""
    e, _, p = linear_cloud(300, outputs=400, noise=5.0)
    f = centered_logits(p)
    tr, new = slice(0, 150), slice(150, None)
    dec = EmbeddingDecoder()
    oof = dec.fit_transform(f[tr], e[tr])
    r2 = lambda d, t: 1 - ((d - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum()
    in_sample, out_of_fold, fresh = r2(dec.transform(f[tr]), e[tr]), r2(oof, e[tr]), r2(dec.transform(f[new]), e[new])
    assert in_sample > out_of_fold + 0.05  # measured 0.9995 vs 0.880
    assert abs(out_of_fold - fresh) < 0.05  # measured 0.880 vs 0.884


@pytest.mark.parametrize("bad, match", [
    (dict(x=np.zeros((20, 3)), y=np.zeros((19, 2))), "20 feature rows but 19 embeddings"),
    (dict(x=np.full((20, 3), np.nan), y=np.zeros((20, 2))), "NaN"),
    (dict(x=np.zeros((6, 3)), y=np.zeros((6, 2))), "at least 10 training examples"),
])
def test_decoder_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        EmbeddingDecoder().fit(bad["x"], bad["y"])


def test_decoder_rejects_bad_settings_and_use_before_fit():
    with pytest.raises(ValueError, match="folds"):
        EmbeddingDecoder(folds=1)
    with pytest.raises(TypeError, match="folds must be an integer"):
        EmbeddingDecoder(folds=2.5)
    for bad in ((0.0,), (float("nan"),), ()):
        with pytest.raises(ValueError, match="alphas"):
            EmbeddingDecoder(alphas=bad)
    assert EmbeddingDecoder(alphas=np.array([0.1, 1.0])).alphas == (0.1, 1.0)
    with pytest.raises(RuntimeError, match="fit first"):
        EmbeddingDecoder().transform(np.zeros((2, 3)))
    dec = EmbeddingDecoder().fit(np.random.default_rng(0).normal(size=(20, 3)), np.zeros((20, 2)))
    with pytest.raises(ValueError, match="expected 3 columns"):
        dec.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="embeddings have shape"):
        dec.r2(np.zeros((1, 3)), np.zeros((5, 2)))
    assert np.isnan(dec.r2(np.ones((4, 3)), np.zeros((4, 2)))).all()  # constant targets: undefined
    assert np.isnan(dec.cv_r2)


# --- features of truncated outputs ---------------------------------------------------------------
def never_returned_class_case(k: int = 10):
    """Training replies (top-k) and test replies that return a class no training reply returned."""
    _, _, p = linear_cloud(600, outputs=1000)
    q_train = truncate_topk(p[:400], k)
    c = int(np.flatnonzero((q_train > 0).sum(0) == 0)[0])  # never in a training top-k
    p_test = p[400:].astype(np.float64).copy()
    p_test[:, c] = np.sort(p_test, 1)[:, -1] * 1.5  # now the top class of every test reply
    p_test /= p_test.sum(1, keepdims=True)
    return q_train, truncate_topk(p_test.astype(np.float32), k), c


def test_truncated_outputs_have_no_outlier_features():
    """Regression: floored zeros gave a never-returned class a constant training feature, and a
    test reply that returned it a huge standardized value (the old code: 3.0e5 here)."""
    q_train, q_test, c = never_returned_class_case()
    f_train, f_test = output_features(q_train), output_features(q_test)
    mean, std = f_train.mean(0), np.maximum(f_train.std(0), 1e-6)  # as Classifier standardizes
    z = (f_test - mean) / std
    assert np.abs(z[:, c]).max() < 1e3, np.abs(z[:, c]).max()
    kept = q_test > 0
    np.testing.assert_allclose(np.exp(f_test)[kept], q_test[kept], rtol=1e-5)
    # an imputed value never exceeds the smallest returned probability of its row
    smallest = np.where(kept, q_test, np.inf).min(1)
    assert (np.exp(f_test).max(1, where=~kept, initial=0) <= smallest * (1 + 1e-5)).all()


def test_replies_missing_only_tiny_probabilities_are_not_floored():
    """Top-999 of 1,000 with every probability above 1e-10: the left-over mass is below float32
    resolution (often <= 0 after rounding); the old code put those classes at the 1e-12 floor."""
    z = np.random.default_rng(0).uniform(-10, 5, size=(300, 1000))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert p.min() > 1e-10
    q = truncate_topk(p.astype(np.float32), 999)
    assert (1 - q.astype(np.float64).sum(1) <= 0).any()  # the case that used to be floored
    f = output_features(q)
    assert f.min() > np.log(1e-10)


def test_output_features_full_vectors_are_plain_logs_and_reject_non_probabilities():
    _, _, p = linear_cloud(5)
    np.testing.assert_allclose(output_features(p), np.log(p), rtol=1e-5)
    with pytest.raises(ValueError, match="non-negative"):
        output_features(-p)
    with pytest.raises(ValueError, match="summing to at most 1"):
        output_features(np.array([[0.7, 0.35, 0.0, 0.0]]))


def test_centered_logits_are_the_logits_up_to_a_constant():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 30))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(centered_logits(p), z - z.mean(1, keepdims=True), atol=1e-5)


# --- the internal model with the decoder ---------------------------------------------------------
def test_internal_model_decoder_needs_training_embeddings_only():
    e, y, p = linear_cloud(300)
    with pytest.raises(ValueError, match="pass the training embeddings"):
        InternalModel(kind="logreg", epochs=5, verbose=False).fit(p, y)
    with pytest.raises(RuntimeError, match="fit first"):
        InternalModel(verbose=False).features(p)
    with pytest.raises(ValueError, match="decoder must be one of"):
        InternalModel(decoder="pca")
    m = InternalModel(kind="logreg", epochs=40, lr=1e-2, verbose=False).fit(p, y, e)
    assert m.predict(p).shape == (300,)  # no embedding at prediction time


def test_decoder_beats_reading_the_outputs_directly_with_few_examples():
    """Positive control of the design: 1,000 outputs, 200 training images, an MLP each.

    The labels hang on the embedding directions the cloud passes most faintly (gain 0.05):
    the decoder restores them to unit scale, the MLP on standardized log-probabilities does
    not find them (measured 0.895 vs 0.579).
    """
    e, y, p = linear_cloud(1200, dim=8, outputs=1000, noise=0.05, seed=4, weakest_gain=0.05)
    tr, te = slice(0, 200), slice(200, None)
    kw = dict(epochs=30, verbose=False)
    dec = InternalModel(**kw).fit(p[tr], y[tr], e[tr]).score(p[te], y[te])
    direct = InternalModel(decoder="none", **kw).fit(p[tr], y[tr], e[tr]).score(p[te], y[te])
    assert dec > direct + 0.15, (dec, direct)
    assert dec > 0.7  # four classes: chance 0.25


def test_top10_internal_model_survives_a_never_returned_class():
    """Every test reply returns a class no training reply did.  Measured: 0.825 (decoder) and
    0.815 (none); with the old floored features 0.715 and 0.295 (nearly one class)."""
    q_train, q_test, _ = never_returned_class_case()
    e, y, _ = linear_cloud(600, outputs=1000)
    for decoder in ("embedding", "none"):
        m = InternalModel(decoder=decoder, epochs=20, verbose=False).fit(q_train, y[:400], e[:400])
        assert m.score(q_test, y[400:]) > 0.75, decoder  # four classes: chance 0.25
