"""The data and cloud options shared by ``owsd run``, ``owsd audit`` and other subcommands.

``--dataset`` (a built-in name or a path), ``--data-dir``, ``--image-size``; ``--cloud`` (a
built-in name, ``PATH.onnx``, ``MODULE:CALLABLE`` or a KServe V2 URL) with the model's input
settings (``--cloud-config JSON`` or the ``--cloud-*`` flags), onnxruntime threads, HTTP
settings and what to do with a cloud of another input size.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_cloud_options(p)
    >>> a = p.parse_args(["--cloud", "tiny", "--cloud-timeout", "5"])
    >>> cloud_options(a)
    {'timeout': 5.0}
"""

from __future__ import annotations

import argparse

from owsd import argtypes

#: flag dest -> :func:`owsd.cloud_sources.open_cloud` keyword
_OPTION_KEYS = {"cloud_config": "config", "cloud_input_size": "input_size", "cloud_layout": "layout",
                "cloud_channel_order": "channel_order", "cloud_scale": "scale", "cloud_mean": "mean",
                "cloud_std": "std", "cloud_output": "output", "cloud_threads": "threads",
                "cloud_timeout": "timeout", "cloud_retries": "retries", "cloud_rate_limit": "rate_limit",
                "cloud_request_batch": "request_batch"}


def add_data_options(p: argparse.ArgumentParser, *, default: str = "digits") -> None:
    """``--dataset NAME|PATH``, ``--data-dir`` and ``--image-size``."""
    p.add_argument("--dataset", default=default, type=argtypes.dataset_source,
                   help="a built-in dataset, or your own: a folder with one subfolder of images per class "
                        "(any format Pillow reads), or an .npz with x (N,H,W[,C]) and y (N,)")
    p.add_argument("--data-dir", type=argtypes.input_dir,
                   help="folder holding a built-in dataset (not digits; not with --dataset PATH)")
    p.add_argument("--image-size", type=argtypes.positive_int,
                   help="resize every image to NxN (bilinear; default: the data's own size)")


def add_cloud_options(p: argparse.ArgumentParser, *, default: str = "tiny", allow_none: bool = False) -> None:
    """``--cloud`` and the settings of your own cloud model."""
    p.add_argument("--cloud", default=default, type=argtypes.cloud_source,
                   help="tiny, efficientnet-lite0" + (", none" if allow_none else "") +
                        ", PATH.onnx, MODULE:CALLABLE (torch module or scoring function), or "
                        "http://HOST:PORT/v2/models/NAME (KServe V2 / Open Inference Protocol)")
    g = p.add_argument_group("your own cloud model (PATH.onnx, MODULE:CALLABLE, URL)")
    g.add_argument("--cloud-config", type=argtypes.input_file,
                   help="JSON of the model's input settings (default: MODEL.json beside an ONNX file)")
    g.add_argument("--cloud-input-size", type=argtypes.positive_int, help="model input size NxN")
    g.add_argument("--cloud-layout", choices=("NCHW", "NHWC"))
    g.add_argument("--cloud-channel-order", choices=("RGB", "BGR"))
    g.add_argument("--cloud-scale", type=argtypes.positive_float, help="pixel range the model wants: 1 or 255")
    g.add_argument("--cloud-mean", type=argtypes.float_list, help="per-channel mean (after scale), e.g. 0.485,0.456,0.406")
    g.add_argument("--cloud-std", type=argtypes.float_list, help="per-channel std (after scale)")
    g.add_argument("--cloud-output", choices=("logits", "probabilities"), help="what the model returns")
    g.add_argument("--cloud-resize", choices=("bilinear", "refuse"), default="bilinear",
                   help="a model of another input size: resize the scrambled images (as a service would) or refuse")
    g.add_argument("--cloud-threads", type=argtypes.positive_int,
                   help="onnxruntime threads of an ONNX cloud (default: --threads, or the usable cores)")
    g.add_argument("--cloud-timeout", type=argtypes.positive_float, help="served cloud: seconds per request (30)")
    g.add_argument("--cloud-retries", type=argtypes.nonnegative_int, help="served cloud: retries with backoff (3)")
    g.add_argument("--cloud-rate-limit", type=argtypes.positive_float, help="served cloud: most requests a second")
    g.add_argument("--cloud-request-batch", type=argtypes.positive_int, help="served cloud: images per request (16)")


def cloud_options(a: argparse.Namespace) -> dict:
    """The :func:`owsd.cloud_sources.open_cloud` keywords the user set (unset flags left out)."""
    out = {}
    for dest, key in _OPTION_KEYS.items():
        v = getattr(a, dest, None)
        if v is not None:
            out[key] = str(v) if key == "config" else v
    return out


def cloud_flags(options: dict, resize: str = "bilinear") -> list[str]:
    """The ``--cloud-*`` flags that give ``options`` (:func:`cloud_options`'s keywords) and ``resize``.

    Example:
        >>> cloud_flags({"mean": (0.5, 0.4, 0.3), "timeout": 5.0}, "refuse")
        ['--cloud-mean', '0.5,0.4,0.3', '--cloud-timeout', '5.0', '--cloud-resize', 'refuse']
    """
    flags = {key: "--" + dest.replace("_", "-") for dest, key in _OPTION_KEYS.items()}
    out: list[str] = []
    for key, v in (options or {}).items():
        out += [flags[key], ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)]
    return out + (["--cloud-resize", resize] if resize != "bilinear" else [])

