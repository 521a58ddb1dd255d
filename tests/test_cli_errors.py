"""The CLI error policy on a battery of bad inputs: exit code 2, one clear line, never a traceback.

Most of the battery runs in-process through ``owsd.cli.main(argv)`` (fast); a handful of cases
run as true subprocesses (what a user sees, logging and interpreter included), and Ctrl-C is
sent to a real ``owsd run``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from owsd.cli import main
from owsd.keys import Key, SeededKeyWarning, _mac, generate_key
from owsd.presets import get_preset
from owsd.spec import LayerSpec, ScramblerSpec

REPO = Path(__file__).resolve().parents[1]


def _npy_with_header(header: str, body: bytes = b"") -> bytes:
    h = header.encode("latin1")
    h += b" " * (63 - (10 + len(h)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h + body


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeededKeyWarning)
        key = generate_key(get_preset("default"), seed=0)
        lin = generate_key(get_preset("linear"), seed=0)
    key.save(d / "k.key")
    lin.save(d / "lin.key")
    doc = json.loads(key.to_json())
    (d / "flipped.key").write_text(json.dumps({**doc, "seeded": False}))
    (d / "tampered.key").write_text(json.dumps({**doc, "secret": "0" * 64}))
    (d / "corrupt.key").write_text('{"format": "owsd-key", ')
    (d / "deep.key").write_text("[" * 100_000 + "]" * 100_000)
    (d / "huge.key").write_text(" " * (2 << 20) + "{}")
    big = ScramblerSpec(embedding_dim=64, input_shape=(64, 1, 1), layers=(LayerSpec(3, 4),))
    bigdoc = {**doc, "spec": {**big.to_dict(), "layers": [{"out_channels": 4096, "kernel_size": 1024}] * 40}}
    bigdoc["mac"] = _mac(bigdoc, bytes.fromhex(doc["secret"]))  # re-signed: the spec limits must catch it
    (d / "bigspec.key").write_text(json.dumps(bigdoc))
    (d / "bigspec.json").write_text(json.dumps(bigdoc["spec"]))
    (d / "bad.json").write_text("{")
    (d / "dir").mkdir()
    (d / "file").write_text("x")
    rng = np.random.default_rng(0)
    np.save(d / "emb.npy", rng.normal(size=(4, 64)).astype(np.float32))
    np.save(d / "empty.npy", np.zeros((0, 64), np.float32))
    np.save(d / "complex.npy", (rng.normal(size=(4, 64)) + 1j).astype(np.complex64))
    np.save(d / "object.npy", np.array([[None] * 64] * 2, dtype=object), allow_pickle=True)
    np.save(d / "bigint.npy", np.full((2, 64), 2 ** 62, np.int64))
    np.save(d / "cols.npy", np.zeros((2, 10), np.float32))
    np.save(d / "nan.npy", np.full((2, 64), np.nan, np.float32))
    np.save(d / "imgs.npy", rng.integers(0, 256, (2, 8, 8), dtype=np.uint8))
    (d / "paren.npy").write_bytes(_npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 64), "))
    (d / "rows.npy").write_bytes(_npy_with_header("{'descr': '<f8', 'fortran_order': False, "
                                                  "'shape': (100000000000, 64), }"))
    (d / "trunc.npy").write_bytes((d / "emb.npy").read_bytes()[:-7])
    (d / "enc.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (d / "audit-bad").mkdir()
    (d / "audit-bad" / "report.json").write_text("{not json")
    (d / "audit-null").mkdir()
    (d / "audit-null" / "report.json").write_text(json.dumps({"format": "owsd-audit-report", "summary": None}))
    if hasattr(os, "mkfifo"):
        os.mkfifo(d / "fifo.key")
    return d


def _s(d: Path, *names: str) -> list:
    return [str(d / n) for n in names]


SCR = ["scramble", "--embeddings", "--quiet"]

# (id, argv(d), what the one line must say)
BATTERY = [
    ("epochs-0", lambda d: ["run", "--epochs", "0"], "--epochs: must be a positive integer, got 0"),
    ("epochs-neg", lambda d: ["run", "--epochs", "-1"], "--epochs: must be a positive integer, got -1"),
    ("epochs-text", lambda d: ["run", "--epochs", "many"], "--epochs: must be a positive integer"),
    ("train-0", lambda d: ["run", "--train", "0"], "--train: must be a positive integer"),
    ("test-neg", lambda d: ["run", "--test", "-3"], "--test: must be a positive integer"),
    ("sizes-0", lambda d: ["run", "--output-sizes", "10,0"], "--output-sizes: expected comma-separated positive"),
    ("sizes-empty", lambda d: ["run", "--output-sizes", ","], "--output-sizes: expected comma-separated positive"),
    ("device-cuda", lambda d: ["run", "--device", "cuda:7"] if sys.modules["torch"].cuda.is_available()
     else ["run", "--device", "cuda"], "--device"),
    ("device-bogus", lambda d: ["run", "--device", "tpu"], "unknown device 'tpu'"),
    ("run-out-file", lambda d: ["run", "--out", str(d / "file")], "exists and is not a directory"),
    ("run-key-and-seed", lambda d: ["run", "--key", str(d / "k.key"), "--seed", "1"], "--key and --seed are exclusive"),
    ("dataset-unknown", lambda d: ["run", "--dataset", "imagenet21k"], "imagenet21k: neither a built-in dataset"),
    ("data-dir-without-dataset", lambda d: ["run", "--data-dir", str(d)], "dataset 'digits' is built in and reads no folder"),
    ("cloud-unknown", lambda d: ["run", "--cloud", "gpt"], "'gpt': expected efficientnet-lite0, tiny, a PATH.onnx"),
    ("cloud-onnx-missing", lambda d: ["run", "--cloud", str(d / "m.onnx")], "m.onnx: does not exist"),
    ("cloud-url-bad", lambda d: ["run", "--cloud", "http://h:1/models/x"], "expected http://HOST:PORT/v2/models/NAME"),
    ("dataset-no-dir", lambda d: ["run", "--dataset", "mnist"], "needs --data-dir"),
    ("data-dir-missing", lambda d: ["run", "--data-dir", str(d / "nope")], "does not exist (expected a directory)"),
    ("preset-unknown", lambda d: ["run", "--preset", "strong"], "invalid choice: 'strong'"),
    ("cache-dir-file", lambda d: ["run", "--cache-dir", str(d / "file")], "exists and is not a directory"),
    ("batch-0", lambda d: [*SCR, "--key", *_s(d, "k.key"), "--in", *_s(d, "emb.npy"), "--out", *_s(d, "o.npy"),
                           "--batch-size", "0"], "--batch-size: must be a positive integer, got 0"),
    ("batch-neg", lambda d: [*SCR, "--key", *_s(d, "k.key"), "--in", *_s(d, "emb.npy"), "--out", *_s(d, "o.npy"),
                             "--batch-size", "-5"], "--batch-size: must be a positive integer, got -5"),
    ("scramble-out-dir", lambda d: [*SCR, "--key", *_s(d, "k.key"), "--in", *_s(d, "emb.npy"), "--out",
                                    str(d / "dir")], "is a directory, expected a file name"),
    ("in-missing", lambda d: [*SCR, "--key", *_s(d, "k.key"), "--in", *_s(d, "nope.npy"), "--out", *_s(d, "o.npy")],
     "nope.npy: does not exist"),
    ("in-dir", lambda d: [*SCR, "--key", *_s(d, "k.key"), "--in", *_s(d, "dir"), "--out", *_s(d, "o.npy")],
     "a folder; --embeddings reads a .npy or .npz"),
    *[(f"in-{name}", (lambda name: lambda d: [*SCR, "--key", *_s(d, "k.key"), "--in", str(d / f"{name}.npy"),
                                              "--out", *_s(d, "o.npy")])(name), msg) for name, msg in [
        ("empty", "holds no rows"), ("complex", "complex"), ("object", "object"),
        ("paren", "header is not a valid literal"), ("rows", "above the 4,294,967,296-byte limit"),
        ("bigint", "exceed +-2^24"), ("trunc", "truncated"), ("cols", "expected 64 columns"), ("nan", "NaN")]],
    ("uint8-lossy", lambda d: [*SCR, "--key", *_s(d, "k.key"), "--in", *_s(d, "emb.npy"), "--out",
                               *_s(d, "o.npy"), "--uint8"], "would erase most of it"),
    ("images-no-encoder", lambda d: ["scramble", "--key", *_s(d, "k.key"), "--in", *_s(d, "imgs.npy"), "--out",
                                     *_s(d, "o.npy")], "images need --encoder"),
    ("encoder-corrupt", lambda d: ["scramble", "--key", *_s(d, "k.key"), "--in", *_s(d, "imgs.npy"), "--out",
                                   *_s(d, "o.npy"), "--encoder", *_s(d, "enc.npz")], "not a readable .npz"),
    *[(f"key-{name}", (lambda name: lambda d: [*SCR, "--key", str(d / f"{name}.key"), "--in", *_s(d, "emb.npy"),
                                               "--out", *_s(d, "o.npy")])(name), msg) for name, msg in [
        ("missing", "missing.key: does not exist"), ("corrupt", "not valid JSON"), ("deep", "nested deeper than 64"),
        ("huge", "larger than any key file"), ("flipped", "the MAC does not match"),
        ("tampered", "fingerprint does not match"), ("bigspec", "exceed the limit of 32")]],
    ("key-dir", lambda d: [*SCR, "--key", *_s(d, "dir"), "--in", *_s(d, "emb.npy"), "--out", *_s(d, "o.npy")],
     "is a directory"),
    ("key-fifo", lambda d: [*SCR, "--key", *_s(d, "fifo.key"), "--in", *_s(d, "emb.npy"), "--out", *_s(d, "o.npy")],
     "not a regular file"),
    ("keygen-out-dir", lambda d: ["keygen", "--preset", "default", "--out", str(d / "dir"), "--force"],
     "is a directory, expected a file name"),
    ("keygen-exists", lambda d: ["keygen", "--preset", "default", "--out", str(d / "k.key")], "exists (pass --force"),
    ("keygen-spec-json", lambda d: ["keygen", "--spec", *_s(d, "bad.json"), "--out", *_s(d, "n.key")], "not valid JSON"),
    ("keygen-spec-huge", lambda d: ["keygen", "--spec", *_s(d, "bigspec.json"), "--out", *_s(d, "n.key")],
     "exceed the limit of 32"),
    ("keygen-spec-missing", lambda d: ["keygen", "--spec", *_s(d, "nope.json"), "--out", *_s(d, "n.key")],
     "nope.json: does not exist"),
    ("keygen-seed-neg", lambda d: ["keygen", "--preset", "default", "--seed", "-1", "--out", *_s(d, "n.key")],
     "--seed: must be a non-negative integer"),
    ("attack-no-name", lambda d: ["attack"], "name an attack"),
    ("attack-unknown", lambda d: ["attack", "key-oracle"], "unknown attack 'key-oracle'"),
    ("attack-key-seed", lambda d: ["attack", "key-known-plaintext", "--key", *_s(d, "k.key"), "--seed", "1"],
     "cannot be combined with --key"),
    ("attack-seed-neg", lambda d: ["attack", "key-known-plaintext", "--attack-seed", "-2"], "--attack-seed"),
    ("audit-no-target", lambda d: ["audit", "--out", str(d / "a1")], "name the kernel to audit"),
    ("audit-scrambler-module", lambda d: ["audit", "--scrambler", "no_such_module_x:f", "--out", str(d / "a2")],
     "cannot import module 'no_such_module_x'"),
    ("audit-scrambler-form", lambda d: ["audit", "--scrambler", "justaname", "--out", str(d / "a3")],
     "expects MODULE:CALLABLE"),
    ("audit-threads-0", lambda d: ["audit", "--preset", "linear", "--threads", "0"], "--threads"),
    ("audit-out-file", lambda d: ["audit", "--preset", "linear", "--out", str(d / "file")], "not a directory"),
    ("compare-missing", lambda d: ["audit-compare", str(d / "nope")], "no audit report here"),
    ("compare-corrupt", lambda d: ["audit-compare", str(d / "audit-bad")], "not valid JSON"),
    ("compare-null", lambda d: ["audit-compare", str(d / "audit-null")], "summary must be an object"),
    ("bench-he-images", lambda d: ["bench", "--he-images", "0"], "--he-images: must be a positive integer"),
]


def _one_clear_line(err: str, rc: int, expect: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("owsd") and ": error: " in lines[0], lines[0]
    assert expect in lines[0], (expect, lines[0])


@pytest.mark.parametrize("case", BATTERY, ids=[c[0] for c in BATTERY])
def test_bad_input_battery(case, files, capsys):
    name, argv, expect = case
    if name == "key-fifo" and not (files / "fifo.key").exists():
        pytest.skip("no mkfifo on this platform")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeededKeyWarning)  # no key may be drawn before the error
        rc = main(argv(files))
    _one_clear_line(capsys.readouterr().err, rc, expect)


def test_battery_size():
    assert len(BATTERY) >= 40


SUBPROCESS = ["epochs-0", "in-paren", "key-deep", "keygen-out-dir", "compare-corrupt"]


@pytest.mark.parametrize("name", SUBPROCESS)
def test_bad_input_in_a_real_process(name, files):
    """What a user's terminal shows: the whole stderr of a fresh interpreter is one line."""
    _, argv, expect = next(c for c in BATTERY if c[0] == name)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="default")
    out = subprocess.run([sys.executable, "-m", "owsd.cli", *argv(files)], capture_output=True, text=True,
                         env=env, cwd=files, timeout=300)
    _one_clear_line(out.stderr, out.returncode, expect)
    assert out.stdout == ""


