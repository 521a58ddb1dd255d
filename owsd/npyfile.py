"""Strict ``.npy`` / ``.npz`` readers: every failure is an :class:`ArrayFileError`, never a traceback.

``numpy.load`` trusts the header: an unbalanced parenthesis in it raises a tokenizer error,
a shape of 1e11 rows allocates terabytes before reading a byte, and complex or structured
dtypes load silently.  These readers parse the header themselves (a Python literal of at
most :data:`MAX_HEADER_BYTES`), accept only plain numeric dtypes (bool, integers, floats;
complex, object, string, structured and datetime arrays are refused), compute the byte size
with exact integers and check it against the limit (:func:`max_array_bytes`, env
``OWSD_MAX_ARRAY_BYTES``, default 4 GiB) and against the bytes the file really holds, all
before allocating anything.  No pickle, ever.

Example:
    >>> import io, numpy as np
    >>> buf = io.BytesIO(); np.save(buf, np.arange(6, dtype=np.int16).reshape(2, 3))
    >>> read_npy_bytes(buf.getvalue()).tolist()
    [[0, 1, 2], [3, 4, 5]]
    >>> read_npy_bytes(b"\\x93NUMPY\\x01\\x00" + b"\\x10\\x00{'descr': '<f4',  \\n")
    Traceback (most recent call last):
    owsd.npyfile.ArrayFileError: <bytes>: .npy header is not a valid literal (unbalanced or malformed)
"""

from __future__ import annotations

import ast
import io
import math
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAGIC = b"\x93NUMPY"
MAX_HEADER_BYTES = 10_000  # numpy's own default limit
MAX_NDIM = 32
MAX_MEMBERS = 1024
DEFAULT_MAX_BYTES = 4 * 2 ** 30
NUMERIC_KINDS = "biuf"


class ArrayFileError(ValueError):
    """An array file is unreadable, malformed, too large or of a refused dtype."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source, self.problem = source, problem


def max_array_bytes() -> int:
    """The size limit of one array file's data: ``$OWSD_MAX_ARRAY_BYTES`` or 4 GiB."""
    env = os.environ.get("OWSD_MAX_ARRAY_BYTES", "")
    try:
        v = int(env) if env.strip() else DEFAULT_MAX_BYTES
    except ValueError:
        v = DEFAULT_MAX_BYTES
    return v if v > 0 else DEFAULT_MAX_BYTES


def _read_exact(fh: BinaryIO, n: int, source: str, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise ArrayFileError(source, f"truncated {what}: expected {n} bytes, got {len(data)}")
    return data


def _parse_header(fh: BinaryIO, source: str) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """Read magic and header; return ``(dtype, shape, fortran_order, header_bytes)``."""
    magic = fh.read(8)
    if len(magic) < 8 or magic[:6] != MAGIC:
        raise ArrayFileError(source, "not a .npy array (bad magic bytes)")
    major, minor = magic[6], magic[7]
    if (major, minor) not in ((1, 0), (2, 0), (3, 0)):
        raise ArrayFileError(source, f"unsupported .npy format version {major}.{minor}")
    size_fmt = "<H" if major == 1 else "<I"
    (hlen,) = struct.unpack(size_fmt, _read_exact(fh, struct.calcsize(size_fmt), source, ".npy header length"))
    if hlen > MAX_HEADER_BYTES:
        raise ArrayFileError(source, f".npy header of {hlen} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
    raw = _read_exact(fh, hlen, source, ".npy header")
    try:
        text = raw.decode("utf-8" if major == 3 else "latin1")
        doc = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, UnicodeDecodeError):
        raise ArrayFileError(source, ".npy header is not a valid literal (unbalanced or malformed)") from None
    if not isinstance(doc, dict) or set(doc) != {"descr", "fortran_order", "shape"}:
        raise ArrayFileError(source, ".npy header must be a dict with exactly 'descr', 'fortran_order', 'shape'")
    descr, fortran, shape = doc["descr"], doc["fortran_order"], doc["shape"]
    if not isinstance(descr, str):
        raise ArrayFileError(source, "structured or nested dtypes are refused (descr must be a plain type string)")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError, SyntaxError, RecursionError, MemoryError):
        raise ArrayFileError(source, f"unknown dtype {descr[:40]!r}") from None
    if not isinstance(fortran, bool):
        raise ArrayFileError(source, f"fortran_order must be True or False, got {fortran!r:.40}")
    if not isinstance(shape, tuple) or len(shape) > MAX_NDIM or any(
            not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in shape):
        raise ArrayFileError(source, f"shape must be a tuple of at most {MAX_NDIM} non-negative integers, "
                                     f"got {str(shape)[:80]}")
    return dtype, shape, fortran, 8 + struct.calcsize(size_fmt) + hlen


