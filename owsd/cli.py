"""The ``owsd`` command line.

Subcommands of the scheme: ``run`` (the utility pipeline), ``keygen``, ``scramble``, and
``serve-cloud`` (a cloud model served over the Open Inference Protocol: :mod:`owsd.serve`).
Other parts of the toolkit (attacks, audit, benchmarks), and any installed package, add their
own subcommands through a ``register(subparsers)`` function declared as an entry point of the
group :data:`COMMANDS_GROUP` (``setup.cfg``), so the scheme never names the layers above it.  Every
subcommand runs under one error policy (:mod:`owsd.errors`): a user error is one line on
stderr and exit code 2, an internal error exit code 1 with a pointer to ``-v``, Ctrl-C exit
code 130.

Example:
    >>> main(["run", "--epochs", "0"])
    2
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

# Imports of the project's modules sit inside the functions, for start-up speed: `owsd` builds every
# command's parser at start (entry points), and the modules a command runs (torch, the attacks) load
# only when it runs.
from owsd import argtypes
from owsd import threads as owsd_threads
from owsd.errors import EXIT_INTERRUPTED, EXIT_USAGE, OneLineArgumentParser, UsageError, one_line_warnings, run_command

log = logging.getLogger("owsd")

COMMANDS_GROUP = "owsd.commands"
"""Entry-point group of the ``register(subparsers)`` functions that add subcommands."""


def add_key_source(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--key FILE | --preset NAME | --spec SPEC.json`` and ``--seed S`` (shared by subcommands)."""
    from owsd.presets import PRESETS

    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--key", type=argtypes.input_file, help="key file (JSON, from `owsd keygen`)")
    g.add_argument("--preset", choices=sorted(PRESETS), help="named scrambler spec (a fresh key is drawn for it)")
    g.add_argument("--spec", type=argtypes.input_file, help="scrambler spec JSON (a fresh key is drawn for it)")
    p.add_argument("--seed", type=argtypes.nonnegative_int,
                   help="derive the key from this seed (experiments only: NOT secret)")


def key_is_fixed(a: argparse.Namespace) -> bool:
    """True when rerunning the command reuses the same key (so its cached work resumes)."""
    return a.key is not None or a.seed is not None or getattr(a, "scrambler", None) is not None


def _cmd_run(a: argparse.Namespace) -> int:
    from owsd.pipeline import RunConfig, run_pipeline

    if a.key is not None and a.seed is not None:
        raise UsageError("--key and --seed are exclusive (--seed derives a key)")
    from owsd.cli_options import cloud_options

    if a.cloud == "none":
        raise UsageError("--cloud none: `owsd run` measures the utility through a cloud; name one")
    cfg = RunConfig(out=a.out, dataset=a.dataset, data_dir=a.data_dir, image_size=a.image_size, cloud=a.cloud,
                    cloud_options=cloud_options(a), cloud_resize=a.cloud_resize, transmit=a.transmit,
                    output_sizes=a.output_sizes,
                    n_train=a.train, n_test=a.test, key=a.key, seed=a.seed, preset=a.preset or "default",
                    spec=a.spec, encoder=a.encoder, classifier=a.classifier, decoder=a.decoder, epochs=a.epochs,
                    cache_dir=a.cache_dir, device=a.device, verbose=not a.quiet)
    res = run_pipeline(cfg)
    acc = res["accuracy"]
    lines = [f"dataset {res['dataset']}  cloud {res['cloud']}  train {res['n_train']}  test {res['n_test']}  "
             f"key {res['key_fingerprint']}",
             f"  plaintext        {acc['plaintext']:.4f}", f"  embedding only   {acc['embedding_only']:.4f}"]
    for k in res["output_sizes"]:
        lines.append(f"  top-{k:<5d} cloud only {acc['cloud_only'][str(k)]:.4f}   "
                     f"cloud+embedding {acc['cloud_plus_embedding'][str(k)]:.4f}")
    lines.append(f"  wrote {Path(a.out) / 'results.json'} and utility.png")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _cmd_keygen(a: argparse.Namespace) -> int:
    from owsd.keys import generate_key
    from owsd.presets import get_preset
    from owsd.spec import ScramblerSpec

    spec = ScramblerSpec.load(a.spec) if a.spec else get_preset(a.preset)
    if a.out.exists() and not a.force:
        raise UsageError(f"--out {a.out}: exists (pass --force to overwrite a key)")
    key = generate_key(spec, seed=a.seed)
    key.save(a.out)
    sys.stdout.write(f"key {key.fingerprint} ({spec.name}, {spec.num_parameters()} secret weights) -> {a.out}\n")
    return 0


