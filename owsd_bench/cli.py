"""``owsd bench`` (registered through the ``owsd.commands`` entry point) and its stand-alone twin.

:func:`register` adds the subcommand to ``owsd``; :func:`main` is the same command as a
script (``benchmarks/bench_he_vs_owsd.py``).  Both print the Markdown table and, with
``--json``, write the result document atomically.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_arguments(p)
    >>> cfg = config_from_args(p.parse_args(["--cloud", "tiny", "--he-images", "3", "--quiet"]))
    >>> cfg.clouds, cfg.he_images, cfg.verbose
    (('tiny',), 3, False)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from owsd.argtypes import nonnegative_int, positive_int
from owsd.cloud import CLOUD_NAMES
from owsd.io import atomic_write_json
from owsd_bench.config import BenchConfig
from owsd_bench.report import markdown_table
from owsd_bench.run import run_benchmark

log = logging.getLogger(__name__)


def _cloud_list(text: str) -> tuple[str, ...]:
    vals = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in vals if v not in CLOUD_NAMES]
    if not vals or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {CLOUD_NAMES}, got {text!r}")
    return vals


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``owsd bench`` (shared with ``benchmarks/bench_he_vs_owsd.py``)."""
    d = BenchConfig()
    pos = positive_int
    p.add_argument("--data-dir", type=Path, help="folder holding mnist/ (IDX); without it: sklearn digits, noted")
    p.add_argument("--json", type=Path, help="write the results here (atomically)")
    p.add_argument("--he-images", type=pos, default=d.he_images, help=f"test images per HE round ({d.he_images})")
    p.add_argument("--he-batch", type=nonnegative_int, default=d.he_batch,
                   help="test images packed along the CKKS slots for the amortized HE baseline, at most 4,096 "
                        "(0: not run; one batch costs the same however full: about 10 minutes for MNIST here)")
    p.add_argument("--owsd-images", type=pos, default=d.owsd_images,
                   help=f"test images per OWSD timing round ({d.owsd_images})")
    p.add_argument("--repeats", type=pos, default=d.repeats, help=f"timing rounds ({d.repeats})")
    p.add_argument("--train", type=pos, default=d.train, help=f"training images for the internal model ({d.train})")
    p.add_argument("--test", type=pos, default=d.test, help=f"test images for OWSD accuracy ({d.test})")
    p.add_argument("--cloud", type=_cloud_list, default=d.clouds,
                   help="comma-separated clouds, the first is the headline (efficientnet-lite0,tiny)")
    p.add_argument("--he-epochs", type=pos, default=d.he_epochs, help=f"HE network training epochs ({d.he_epochs})")
    p.add_argument("--he-train", type=pos, help="training images for the HE network (default: all)")
    p.add_argument("--epochs", type=pos, default=d.epochs, help=f"internal model epochs ({d.epochs})")
    p.add_argument("--batch-size", type=pos, default=d.batch_size, help=f"OWSD batch size ({d.batch_size})")
    p.add_argument("--topk", type=pos, default=d.topk, help=f"k for the top-k reply size ({d.topk})")
    p.add_argument("--preset", default=d.preset, help="scrambler preset (default: 'default')")
    p.add_argument("--seed", type=nonnegative_int, default=d.seed,
                   help="seed of the (non-secret, experiment) key and subsets")
    p.add_argument("--cache-dir", type=Path, help="cache of cloud outputs and the HE network "
                                                  "(default $OWSD_CACHE or ~/.cache/owsd)")
    p.add_argument("--transmit", choices=("float32", "uint8"), default=d.transmit,
                   help="what the client sends: float32 tensors (the scheme's setting) or uint8 pixels")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(a: argparse.Namespace) -> BenchConfig:
    """The :class:`BenchConfig` of parsed ``owsd bench`` arguments."""
    return BenchConfig(data_dir=a.data_dir, he_images=a.he_images, he_batch=a.he_batch, owsd_images=a.owsd_images,
                       repeats=a.repeats,
                       train=a.train, test=a.test, clouds=tuple(a.cloud), he_epochs=a.he_epochs, he_train=a.he_train,
                       epochs=a.epochs, batch_size=a.batch_size, topk=a.topk, preset=a.preset, seed=a.seed,
                       cache_dir=a.cache_dir, verbose=not a.quiet, transmit=a.transmit)


def _cmd_bench(a: argparse.Namespace, *, command: Optional[Sequence[str]] = None) -> int:
    try:
        res = run_benchmark(config_from_args(a), command=command)
    except ImportError as exc:  # TenSEAL missing: say so, no traceback
        sys.stderr.write(f"owsd bench: error: {exc}\n")
        return 2
    if a.json is not None:
        atomic_write_json(a.json, res)
    sys.stdout.write(markdown_table(res))
    if a.json is not None:
        sys.stdout.write(f"wrote {a.json}\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``owsd bench`` to the CLI (the ``bench`` entry point of the ``owsd.commands`` group)."""
    p = subparsers.add_parser("bench", help="OWSD against homomorphic-encryption inference: time, bytes, accuracy")
    add_arguments(p)
    p.set_defaults(func=_cmd_bench)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Stand-alone entry point (``benchmarks/bench_he_vs_owsd.py``)."""
    p = argparse.ArgumentParser(prog="bench_he_vs_owsd", description="The price of privacy, measured: OWSD "
                                                                     "against homomorphic-encryption inference.")
    add_arguments(p)
    p.add_argument("-v", "--verbose", action="count", default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(2, a.verbose),
                        format="%(levelname)s %(name)s: %(message)s")
    command = None if argv is None else [sys.argv[0], *argv]
    try:
        return _cmd_bench(a, command=command)
    except (ValueError, FileNotFoundError) as exc:
        sys.stderr.write(f"bench: error: {exc}\n")
        return 2
