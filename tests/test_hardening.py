"""Issue 15's silent-loss and size-limit cases, one by one, at the library level."""

from __future__ import annotations

import gzip
import io
import json
import struct
import time
import warnings

import numpy as np
import pytest
import torch

from owsd.data import DataFormatError, read_idx
from owsd.encoder import Encoder, PCAEncoder
from owsd.internal import InternalModel
from owsd.keys import Key, KeyFileError, SeededKeyWarning, generate_key
from owsd.npyfile import ArrayFileError, read_array, read_npy_bytes, read_npz
from owsd.pipeline import RunConfig, check_config
from owsd.presets import get_preset
from owsd.scrambler import LossyOutputWarning, Scrambler
from owsd.spec import LIMITS, LayerSpec, ScramblerSpec, SpecError
from owsd.validation import DtypeError, as_image_batch, as_matrix


def _key(preset: str) -> Key:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeededKeyWarning)
        return generate_key(get_preset(preset), seed=0)


# --- no silent loss ------------------------------------------------------------------------
def test_scramble_defaults_to_float32_and_warns_before_erasing_a_faint_signal():
    emb = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
    s = Scrambler(_key("default"))
    assert s.scramble(emb, verbose=False).dtype == np.float32
    assert 0.45 < s.signal_grey_levels(emb) < 0.55  # gain 0.002 = 0.51 grey levels
    with pytest.warns(LossyOutputWarning, match="0.51 grey levels"):
        u = s.scramble(emb, verbose=False, out_dtype=torch.uint8)
    assert u.dtype == np.uint8
    with warnings.catch_warnings():
        warnings.simplefilter("error", LossyOutputWarning)  # a strong signal: 8 bits are fine, no warning
        Scrambler(_key("linear")).scramble(emb, verbose=False, out_dtype=torch.uint8)


def test_empty_input_gives_empty_output_and_batch_size_is_checked():
    s = Scrambler(_key("linear"))
    assert s.scramble(np.zeros((0, 64), np.float32), verbose=False).shape == (0, 3, 224, 224)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            s.scramble(np.zeros((1, 64), np.float32), batch_size=bad, verbose=False)


@pytest.mark.parametrize("bad, match", [
    (np.ones((2, 64), np.complex64), "complex"),
    (np.full((2, 64), 2 ** 62, np.int64), r"exceed \+-2\^24"),
    (np.full((2, 64), 1e300), "exceed float32's range"),
    (np.ones((2, 64), bool), "numeric"),
    (np.array([["a"] * 64]), "numeric"),
])
def test_embeddings_that_would_lose_information_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        as_matrix(bad, name="e")


def test_images_of_refused_dtypes():
    with pytest.raises(DtypeError, match="complex"):
        as_image_batch(np.ones((1, 4, 4), np.complex64))
    with pytest.raises(TypeError, match="uint8 or floating"):  # DtypeError is a TypeError too
        as_image_batch(np.ones((1, 4, 4), np.int64))


@pytest.mark.parametrize("field, value", [("epochs", 0), ("epochs", -1), ("batch_size", 0), ("n_train", 0),
                                          ("output_sizes", (10, 0)), ("output_sizes", ())])
def test_run_config_counts_are_checked(field, value):
    with pytest.raises(ValueError):
        check_config(RunConfig(**{field: value}))


def test_decoder_shared_between_the_two_internal_models_gives_identical_results():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(200, 3)).astype(np.float32)
    y = (e[:, 0] > 0).astype(int)
    probs = np.exp(e @ rng.normal(size=(3, 30)))
    probs /= probs.sum(1, keepdims=True)
    kw = dict(kind="logreg", epochs=20, lr=1e-2, verbose=False)
    first = InternalModel(**kw).fit(probs, y, e)
    fresh = InternalModel(use_embedding=True, **kw).fit(probs, y, e)
    shared = InternalModel(use_embedding=True, **kw).fit(probs, y, e, decoder_from=first)
    assert shared.embedding_decoder is first.embedding_decoder
    np.testing.assert_array_equal(shared.predict(probs, e), fresh.predict(probs, e))


# --- size limits before allocation ----------------------------------------------------------
def test_spec_limits_refuse_huge_layers_before_any_weight_is_drawn():
    t0 = time.perf_counter()
    with pytest.raises(SpecError, match="out_channels 100000 exceeds the limit"):
        ScramblerSpec(embedding_dim=64, input_shape=(64, 1, 1), layers=(LayerSpec(100000, 4), LayerSpec(3, 4)))
    with pytest.raises(SpecError, match="secret weights exceed the limit"):
        ScramblerSpec(embedding_dim=4096, input_shape=(4096, 1, 1),
                      layers=(LayerSpec(4096, 128, stride=1), LayerSpec(3, 1)))
    with pytest.raises(SpecError, match="exceeds the limits"):
        ScramblerSpec(embedding_dim=1, input_shape=(1, 1, 1), layers=(LayerSpec(3, 1024, stride=1024),) * 3)
    assert time.perf_counter() - t0 < 2.0
    assert LIMITS["layers"] >= 6 and all(get_preset(p).num_parameters() < LIMITS["parameters"]
                                         for p in ("default", "linear"))


def _npy_header(header: str) -> bytes:
    h = header.encode() + b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h


