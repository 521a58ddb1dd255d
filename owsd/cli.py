"""The ``owsd`` command line.

Subcommands of the scheme: ``run`` (the utility pipeline), ``keygen``, ``scramble``.
Other parts of the toolkit (attacks, audit, benchmarks) add their own subcommands through
a ``register(subparsers)`` function in the modules listed in :data:`PLUGINS`.

Example:
    >>> main(["keygen", "--help"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

log = logging.getLogger("owsd")

PLUGINS = ("attacks.cli", "analysis.cli", "owsd.bench")
"""Modules that may add subcommands (skipped while they do not exist)."""


def _int_list(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return vals


def add_key_source(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--key FILE | --preset NAME | --spec SPEC.json`` and ``--seed S`` (shared by subcommands)."""
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--key", type=Path, help="key file (JSON, from `owsd keygen`)")
    g.add_argument("--preset", help="named scrambler spec (a fresh key is drawn for it)")
    g.add_argument("--spec", type=Path, help="scrambler spec JSON (a fresh key is drawn for it)")
    p.add_argument("--seed", type=int, help="derive the key from this seed (experiments only: NOT secret)")


def _cmd_run(a: argparse.Namespace) -> int:
    from owsd.pipeline import RunConfig, run_pipeline

    if a.key is not None and a.seed is not None:
        raise SystemExit("owsd run: --key and --seed are exclusive")
    cfg = RunConfig(out=a.out, dataset=a.dataset, data_dir=a.data_dir, cloud=a.cloud, output_sizes=a.output_sizes,
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
        raise SystemExit(f"owsd keygen: {a.out} exists (pass --force to overwrite a key)")
    key = generate_key(spec, seed=a.seed)
    key.save(a.out)
    sys.stdout.write(f"key {key.fingerprint} ({spec.name}, {spec.num_parameters()} secret weights) -> {a.out}\n")
    return 0


def _cmd_scramble(a: argparse.Namespace) -> int:
    import torch

    from owsd.io import atomic_write_bytes
    from owsd.keys import Key
    from owsd.scrambler import Scrambler

    key = Key.load(a.key)
    scr = Scrambler(key)
    try:
        arr = np.load(a.inp, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"owsd scramble: cannot read {a.inp} as a .npy array ({exc})") from None
    if a.embeddings:
        emb = arr
    else:
        from owsd.encoder import Encoder
        from owsd.validation import as_image_batch

        if a.encoder is None:
            raise SystemExit("owsd scramble: images need --encoder ENCODER.npz (or pass --embeddings)")
        enc = Encoder.load(a.encoder)
        emb = enc.encode(as_image_batch(arr, name=str(a.inp)).reshape(len(arr), -1).numpy())
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
    from owsd.cloud import CLOUD_NAMES
    from owsd.data import DATASETS

    p = argparse.ArgumentParser(prog="owsd", description="One Way Scrambling by Deconvolution: scheme, attacks, audits")
    p.add_argument("--version", action="version", version=f"owsd-toolkit {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="the scheme end to end: utility vs cloud output size")
    r.add_argument("--dataset", default="digits", choices=DATASETS)
    r.add_argument("--data-dir", type=Path, help="folder holding the dataset (not needed for digits)")
    r.add_argument("--cloud", default="tiny", choices=CLOUD_NAMES)
    r.add_argument("--output-sizes", type=_int_list, default=(10, 100, 1000), help="e.g. 10,100,1000")
    r.add_argument("--train", type=int, help="training images (default: all)")
    r.add_argument("--test", type=int, help="test images (default: all)")
    add_key_source(r)
    r.add_argument("--encoder", default="pca", choices=("pca", "autoencoder"))
    r.add_argument("--classifier", default="mlp", choices=("mlp", "logreg"))
    r.add_argument("--decoder", default="embedding", choices=("embedding", "none"),  # owsd.internal.DECODERS
                   help="internal model: decode the embedding from the cloud outputs first (default), or not")
    r.add_argument("--epochs", type=int, default=30)
    r.add_argument("--cache-dir", type=Path, help="cloud-output cache (default $OWSD_CACHE or ~/.cache/owsd)")
    r.add_argument("--device", default="cpu")
    r.add_argument("--out", type=Path, default=Path("owsd-run"))
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=_cmd_run)

    k = sub.add_parser("keygen", help="draw a new secret key for a preset or spec")
    g = k.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset")
    g.add_argument("--spec", type=Path)
    k.add_argument("--seed", type=int, help="derive from a seed (experiments only: NOT secret)")
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--force", action="store_true")
    k.set_defaults(func=_cmd_keygen)

    s = sub.add_parser("scramble", help="scramble images (or embeddings) with a key: the client's job")
    s.add_argument("--key", type=Path, required=True)
    s.add_argument("--in", dest="inp", type=Path, required=True, help=".npy of images (N,C,H,W)/(N,H,W) or embeddings")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--embeddings", action="store_true", help="INPUT holds embeddings (N, embedding_dim)")
    s.add_argument("--encoder", type=Path, help="encoder .npz (from `owsd run`) for image input")
    s.add_argument("--uint8", action="store_true", help="write uint8 images (default float32 in [0, 1])")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_scramble)

    for mod in PLUGINS:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name and mod.startswith(exc.name):
                continue
            raise
        if hasattr(m, "register"):
            m.register(sub)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(2, a.verbose + (1 if a.command in ("run",) else 0))
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if a.command is None:  # `owsd` alone: the main job on the built-in data
        a = parser.parse_args(["run", *(argv or [])])
    try:
        return int(a.func(a) or 0)
    except (ValueError, FileNotFoundError, TypeError) as exc:
        log.debug("error", exc_info=True)
        sys.stderr.write(f"owsd {a.command}: error: {exc}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
