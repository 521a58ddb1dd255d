"""Fuzz targets: every parser a user feeds, the errors it documents, and a seed corpus of real files.

Used by ``tests/test_fuzz.py`` (hypothesis: a short run in the normal suite, a long one under
``slow``) and ``tests/fuzz/atheris_fuzz.py`` (coverage-guided, libFuzzer).  A target parses one
file and may raise only its documented error types; anything else (a ``KeyError``, a
``RecursionError``, a ``MemoryError``, a numpy tokenizer error) is a finding.

The corpus is built from real files: key files written by :func:`owsd.keys.generate_key`
(version 2, and a version-1 rewrite), the presets' spec JSON, arrays saved by ``numpy.save``
and an encoder saved by :meth:`owsd.encoder.Encoder.save`, the first records of the shared
MNIST IDX files, the shared foolbox PNG/JPEG samples and the committed audit report
(``docs/audit-mnist-default/report.json``); synthetic stand-ins are used where the shared data
folder is absent.

Example:
    >>> sorted(TARGETS)
    ['idx', 'images', 'key', 'npy', 'npz', 'report', 'spec']
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import struct
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from analysis.compare import compare
from analysis.reportcheck import ReportFormatError
from owsd.data import DataFormatError, load_foolbox_samples, read_idx
from owsd.encoder import Encoder, PCAEncoder
from owsd.keys import Key, KeyFileError, KeySpecMismatchError, _mac, generate_key
from owsd.npyfile import ArrayFileError, read_array, read_npz
from owsd.presets import PRESETS, get_preset
from owsd.spec import ScramblerSpec, SpecError
from owsd.validation import as_image_batch, as_matrix

REPO = Path(__file__).resolve().parents[1]


def _shared() -> Path | None:
    env = os.environ.get("OWSD_DATA_DIR")
    cand = Path(env) if env else REPO.parent / "shared" / "data"
    return cand if cand.is_dir() else None


@dataclass(frozen=True)
class Target:
    """A parser under fuzz: ``run(path)`` parses the file; only ``allowed`` errors may escape."""

    name: str
    filename: str
    run: Callable[[Path], None]
    allowed: tuple
    json: bool = False


def _run_key(path: Path) -> None:
    Key.load(path, expected_spec=None)


def _run_spec(path: Path) -> None:
    spec = ScramblerSpec.load(path)
    spec.output_shape(), spec.num_parameters()


def _run_npy(path: Path) -> None:
    a = read_array(path)
    if a.ndim == 2 and a.size:
        as_matrix(a, name="embeddings")
    elif a.ndim in (3, 4) and a.size and a.shape[-1] * a.shape[-2] < 1 << 16:
        as_image_batch(a, name="images")


def _run_npz(path: Path) -> None:
    z = read_npz(path)
    if "header" in z:
        Encoder.load(path)


def _run_idx(path: Path) -> None:
    read_idx(path)


def _run_images(path: Path) -> None:
    load_foolbox_samples(path.parent, "samples-mnist")


def _run_report(path: Path) -> None:
    compare([path])


TARGETS = {
    "key": Target("key", "k.key", _run_key, (KeyFileError, KeySpecMismatchError), json=True),
    "spec": Target("spec", "s.json", _run_spec, (SpecError,), json=True),
    "npy": Target("npy", "a.npy", _run_npy, (ArrayFileError, ValueError)),
    "npz": Target("npz", "a.npz", _run_npz, (ArrayFileError, ValueError)),
    "idx": Target("idx", "train-images-idx3-ubyte", _run_idx, (DataFormatError,)),
    "images": Target("images", "mnist_01_2.png", _run_images, (DataFormatError,)),
    "report": Target("report", "report.json", _run_report, (ReportFormatError,), json=True),
}
"""The parsers and their documented errors (see ``docs/reliability.md``)."""


def check_one(target: Target, path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and parse it; re-raise only what the target does not document."""
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            target.run(path)
        except target.allowed:
            pass


def prepare_dir(target: Target, workdir: Path) -> Path:
    """The folder a target's file lives in (the image folder holds two good neighbours)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if target.name == "images":
        good = _png(np.full((28, 28), 30, np.uint8))
        (workdir / "mnist_00_7.png").write_bytes(good)
        (workdir / "mnist_02_1.png").write_bytes(good)
    return workdir / target.filename


# --- the seed corpus ------------------------------------------------------------------------
def _png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _idx(a: np.ndarray, code: int = 0x08) -> bytes:
    return struct.pack(">HBB", 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(
        a.dtype.newbyteorder(">")).tobytes()


def resign_key(doc: dict) -> dict:
    """Recompute a mutated key document's fingerprint and MAC (a tamperer who holds the secret)."""
    try:
        spec = ScramblerSpec.from_dict(doc["spec"])
        key = Key(spec=spec, secret=bytes.fromhex(doc["secret"]), seeded=bool(doc.get("seeded")))
        doc["fingerprint"] = key.fingerprint
        if "mac" in doc:
            doc["mac"] = _mac(doc, key.secret)
    except Exception:  # noqa: BLE001 - an unsignable mutation stays as it is
        pass
    return doc


