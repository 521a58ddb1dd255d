"""Your own images: an ImageFolder tree, an ``.npz`` of ``x``/``y``, a ``.npy``, one image file.

* :func:`load_labelled` reads a labelled dataset from a path: a folder in the ImageFolder
  layout (``ROOT/<class>/<image>``, any format Pillow reads; optionally ``ROOT/train/<class>``
  and ``ROOT/test/<class>``), or an ``.npz`` holding ``x`` ``(N, H, W[, C])`` and ``y`` ``(N,)``
  (optionally ``x_test``/``y_test``).  Colour is kept (3 channels if any image has colour,
  else 1); with ``image_size`` every image is resized (bilinear) to ``image_size`` squared.
* :func:`load_images` reads unlabelled images for ``owsd scramble --in``: an image file, a
  folder of images (flat or by class), a ``.npy`` or an ``.npz``.
* :func:`resize_images` resizes a uint8 batch ``(N, C, H, W)``.

Bad input (no class folders, one class, an unreadable image, mixed sizes without
``image_size``, labels that do not match) raises :class:`owsd.imageset.DataFormatError` naming
the path and the problem.

Example:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "set.npz"
    ...     np.savez(p, x=np.zeros((6, 5, 5, 3), np.uint8), y=np.array([0, 1, 0, 1, 0, 1]))
    ...     ds = load_labelled(p, image_size=8)
    >>> ds.images.shape, ds.num_classes
    ((6, 3, 8, 8), 2)
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from owsd.imageset import MAX_IMAGE_PIXELS, DataFormatError, ImageDataset, image_file_bytes
from owsd.npyfile import read_array, read_npz

log = logging.getLogger(__name__)

#: file suffixes read as images (anything Pillow decodes; these are the common ones)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                            ".pbm", ".pnm"})
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F", "P;grey"})


def _decode(path: Path) -> np.ndarray:
    """``(H, W, 1)`` for a grey image, ``(H, W, 3)`` for a colour one (alpha dropped)."""
    from PIL import Image

    blob = image_file_bytes(path)
    try:
        with Image.open(io.BytesIO(blob)) as im:
            w, h = im.size
            if w < 1 or h < 1 or w * h > MAX_IMAGE_PIXELS:
                raise DataFormatError(path, f"image of {w}x{h} pixels is outside 1..{MAX_IMAGE_PIXELS:,} pixels")
            grey = im.mode in _GREY_MODES or (im.mode == "P" and _palette_is_grey(im))
            arr = np.asarray(im.convert("L" if grey else "RGB"), dtype=np.uint8)
    except DataFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on corrupt data
        raise DataFormatError(path, f"cannot decode image ({type(exc).__name__}: {str(exc)[:120]})") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def _palette_is_grey(im) -> bool:
    pal = np.asarray(im.convert("RGB"))
    return bool((pal[..., 0] == pal[..., 1]).all() and (pal[..., 1] == pal[..., 2]).all())


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 images ``(N, C, H, W)`` to ``size`` x ``size`` (Pillow bilinear, per channel).

    Example:
        >>> resize_images(np.zeros((2, 3, 4, 6), np.uint8), 5).shape
        (2, 3, 5, 5)
    """
    from PIL import Image

    if images.shape[2:] == (size, size):
        return images
    out = np.empty((*images.shape[:2], size, size), np.uint8)
    for i, img in enumerate(images):
        for c, plane in enumerate(img):
            out[i, c] = np.asarray(Image.fromarray(plane).resize((size, size), Image.BILINEAR))
    return out


