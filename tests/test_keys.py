"""Keys: secret by default, seeded with a warning, stored without pickle, verified on load."""

from __future__ import annotations

import json
import logging
import os
import stat
import warnings

import pytest
import torch

from owsd.keys import Key, KeyFileError, KeySpecMismatchError, SeededKeyWarning, generate_key
from owsd.presets import PRESETS, get_preset
from owsd.spec import LayerSpec, ScramblerSpec, SpecError


def seeded(preset="linear", seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeededKeyWarning)
        return generate_key(get_preset(preset), seed=seed)


def test_default_keys_are_random_and_distinct():
    a, b = generate_key(get_preset("linear")), generate_key(get_preset("linear"))
    assert a.secret != b.secret and a.fingerprint != b.fingerprint
    assert not a.seeded


def test_seeded_key_warns_and_is_deterministic():
    with pytest.warns(SeededKeyWarning, match="NOT secret"):
        a = generate_key(get_preset("default"), seed=7)
    b = seeded("default", 7)
    assert a.secret == b.secret
    for wa, wb in zip(a.weights(), b.weights()):
        torch.testing.assert_close(wa, wb, rtol=0, atol=0)
    assert seeded("default", 8).fingerprint != a.fingerprint


def test_weights_use_the_whole_secret():
    k = seeded()
    flipped = Key(spec=k.spec, secret=k.secret[:-1] + bytes([k.secret[-1] ^ 1]))
    assert not torch.equal(k.weights()[0], flipped.weights()[0])


def test_weight_statistics_match_the_variance_preserving_scale():
    k = seeded("default")
    for w, lay, cin in zip(k.weights(), k.spec.layers, k.spec.channels()):
        fan = cin * max(1.0, (lay.kernel_size / lay.stride) ** 2)
        assert abs(float(w.std()) * fan ** 0.5 - k.spec.weight_scale) < 0.1


def test_roundtrip_file(tmp_path):
    k = seeded("default", 3)
    p = k.save(tmp_path / "k.json")
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    k2 = Key.load(p, expected_spec=get_preset("default"))
    assert k2.secret == k.secret and k2.spec == k.spec and k2.seeded
    doc = json.loads(p.read_text())
    assert doc["format"] == "owsd-key" and doc["fingerprint"] == k.fingerprint


def test_repr_and_logs_never_show_the_secret(tmp_path, caplog):
    k = generate_key(get_preset("linear"))
    with caplog.at_level(logging.DEBUG):
        k.save(tmp_path / "k.json")
    assert k.secret.hex() not in repr(k) and k.secret.hex() not in str(k)
    assert k.secret.hex() not in caplog.text and k.fingerprint in caplog.text


@pytest.mark.parametrize("mutate, match", [
    (lambda d: "{not json", "not valid JSON"),
    (lambda d: json.dumps({**d, "format": "x"}), "not an owsd key file"),
    (lambda d: json.dumps({**d, "secret": d["secret"][:-2]}), "64 hex digits"),
    (lambda d: json.dumps({**d, "secret": "f" * 64}), "fingerprint does not match"),
    (lambda d: json.dumps({k: v for k, v in d.items() if k != "spec"}), "lacks the 'spec'"),
    (lambda d: json.dumps({**d, "spec": {**d["spec"], "gain": -1}}), "invalid spec"),
    (lambda d: json.dumps({**d, "version": 9}), "version"),
])
def test_corrupt_key_files_fail_clearly(tmp_path, mutate, match):
    k = seeded()
    doc = json.loads(k.to_json())
    p = tmp_path / "bad.json"
    p.write_text(mutate(doc))
    with pytest.raises(KeyFileError, match=match):
        Key.load(p)


def test_truncated_key_file(tmp_path):
    p = seeded().save(tmp_path / "k.json")
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(KeyFileError, match="corrupt key file"):
        Key.load(p)


def test_spec_mismatch(tmp_path):
    p = seeded("linear").save(tmp_path / "k.json")
    with pytest.raises(KeySpecMismatchError, match="differs from the expected spec"):
        Key.load(p, expected_spec=get_preset("default"))


def test_presets_are_valid_and_roundtrip(tmp_path):
    for name in PRESETS:
        spec = get_preset(name)
        assert spec.output_shape() == (3, 224, 224)
        spec.save(tmp_path / f"{name}.json")
        assert ScramblerSpec.load(tmp_path / f"{name}.json") == spec
    assert get_preset("linear").is_linear() and not get_preset("small-signal").is_linear()


@pytest.mark.parametrize("bad, match", [
    (dict(embedding_dim=10), "holds 64 values"),
    (dict(layers=()), "at least one layer"),
    (dict(layers=(LayerSpec(4, 3),)), "3 channels"),
    (dict(layers=(LayerSpec(3, 3, stride=2, output_padding=2),)), "output_padding"),
    (dict(layers=(LayerSpec(3, 3, activation="gelu"),)), "activation"),
    (dict(normalization="softmax"), "normalization"),
    (dict(gain=float("nan")), "gain"),
])
def test_malformed_specs(bad, match):
    base = dict(embedding_dim=64, input_shape=(64, 1, 1), layers=(LayerSpec(3, 4),))
    with pytest.raises(SpecError, match=match):
        ScramblerSpec(**{**base, **bad})


def test_spec_json_rejects_unknown_fields():
    d = get_preset("linear").to_dict()
    with pytest.raises(SpecError, match="unknown spec field"):
        ScramblerSpec.from_dict({**d, "extra": 1})
    with pytest.raises(SpecError, match="not valid JSON"):
        ScramblerSpec.from_json("{")


@pytest.mark.parametrize("carrier", ["key", "texture"])
def test_carriers_are_key_derived_deterministic_images(carrier):
    import dataclasses

    spec = dataclasses.replace(get_preset("deep-linear"), carrier=carrier)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeededKeyWarning)
        a, a2, b = generate_key(spec, seed=1), generate_key(spec, seed=1), generate_key(spec, seed=2)
    ca = a.carrier()
    assert ca.shape == (3, 224, 224) and ca.dtype == torch.float32
    assert float(ca.min()) >= 0.0 and float(ca.max()) <= 1.0
    torch.testing.assert_close(ca, a2.carrier(), rtol=0, atol=0)
    assert float((ca - b.carrier()).abs().mean()) > 0.01  # another key, another carrier


def test_texture_carrier_has_the_spectrum_of_natural_images():
    """1/f amplitude: the power in an octave band is about the same in every band."""
    import dataclasses

    spec = dataclasses.replace(get_preset("deep-linear"), carrier="texture")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeededKeyWarning)
        c = generate_key(spec, seed=3).carrier(dtype=torch.float64)
    from owsd.keys import TEXTURE_STD

    assert abs(float(c.std()) - TEXTURE_STD) < 0.01 and abs(float(c.mean()) - 0.5) < 0.05
    power = torch.fft.rfft2(c - c.mean()).abs().pow(2).sum(0)
    fy = torch.fft.fftfreq(224).abs()[:, None]
    fx = torch.fft.rfftfreq(224)[None, :]
    f = torch.sqrt(fy ** 2 + fx ** 2)
    bands = [float(power[(f >= lo) & (f < 2 * lo)].sum()) for lo in (1 / 64, 1 / 32, 1 / 16, 1 / 8)]
    assert max(bands) / min(bands) < 1.6, bands  # white noise would grow 4x per octave


def test_carrier_needs_standardize():
    import dataclasses

    with pytest.raises(SpecError, match="carrier='texture' needs normalization='standardize'"):
        dataclasses.replace(get_preset("default"), carrier="texture", normalization="sigmoid")