def corpus(name: str) -> list[bytes]:
    """Seed files of one target, from real files where the shared data has them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _corpus(name)


def _corpus(name: str) -> list[bytes]:
    shared = _shared()
    if name == "key":
        out = []
        for preset, seed in (("default", 0), ("linear", 1)):
            text = generate_key(get_preset(preset), seed=seed).to_json()
            out.append(text.encode())
            v1 = {k: v for k, v in json.loads(text).items() if k != "mac"}
            out.append(json.dumps({**v1, "version": 1}, indent=2).encode())
        return out
    if name == "spec":
        noisy = dataclasses.replace(PRESETS["default"](), query_noise=0.5, quantize_levels=256)  # the optional fields
        return [json.dumps(s.to_dict(), indent=2).encode() for s in [*(PRESETS[p]() for p in sorted(PRESETS)), noisy]]
    if name == "npy":
        rng = np.random.default_rng(0)
        arrays = [rng.normal(size=(3, 64)).astype(np.float32), rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
                  rng.random((2, 3, 8, 8)), np.zeros((0, 64), np.float32), np.array(3.5),
                  np.asfortranarray(rng.normal(size=(4, 5))), rng.normal(size=(2, 3)).astype(">f4"),
                  np.array([[2 ** 62, 1]], np.int64), np.array([True, False])]
        return [_npy(a) for a in arrays]
    if name == "npz":
        x = np.random.default_rng(0).random((80, 20)).astype(np.float32)
        out = []
        with tempfile.TemporaryDirectory() as d:
            PCAEncoder(4).fit(x).save(Path(d) / "e.npz")
            out.append((Path(d) / "e.npz").read_bytes())
        for save in (np.savez, np.savez_compressed):
            b = io.BytesIO()
            save(b, a=np.arange(6.0).reshape(2, 3), b=np.zeros(3, np.uint8))
            out.append(b.getvalue())
        return out
    if name == "idx":
        if shared is not None and (shared / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            with gzip.open(shared / "mnist" / "t10k-images-idx3-ubyte.gz") as fh:
                head = fh.read(16 + 3 * 784)
            imgs = np.frombuffer(head[16:], np.uint8).reshape(3, 28, 28)
            labels = gzip.decompress((shared / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
        else:
            imgs = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
            labels = _idx(np.array([7, 2, 1], np.uint8))
        raw = _idx(imgs)
        return [raw, gzip.compress(raw), labels[:8 + 20], _idx(np.arange(6, dtype=">i4").reshape(2, 3), 0x0C)]
    if name == "images":
        out = []
        folder = shared / "samples" / "foolbox_data" if shared is not None else None
        if folder is not None and folder.is_dir():
            for f in ("mnist_00_7.png", "mnist_01_2.png", "cifar10_00_3.png", "imagenet_00_243.jpg"):
                if (folder / f).is_file():
                    out.append((folder / f).read_bytes())
        if not out:
            rng = np.random.default_rng(0)
            out = [_png(rng.integers(0, 256, (28, 28), dtype=np.uint8)),
                   _png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "JPEG")]
        return out
    if name == "report":
        real = REPO / "docs" / "audit-mnist-default" / "report.json"
        small = {"format": "owsd-audit-report", "target": {"name": "t", "kind": "owsd", "fingerprint": "ab" * 8,
                                                          "spec": {"name": "default"}},
                 "summary": {"counts": {"fail": 1, "pass": 2}, "overall": "fail",
                             "max_advantage_by_family": {"inversion": 0.5}, "max_reconstruction_advantage": 0.5},
                 "utility": {"accuracy": {"cloud_only": {"10": 0.5}, "plaintext": 0.9},
                             "accuracy_ci95": {"cloud_only": {"10": [0.4, 0.6]}}, "chance": 0.1},
                 "utility_headline": 0.5, "dataset": {"name": "digits"}, "cloud": "tiny", "budget": "smoke"}
        out = [json.dumps(small).encode()]
        if real.is_file():
            doc = json.loads(real.read_text())
            # the fields audit-compare reads, at a fuzzable size (curves hold hundreds of floats)
            doc["attacks"] = [{k: v for k, v in a.items() if k != "curves"} for a in doc["attacks"][:2]]
            out.append(json.dumps(doc).encode())
        return out
    raise KeyError(name)