def _cmd_scramble(a: argparse.Namespace) -> int:
    import torch

    from owsd.io import atomic_write_bytes
    from owsd.keys import Key
    from owsd.npyfile import read_array
    from owsd.scrambler import GREY_LEVEL, Scrambler
    from owsd.validation import as_image_batch, as_matrix

    key = Key.load(a.key)
    scr = Scrambler(key)
    if a.embeddings:
        if a.inp.is_dir():
            raise UsageError(f"--in {a.inp}: a folder; --embeddings reads a .npy or .npz of embeddings")
        arr = read_array(a.inp)
    else:
        from owsd.userdata import load_images

        arr = load_images(a.inp, image_size=a.image_size)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise UsageError(f"--in {a.inp}: holds no rows (shape {arr.shape}): nothing to scramble")
    if a.embeddings:
        emb = as_matrix(arr, name=f"--in {a.inp}", cols=key.spec.embedding_dim)
    else:
        from owsd.encoder import Encoder

        if a.encoder is None:
            raise UsageError("images need --encoder ENCODER.npz (or pass --embeddings)")
        enc = Encoder.load(a.encoder)
        x = as_image_batch(arr, name=f"--in {a.inp}")
        if x[0].numel() != enc.input_dim:
            raise UsageError(f"--in {a.inp}: images of shape {tuple(x.shape[1:])} ({x[0].numel()} values) but the "
                             f"encoder {a.encoder} was fitted on images of {enc.input_dim} values (same channels and "
                             "size as its training images; --image-size N resizes)")
        emb = enc.encode(x.reshape(len(x), -1).numpy())
    if a.uint8:
        levels = scr.signal_grey_levels(emb)
        if levels < 1.0:
            raise UsageError(f"--uint8: spec {key.spec.name!r} puts a signal of {levels:.2f} grey levels (pixel std "
                             f"{levels * GREY_LEVEL:.4f}) into its images and 8-bit rounding adds an error of std "
                             f"{GREY_LEVEL / 12 ** 0.5:.4f}: it would erase most of it; write float32 (drop --uint8)")
    out = scr.scramble(emb, batch_size=a.batch_size, verbose=not a.quiet,
                       out_dtype=torch.uint8 if a.uint8 else torch.float32)
    import io

    buf = io.BytesIO()
    np.save(buf, out, allow_pickle=False)
    atomic_write_bytes(a.out, buf.getvalue())
    sys.stdout.write(f"scrambled {len(out)} inputs with key {key.fingerprint} -> {a.out} {out.shape} {out.dtype}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from owsd import __version__
    from owsd.cli_options import add_cloud_options, add_data_options

    p = OneLineArgumentParser(prog="owsd", description="One Way Scrambling by Deconvolution: scheme, attacks, audits")
    p.add_argument("--version", action="version", version=f"owsd-toolkit {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="the scheme end to end: utility vs cloud output size")
    add_data_options(r)
    add_cloud_options(r)
    r.add_argument("--transmit", type=argtypes.transmit_format, default="float32",
                   help="how the scrambled images travel: float32 (default), png8, or jpeg:Q (quality 1..100)")
    r.add_argument("--output-sizes", type=argtypes.int_list, default=(10, 100, 1000), help="e.g. 10,100,1000")
    r.add_argument("--train", type=argtypes.positive_int, help="training images (default: all)")
    r.add_argument("--test", type=argtypes.positive_int, help="test images (default: all)")
    add_key_source(r)
    r.add_argument("--encoder", default="pca", choices=("pca", "autoencoder"))
    r.add_argument("--classifier", default="mlp", choices=("mlp", "logreg"))
    r.add_argument("--decoder", default="embedding", choices=("embedding", "none"),  # owsd.internal.DECODERS
                   help="internal model: decode the embedding from the cloud outputs first (default), or not")
    r.add_argument("--epochs", type=argtypes.positive_int, default=30)
    r.add_argument("--cache-dir", type=argtypes.output_dir,
                   help="cloud-output cache (default $OWSD_CACHE or ~/.cache/owsd)")
    r.add_argument("--device", type=argtypes.device, default="cpu")
    r.add_argument("--out", type=argtypes.output_dir, default=Path("owsd-run"))
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=_cmd_run, resumable=key_is_fixed)

    from owsd.presets import PRESETS

    k = sub.add_parser("keygen", help="draw a new secret key for a preset or spec")
    g = k.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset", choices=sorted(PRESETS))
    g.add_argument("--spec", type=argtypes.input_file)
    k.add_argument("--seed", type=argtypes.nonnegative_int, help="derive from a seed (experiments only: NOT secret)")
    k.add_argument("--out", type=argtypes.output_file, required=True)
    k.add_argument("--force", action="store_true")
    k.set_defaults(func=_cmd_keygen)

    s = sub.add_parser("scramble", help="scramble images (or embeddings) with a key: the client's job")
    s.add_argument("--key", type=argtypes.input_file, required=True)
    s.add_argument("--in", dest="inp", type=argtypes.input_path, required=True,
                   help="images: an image file, a folder of images, .npy (N,C,H,W)/(N,H,W) or .npz (x: N,H,W[,C]); "
                        "or embeddings (.npy) with --embeddings")
    s.add_argument("--image-size", type=argtypes.positive_int,
                   help="resize the images to NxN first (to the size the encoder was fitted on)")
    s.add_argument("--out", type=argtypes.output_file, required=True)
    s.add_argument("--embeddings", action="store_true", help="INPUT holds embeddings (N, embedding_dim)")
    s.add_argument("--encoder", type=argtypes.input_file, help="encoder .npz (from `owsd run`) for image input")
    s.add_argument("--uint8", action="store_true",
                   help="write uint8 images (default float32 in [0, 1]); refused when it would erase the signal")
    s.add_argument("--batch-size", type=argtypes.positive_int, default=64)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_scramble)

    from owsd.serve import add_parser as add_serve_parser  # local: start-up speed (built with the parser)

    add_serve_parser(sub)  # serve-cloud: a cloud model behind MLServer (the `serve` extra)

    for ep in sorted(importlib.metadata.entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        ep.load()(sub)
    for cmd in sub.choices.values():  # --threads on every command (those with their own keep theirs)
        if "--threads" not in cmd._option_string_actions:
            cmd.add_argument("--threads", dest="thread_cap", type=argtypes.positive_int, default=None,
                             help="most threads any step may use (default: the cores this process may use; "
                                  "small steps always run on one)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` and run the subcommand under the error policy; return the exit code."""
    try:
        parser = build_parser()
        a = parser.parse_args(argv)
        if a.command is None:  # `owsd` alone: the main job on the built-in data
            a = parser.parse_args(["run", *(argv or [])])
    except SystemExit as exc:  # --help, --version, or a one-line argument error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("\nowsd: interrupted\n")
        return EXIT_INTERRUPTED
    owsd_threads.set_cap(getattr(a, "thread_cap", None) or getattr(a, "threads", None))
    level = logging.WARNING - 10 * min(2, a.verbose + (1 if a.command in ("run",) else 0))
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    show = warnings.showwarning
    warnings.showwarning = one_line_warnings(f"owsd {a.command}")
    try:
        return run_command(a.func, a)
    finally:
        warnings.showwarning = show


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