def _check_dtype(dtype: np.dtype, source: str, kinds: str) -> None:
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise ArrayFileError(source, f"dtype {dtype} is refused (object, structured or sub-array)")
    if dtype.kind not in kinds:
        names = {"c": "complex", "O": "object", "S": "bytes", "U": "string", "V": "void", "M": "datetime",
                 "m": "timedelta", "b": "bool", "f": "float", "i": "integer", "u": "unsigned integer"}
        raise ArrayFileError(source, f"{names.get(dtype.kind, dtype.kind)} arrays ({dtype}) are refused; "
                                     "expected a real numeric array")


def _read_body(fh: BinaryIO, source: str, *, available: int, max_bytes: int, kinds: str,
               budget: list) -> np.ndarray:
    dtype, shape, fortran, header = _parse_header(fh, source)
    _check_dtype(dtype, source, kinds)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes > max_bytes or nbytes > budget[0]:
        raise ArrayFileError(source, f"header claims shape {shape} of {dtype} = {nbytes:,} bytes, above the "
                                     f"{min(max_bytes, budget[0]):,}-byte limit (set OWSD_MAX_ARRAY_BYTES to raise it)")
    if available - header != nbytes:
        got = available - header
        raise ArrayFileError(source, f"{'truncated' if got < nbytes else 'trailing bytes'}: header says shape "
                                     f"{shape} of {dtype} ({nbytes:,} bytes of data), the file holds {max(got, 0):,}")
    budget[0] -= nbytes
    arr = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    if nbytes:
        view = memoryview(arr.reshape(-1, order="A").view(np.uint8)) if arr.ndim else memoryview(
            arr.reshape(1).view(np.uint8))
        got = 0
        while got < nbytes:
            n = fh.readinto(view[got:])
            if not n:
                raise ArrayFileError(source, f"truncated data: expected {nbytes:,} bytes, got {got:,}")
            got += n
    return arr


def _regular_size(path: Path) -> int:
    st = os.stat(path)  # FileNotFoundError / PermissionError propagate (OSError: the CLI names the file)
    if stat.S_ISDIR(st.st_mode):
        raise ArrayFileError(str(path), "is a directory, expected an array file")
    if not stat.S_ISREG(st.st_mode):
        raise ArrayFileError(str(path), "not a regular file")
    return st.st_size


def read_npy_bytes(data: bytes, *, source: str = "<bytes>", max_bytes: int | None = None,
                   kinds: str = NUMERIC_KINDS) -> np.ndarray:
    """Parse a whole ``.npy`` file held in memory (see :func:`read_npy`)."""
    limit = max_array_bytes() if max_bytes is None else max_bytes
    return _read_body(io.BytesIO(data), source, available=len(data), max_bytes=limit, kinds=kinds,
                      budget=[limit])


def read_npy(path: str | Path, *, max_bytes: int | None = None, kinds: str = NUMERIC_KINDS) -> np.ndarray:
    """Read one ``.npy`` file strictly (size, dtype and shape checked before allocation)."""
    path = Path(path)
    size = _regular_size(path)
    limit = max_array_bytes() if max_bytes is None else max_bytes
    with open(path, "rb") as fh:
        return _read_body(fh, str(path), available=size, max_bytes=limit, kinds=kinds, budget=[limit])


def read_npz(path: str | Path, *, max_bytes: int | None = None, kinds: str = NUMERIC_KINDS,
             max_members: int = MAX_MEMBERS) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` strictly; ``max_bytes`` bounds the total of all members."""
    path = Path(path)
    _regular_size(path)
    limit = max_array_bytes() if max_bytes is None else max_bytes
    budget = [limit]
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > max_members:
                raise ArrayFileError(str(path), f"{len(infos)} members, more than the limit of {max_members}")
            for info in infos:
                if not info.filename.endswith(".npy") or info.is_dir():
                    raise ArrayFileError(str(path), f"member {info.filename[:80]!r} is not a .npy array")
                name = info.filename[:-4]
                if name in out:
                    raise ArrayFileError(str(path), f"duplicate member {info.filename[:80]!r}")
                with zf.open(info) as fh:
                    out[name] = _read_body(fh, f"{path}:{info.filename[:80]}", available=info.file_size,
                                           max_bytes=limit, kinds=kinds, budget=budget)
    except ArrayFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, OSError,
            RuntimeError, struct.error, ValueError, OverflowError, UnicodeDecodeError) as exc:
        raise ArrayFileError(str(path), f"cannot read array file: not a readable .npz archive ({type(exc).__name__}: "
                                        f"{str(exc)[:120]})") from None
    return out


def read_array(path: str | Path, *, max_bytes: int | None = None, kinds: str = NUMERIC_KINDS) -> np.ndarray:
    """One array from a ``.npy`` file, or from an ``.npz`` holding exactly one array."""
    path = Path(path)
    _regular_size(path)
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head[:4] == b"PK\x03\x04" or head[:4] == b"PK\x05\x06":
        arrays = read_npz(path, max_bytes=max_bytes, kinds=kinds)
        if len(arrays) != 1:
            raise ArrayFileError(str(path), f".npz holds {len(arrays)} arrays ({', '.join(sorted(arrays))[:80]}); "
                                            "expected exactly one")
        return next(iter(arrays.values()))
    return read_npy(path, max_bytes=max_bytes, kinds=kinds)