def test_internal_error_exit_1_points_to_verbose(monkeypatch, capsys):
    import owsd.cli as cli

    def boom(a):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(cli, "_cmd_keygen", boom)
    assert main(["keygen", "--preset", "default", "--out", "unused.key"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: simulated bug" in err and "-v" in err and "Traceback" not in err
    assert main(["-v", "keygen", "--preset", "default", "--out", "unused.key"]) == 1
    assert "Traceback" in capsys.readouterr().err  # with -v, the traceback follows


def test_scrambler_module_in_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "my_local_scheme_mod.py").write_text("def blur(x):\n    return x\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    from analysis.cli import load_scrambler

    assert load_scrambler("my_local_scheme_mod:blur")(3) == 3


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OWSD_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "owsd.cli", "run", "--seed", "0", "--epochs", "200", "--out", str(tmp_path / "r"),
           "--quiet"]
    # a child inherits an ignored SIGINT (some test runners and background shells ignore it): restore
    # the default, as in a terminal, so the interrupt reaches the command
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in p.stderr:  # wait until the run has started working
        if "owsd.pipeline: run:" in line:
            break
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    assert "interrupted; run the same command to resume" in err and "Traceback" not in err


def test_ctrl_c_without_a_fixed_key_does_not_promise_a_resume(capsys, monkeypatch, tmp_path):
    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr("owsd.pipeline.run_pipeline", interrupted)
    assert main(["run", "--out", str(tmp_path / "r")]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "resume" not in err


@pytest.mark.parametrize("fixed, resumes", [(["--seed", "0"], True), ([], False)])
def test_ctrl_c_during_an_audit(fixed, resumes, capsys, monkeypatch, tmp_path):
    def interrupted(target, cfg, restart=False):
        raise KeyboardInterrupt

    monkeypatch.setattr("analysis.audit.run_audit", interrupted)
    assert main(["audit", "--preset", "linear", *fixed, "--out", str(tmp_path / "a")]) == 130
    err = capsys.readouterr().err
    assert ("run the same command to resume" in err) == resumes and "Traceback" not in err


def test_key_files_of_version_1_still_load_with_a_note(files, caplog):
    doc = json.loads((files / "k.key").read_text())
    v1 = {k: v for k, v in doc.items() if k != "mac"}
    (files / "v1.key").write_text(json.dumps({**v1, "version": 1}))
    with caplog.at_level("WARNING"):
        key = Key.load(files / "v1.key")
    assert key.seeded and "version-1 key file" in caplog.text
    assert key.secret.hex() not in caplog.text