def _stack(arrays: list[np.ndarray], paths: list[Path], source: Path, image_size: Optional[int]) -> np.ndarray:
    """Stack decoded ``(H, W, C)`` images to ``(N, C, H, W)``: colour kept, sizes equal or resized."""
    from PIL import Image

    colour = any(a.shape[2] == 3 for a in arrays)
    out = []
    want = None if image_size else arrays[0].shape[:2]
    for a, p in zip(arrays, paths):
        if colour and a.shape[2] == 1:
            a = np.repeat(a, 3, axis=2)
        if image_size:
            if a.shape[:2] != (image_size, image_size):
                a = np.asarray(Image.fromarray(a.squeeze(2) if a.shape[2] == 1 else a).resize(
                    (image_size, image_size), Image.BILINEAR)).reshape(image_size, image_size, -1)
        elif a.shape[:2] != want:
            raise DataFormatError(p, f"image is {a.shape[1]}x{a.shape[0]}, the first image of {source} is "
                                     f"{want[1]}x{want[0]}: mixed sizes (pass --image-size N to resize all to NxN)")
        out.append(a)
    return np.stack(out).transpose(0, 3, 1, 2).copy()


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _folder(root: Path, image_size: Optional[int], classes: Optional[list[str]] = None) -> ImageDataset:
    """One ImageFolder tree: a subfolder per class (sorted names -> labels 0..K-1)."""
    dirs = _class_dirs(root)
    if not dirs:
        loose = _image_files(root)
        hint = (f"; its {len(loose)} images lie directly in it: put them in one subfolder per class"
                if loose else "")
        raise DataFormatError(root, f"no class folders (expected {root}/<class>/<image>){hint}")
    names = classes or [d.name for d in dirs]
    files, labels = [], []
    for d in dirs:
        if d.name not in names:
            raise DataFormatError(d, f"class folder {d.name!r} is not among the training classes {names}")
        imgs = _image_files(d)
        if not imgs:
            raise DataFormatError(d, f"class folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += imgs
        labels += [names.index(d.name)] * len(imgs)
    if classes is None and len(names) < 2:
        raise DataFormatError(root, f"only one class ({names[0]!r}): a classifier needs at least two class folders")
    images = _stack([_decode(p) for p in files], files, root, image_size)
    return ImageDataset(root.name, images, np.array(labels, np.int64), len(names))


def _labels(y: np.ndarray, where: str, n: int, classes: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels as 0..K-1 (sorted distinct values of the training labels) and those values."""
    if y.ndim != 1 or len(y) != n:
        raise DataFormatError(where, f"y must be labels (N,) for the {n} images, got shape {y.shape}")
    if y.dtype.kind not in "iub":
        raise DataFormatError(where, f"y must hold integer labels, got dtype {y.dtype}")
    values = np.unique(y) if classes is None else classes
    idx = np.searchsorted(values, y)
    bad = (idx >= len(values)) | (values[np.minimum(idx, len(values) - 1)] != y)
    if bad.any():
        raise DataFormatError(where, f"label {y[bad][0]} of the test images is not among the training labels")
    return idx.astype(np.int64), values


def _npz_images(x: np.ndarray, where: str) -> np.ndarray:
    """``x`` ``(N, H, W)`` or ``(N, H, W, C)`` (C 1, 3 or 4), uint8 or floats in [0, 1] -> uint8 ``(N, C, H, W)``."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[3] not in (1, 3, 4) or x.shape[0] == 0:
        raise DataFormatError(where, f"x must be images (N, H, W) or (N, H, W, C) with C in 1, 3, 4; got {x.shape}")
    x = x[..., :3] if x.shape[3] == 4 else x
    if x.dtype.kind == "f":
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise DataFormatError(where, "float images must be finite and lie in [0, 1]")
        x = np.round(x * 255)
    elif x.dtype.kind in "iu" and (x.min() < 0 or x.max() > 255):
        raise DataFormatError(where, f"integer images must lie in 0..255, got {x.min()}..{x.max()}")
    elif x.dtype.kind not in "iuf":
        raise DataFormatError(where, f"x must be numeric images, got dtype {x.dtype}")
    return x.astype(np.uint8).transpose(0, 3, 1, 2).copy()


def _npz(path: Path, image_size: Optional[int]) -> tuple[ImageDataset, Optional[ImageDataset]]:
    arrays = read_npz(path)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataFormatError(path, f"missing array(s) {missing}: expected x (N, H, W[, C]) and y (N,); "
                                    f"found {sorted(arrays)}")
    out = []
    classes = None
    for xk, yk in (("x", "y"), ("x_test", "y_test")):
        if xk not in arrays:
            continue
        imgs = _npz_images(arrays[xk], f"{path}:{xk}")
        labels, classes = _labels(arrays[yk] if yk in arrays else np.zeros(0, int), f"{path}:{yk}", len(imgs),
                                  classes)
        if image_size:
            imgs = resize_images(imgs, image_size)
        out.append(ImageDataset(path.stem, imgs, labels, len(classes)))
    if out[0].num_classes < 2:
        raise DataFormatError(f"{path}:y", f"only one class (label {classes[0]}): a classifier needs at least two")
    return out[0], (out[1] if len(out) > 1 else None)


def load_labelled(path: str | Path, *, image_size: Optional[int] = None) -> ImageDataset:
    """All labelled images at ``path`` (ImageFolder tree or ``.npz``), train and test together."""
    train, test = load_labelled_splits(path, image_size=image_size)
    if test is None:
        return train
    return ImageDataset(train.name, np.concatenate([train.images, test.images]),
                        np.concatenate([train.labels, test.labels]), train.num_classes)


def load_labelled_splits(path: str | Path, *, image_size: Optional[int] = None
                         ) -> tuple[ImageDataset, Optional[ImageDataset]]:
    """``(train, test)`` at ``path``; ``test`` is ``None`` when the data has no split of its own."""
    path = Path(path)
    if image_size is not None and not 1 <= int(image_size) <= 4096:
        raise ValueError(f"image size must lie in 1..4096, got {image_size}")
    if path.is_dir():
        subs = {d.name for d in _class_dirs(path)}
        if subs == {"train", "test"}:
            train = _folder(path / "train", image_size)
            test = _folder(path / "test", image_size, classes=[d.name for d in _class_dirs(path / "train")])
            if test.images.shape[1:] != train.images.shape[1:]:
                raise DataFormatError(path / "test", f"test images are {test.images.shape[1:]}, training images "
                                                     f"{train.images.shape[1:]} (pass --image-size N)")
            return ImageDataset(path.name, train.images, train.labels, train.num_classes), \
                ImageDataset(path.name, test.images, test.labels, train.num_classes)
        return _folder(path, image_size), None
    if path.suffix.lower() == ".npz":
        return _npz(path, image_size)
    if not path.exists():
        raise DataFormatError(path, "does not exist (expected a folder of class subfolders or an .npz)")
    raise DataFormatError(path, "not a dataset: expected a folder (one subfolder per class) or an .npz with x, y")


def load_images(path: str | Path, *, image_size: Optional[int] = None) -> np.ndarray:
    """Unlabelled images at ``path``: an image file, a folder of images (flat or by class), ``.npy``, ``.npz``.

    Image files come back uint8 ``(N, C, H, W)``; arrays as stored (``.npz``: its ``x`` or its
    only array), for :func:`owsd.validation.as_image_batch` to check, resized if ``image_size``.
    """
    path = Path(path)
    if path.is_dir():
        files = _image_files(path) or [p for d in _class_dirs(path) for p in _image_files(d)]
        if not files:
            raise DataFormatError(path, "holds no image files (directly or in subfolders)")
        return _stack([_decode(p) for p in files], files, path, image_size)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _stack([_decode(path)], [path], path, image_size)
    if path.suffix.lower() == ".npz":
        arrays = read_npz(path)
        if "x" in arrays:  # the dataset convention: (N, H, W[, C])
            arr = _npz_images(arrays["x"], f"{path}:x")
        elif len(arrays) == 1:
            arr = next(iter(arrays.values()))
        else:
            raise DataFormatError(path, f"holds {sorted(arrays)}; expected an array x (or exactly one array)")
    else:
        arr = read_array(path)
    if image_size and arr.ndim in (3, 4) and tuple(arr.shape[-2:]) != (image_size, image_size):
        a = arr if arr.ndim == 4 else arr[:, None]
        if a.dtype != np.uint8:
            raise DataFormatError(path, "--image-size resizes uint8 images; this array is " + str(a.dtype))
        return resize_images(a, image_size)
    return arr