def test_npy_reader_never_trusts_the_header():
    with pytest.raises(ArrayFileError, match="not a valid literal"):
        read_npy_bytes(_npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, (3), }"))
    with pytest.raises(ArrayFileError, match="above the"):
        read_npy_bytes(_npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000, 64), }"))
    with pytest.raises(ArrayFileError, match="complex arrays"):
        read_npy_bytes(_npy_header("{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }") + b"\0" * 16)
    with pytest.raises(ArrayFileError, match="structured"):
        read_npy_bytes(_npy_header("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }"))
    with pytest.raises(ArrayFileError, match="trailing bytes"):
        read_npy_bytes(_npy_header("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }") + b"abc")


@pytest.mark.parametrize("arr", [np.zeros((0, 64), np.float32), np.array(2.5), np.arange(12.0).reshape(3, 4).T,
                                 np.arange(6, dtype=">i4").reshape(2, 3), np.array([True, False])])
def test_npy_reader_round_trips_what_numpy_writes(arr, tmp_path):
    np.save(tmp_path / "a.npy", arr)
    back = read_array(tmp_path / "a.npy")
    assert back.dtype == arr.dtype and back.shape == arr.shape and np.array_equal(back, arr)


def test_npz_total_size_is_bounded(tmp_path, monkeypatch):
    np.savez(tmp_path / "z.npz", a=np.zeros(1000), b=np.zeros(1000))
    monkeypatch.setenv("OWSD_MAX_ARRAY_BYTES", "12000")
    with pytest.raises(ArrayFileError, match="above the"):
        read_npz(tmp_path / "z.npz")  # 8,000 + 8,000 bytes > 12,000


def test_idx_with_huge_dimensions_says_so(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(struct.pack(">HBB3I", 0, 8, 3, 2 ** 31, 2 ** 31, 2 ** 31) + b"\0" * 10)
    with pytest.raises(DataFormatError, match="header claims dimensions .* above the"):
        read_idx(p)


def test_gzip_bomb_is_cut_off(tmp_path, monkeypatch):
    p = tmp_path / "bomb-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(struct.pack(">HBBI", 0, 8, 1, 50_000_000) + b"\0" * 50_000_000))
    monkeypatch.setenv("OWSD_MAX_ARRAY_BYTES", str(1 << 20))
    with pytest.raises(DataFormatError, match="expands beyond"):
        read_idx(p)


def test_encoder_file_checked_before_use(tmp_path):
    x = np.random.default_rng(0).random((50, 10)).astype(np.float32)
    PCAEncoder(3).fit(x).save(tmp_path / "e.npz")
    z = dict(np.load(tmp_path / "e.npz"))
    z["components"] = z["components"][:, :5]
    np.savez(tmp_path / "bad.npz", **z)
    with pytest.raises(ValueError, match="'components' has shape"):
        Encoder.load(tmp_path / "bad.npz")
    head = json.loads(bytes(z["header"]).decode())
    z["header"] = np.frombuffer(json.dumps({**head, "kind": "autoencoder", "hidden": [10 ** 9]}).encode(), np.uint8)
    np.savez(tmp_path / "huge.npz", **z)
    with pytest.raises(ValueError, match="'hidden' must be a list"):
        Encoder.load(tmp_path / "huge.npz")


# --- key files ------------------------------------------------------------------------------
def test_every_key_field_is_covered(tmp_path):
    key = _key("linear")
    doc = json.loads(key.to_json())
    assert doc["version"] == 2 and len(doc["mac"]) == 64
    for field, value in (("seeded", False), ("format", "owsd-key"), ("extra", 1)):
        p = tmp_path / f"{field}.key"
        p.write_text(json.dumps({**doc, field: value}))
        if field == "format":
            assert Key.load(p).seeded  # unchanged field: still verifies
            continue
        with pytest.raises(KeyFileError, match="MAC does not match|unknown key file field"):
            Key.load(p)


def test_no_traceback_in_one_line_warnings_either(capsys):
    from owsd.errors import one_line_warnings

    one_line_warnings("owsd x")("line one\nline two", UserWarning, "f.py", 3)
    assert capsys.readouterr().err == "owsd x: warning: line one; line two\n"


def test_efficientnet_chatter_stays_off_stdout(capfd):
    from owsd.cloud import efficientnet_lite0_module

    efficientnet_lite0_module()
    assert capfd.readouterr().out == ""


# --- the fuzzers' findings, pinned ------------------------------------------------------------
def test_zip_with_shifted_offsets_is_an_array_file_error(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(3))
    (tmp_path / "z.npz").write_bytes(buf.getvalue()[1:])  # zipfile itself raises OSError [Errno 22] here
    with pytest.raises(ArrayFileError, match="not a readable .npz"):
        read_npz(tmp_path / "z.npz")


def test_non_ascii_fingerprint_is_a_key_file_error(tmp_path):
    doc = json.loads(_key("linear").to_json())
    (tmp_path / "k.key").write_text(json.dumps({**doc, "fingerprint": "é\ud800"}))
    with pytest.raises(KeyFileError, match="fingerprint does not match"):
        Key.load(tmp_path / "k.key")


@pytest.mark.parametrize("field", ["target", "summary"])
def test_null_report_sections_are_report_format_errors(field, tmp_path):
    from analysis.compare import compare
    from analysis.reportcheck import ReportFormatError

    (tmp_path / "report.json").write_text(json.dumps({"format": "owsd-audit-report", field: None}))
    with pytest.raises(ReportFormatError, match=f"{field} must be an object"):
        compare([tmp_path])
