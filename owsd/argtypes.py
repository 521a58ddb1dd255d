"""argparse ``type=`` checkers shared by every ``owsd`` subcommand: counts, devices, paths.

Each raises :class:`argparse.ArgumentTypeError` with a message that says what is wrong, so the
parser prints one line naming the argument (see :mod:`owsd.errors`) and exits with code 2
before any work starts.

Example:
    >>> positive_int("3"), nonnegative_int("0"), int_list("10,100")
    (3, 0, (10, 100))
    >>> positive_int("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a positive integer, got 0
"""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

# The checkers that need the data and cloud modules import them inside, for start-up speed (every
# command's parser uses this module; owsd.cloud imports torch).

#: largest count accepted on the command line (images, epochs, batch sizes, seeds' magnitude)
MAX_COUNT = 2 ** 31 - 1
MAX_SEED = 2 ** 63 - 1


def _int_in(text: str, lo: int, hi: int, *, what: str) -> int:
    """A base-10 integer in ``[lo, hi]``; ``what`` names it in the error (``a positive integer``)."""
    try:
        v = int(str(text).strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not lo <= v <= hi:
        raise argparse.ArgumentTypeError(f"must be {what}, got {v}" if v < lo else f"must be at most {hi}, got {v}")
    return v


def positive_int(text: str) -> int:
    """An integer in ``[1, MAX_COUNT]`` (counts, epochs, batch sizes, threads)."""
    return _int_in(text, 1, MAX_COUNT, what="a positive integer")


def nonnegative_int(text: str) -> int:
    """An integer in ``[0, MAX_SEED]`` (seeds)."""
    return _int_in(text, 0, MAX_SEED, what="a non-negative integer")


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated positive integers, e.g. ``10,100,1000``."""
    parts = [v for v in str(text).split(",") if v.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected comma-separated positive integers, got nothing")
    try:
        return tuple(positive_int(v) for v in parts)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers: {exc}") from None


def device(text: str) -> str:
    """A torch device this machine has: ``cpu``, ``cuda`` or ``cuda:N``."""
    import torch

    try:
        dev = torch.device(str(text))
    except (RuntimeError, ValueError, TypeError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r} (expected cpu, cuda or cuda:N)") from None
    if dev.type == "cpu":
        return str(text)
    if dev.type != "cuda":
        raise argparse.ArgumentTypeError(f"device {text!r} is not supported (expected cpu, cuda or cuda:N)")
    if not torch.version.cuda:
        raise argparse.ArgumentTypeError(f"{text!r}: this torch {torch.__version__} is a CPU build without "
                                         "CUDA support; use --device cpu")
    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: no CUDA device is visible; use --device cpu")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return str(text)


def input_file(text: str) -> Path:
    """An existing regular file (a FIFO or device would block a reader forever)."""
    p = Path(text)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(f"{text}: does not exist") from None
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{text}: cannot access ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise argparse.ArgumentTypeError(f"{text}: is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise argparse.ArgumentTypeError(f"{text}: not a regular file")
    if not os.access(p, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: permission denied")
    return p


def _writable_parent(p: Path, text: str) -> None:
    parent = p.parent if str(p.parent) else Path(".")
    probe = parent
    while not probe.exists():
        if probe == probe.parent:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {probe} is a file, not a directory")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: cannot write in {probe} (permission denied)")


def output_file(text: str) -> Path:
    """A file to write: not an existing directory, in a folder that exists or can be made."""
    p = Path(text)
    if not str(text).strip():
        raise argparse.ArgumentTypeError("empty path")
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a directory, expected a file name")
    if p.exists() and not p.is_file():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a regular file")
    _writable_parent(p, text)
    return p


def output_dir(text: str) -> Path:
    """A run directory: an existing directory or a path that can be made one (not a file)."""
    p = Path(text)
    if not str(text).strip():
        raise argparse.ArgumentTypeError("empty path")
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a directory")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text}: cannot write in this directory (permission denied)")
        return p
    _writable_parent(p, text)
    return p


def input_dir(text: str) -> Path:
    """An existing directory."""
    p = Path(text)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text}: does not exist (expected a directory)")
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a directory")
    return p


def input_path(text: str) -> Path:
    """An existing regular file or directory (images: a file, or a folder of them)."""
    p = Path(text)
    if p.is_dir():
        if not os.access(p, os.R_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text}: permission denied")
        return p
    return input_file(text)


def dataset_source(text: str) -> str:
    """A built-in dataset name, or an existing folder (one subfolder per class) or ``.npz``."""
    from owsd.data import DATASETS

    if text in DATASETS:
        return text
    p = Path(text)
    if p.is_dir() or (p.is_file() and p.suffix.lower() == ".npz"):
        if not os.access(p, os.R_OK):
            raise argparse.ArgumentTypeError(f"{text}: permission denied")
        return text
    if p.exists():
        raise argparse.ArgumentTypeError(f"{text}: not a dataset (expected a folder of class subfolders or an "
                                         ".npz with x and y)")
    raise argparse.ArgumentTypeError(f"{text}: neither a built-in dataset ({', '.join(DATASETS)}) nor an existing "
                                     "folder or .npz")


def cloud_source(text: str) -> str:
    """A built-in cloud name, an existing ``PATH.onnx``, ``MODULE:CALLABLE`` or a KServe V2 URL."""
    from owsd.cloud import CLOUD_NAMES
    from owsd.cloud_sources import is_cloud_source

    if text in CLOUD_NAMES or text == "none":
        return text
    if text.lower().endswith(".onnx"):
        input_file(text)
        return text
    if text.startswith(("http://", "https://")):
        import re

        if not re.match(r"^https?://[^/]+/v2/models/[^/]+(/versions/[^/]+)?/?$", text):
            raise argparse.ArgumentTypeError(f"{text}: expected http://HOST:PORT/v2/models/NAME[/versions/V]")
        return text
    if is_cloud_source(text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: expected {', '.join(CLOUD_NAMES)}, a PATH.onnx, MODULE:CALLABLE or "
                                     "http://HOST:PORT/v2/models/NAME")


def positive_float(text: str) -> float:
    """A finite number > 0 (seconds, rates, scales)."""
    try:
        v = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def float_list(text: str) -> tuple[float, ...]:
    """One number or three, comma-separated (per-channel mean or std)."""
    try:
        vals = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected one number or three, comma-separated, got {text!r}") from None
    if len(vals) not in (1, 3):
        raise argparse.ArgumentTypeError(f"expected one number or three, comma-separated, got {text!r}")
    return vals


def transmit_format(text: str) -> str:
    """``float32``, ``png8`` or ``jpeg:Q`` (:mod:`owsd.transmission`)."""
    from owsd.transmission import parse_format

    try:
        parse_format(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
