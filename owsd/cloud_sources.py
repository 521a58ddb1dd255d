"""Opening a cloud from what the user names: a built-in name, ``PATH.onnx``, ``MODULE:CALLABLE`` or a URL.

* ``PATH.onnx``: any ONNX classifier (:func:`open_onnx`), its input handling from a
  :class:`~owsd.cloud_interface.CloudInterface` (flags, or the JSON beside the model), checked
  against the model's declared input and output;
* ``MODULE:CALLABLE``: a torch module (an instance, or a class built without arguments) or any
  callable from float images ``(N, 3, H, W)`` to scores ``(N, K)`` (:func:`open_callable`);
* ``http(s)://HOST:PORT/v2/models/NAME``: a model served over the Open Inference Protocol
  (KServe V2), :class:`owsd.kserve.KServeCloud`.

Every cloud's cache key is a hash of the model itself (:attr:`owsd.cloud.Cloud.digest`).

Example:
    >>> is_cloud_source("model.onnx"), is_cloud_source("mypkg.models:net"), is_cloud_source("tiny")
    (True, True, False)
    >>> open_cloud("tiny").name
    'tiny'
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn as nn

from owsd.cloud import CLOUD_NAMES, Cloud, OnnxCloud, TorchCloud, make_cloud, sha256_file
from owsd.cloud_interface import CloudInterface, load_interface
from owsd.kserve import KServeCloud

log = logging.getLogger(__name__)

#: the interface settings :func:`open_cloud` accepts (flags ``--cloud-input-size`` ...)
INTERFACE_KEYS = ("input_size", "layout", "channel_order", "scale", "mean", "std", "output")
#: settings of a served cloud (:class:`owsd.kserve.KServeCloud`)
HTTP_KEYS = ("timeout", "retries", "backoff", "rate_limit", "request_batch")


def is_cloud_source(text: str) -> bool:
    """Whether ``text`` names a model (path, ``MODULE:CALLABLE`` or URL) rather than a built-in name."""
    t = str(text)
    return t.lower().endswith(".onnx") or t.startswith(("http://", "https://")) or (
        ":" in t and not t.startswith(":") and not t.endswith(":") and t not in CLOUD_NAMES)


def import_object(ref: str, *, option: str) -> Any:
    """``module:attr.path`` -> the object, with one-line errors that name ``option``."""
    mod, sep, attr = ref.partition(":")
    if not sep or not mod or not attr:
        raise ValueError(f"{option} expects MODULE:CALLABLE, got {ref!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:  # `owsd` (a console script) lacks the current folder
        sys.path.append(os.getcwd())
    try:
        m = importlib.import_module(mod)
    except ImportError as exc:
        raise ValueError(f"{option}: cannot import module {mod!r} ({exc})") from None
    except SyntaxError as exc:
        raise ValueError(f"{option}: module {mod!r} does not compile ({exc})") from None
    except Exception as exc:  # the user's module raised while importing: their error, one line
        raise ValueError(f"{option}: importing module {mod!r} raised {type(exc).__name__}: {exc}") from None
    obj = m
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{option}: {mod!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{option}: {ref} is not callable")
    return obj


def _split_options(options: dict, *, source: str) -> tuple[dict, dict, dict]:
    """``(interface settings, http settings, the rest)``; ``None`` values dropped."""
    opts = {k: v for k, v in options.items() if v is not None}
    iface = {k: opts.pop(k) for k in INTERFACE_KEYS if k in opts}
    http = {k: opts.pop(k) for k in HTTP_KEYS if k in opts}
    if http and not str(source).startswith(("http://", "https://")):
        raise ValueError(f"--cloud {source}: {', '.join(sorted(http))} apply to a served cloud (http://...) only")
    return iface, http, opts


def open_cloud(source: str | Path, *, config: Optional[str | Path] = None, threads: Optional[int] = None,
               device: str = "cpu", **options: Any) -> Cloud:
    """The cloud ``source`` names (see the module doc); ``options``: interface and HTTP settings."""
    source = str(source)
    iface, http, rest = _split_options(options, source=source)
    if rest:
        raise TypeError(f"open_cloud: unknown option(s) {sorted(rest)}")
    if source in CLOUD_NAMES:
        if iface or config is not None:
            raise ValueError(f"--cloud {source}: a built-in cloud has its own input handling; "
                             f"{', '.join(sorted(iface)) or '--cloud-config'} apply to your own model")
        return make_cloud(source, **({"threads": threads} if source == "efficientnet-lite0" and threads else {}),
                          **({"device": device} if source == "tiny" else {}))
    if source.startswith(("http://", "https://")):
        ci = load_interface(None, config=config, **iface)
        return KServeCloud(source, interface=ci, **http)
    if source.lower().endswith(".onnx"):
        return open_onnx(source, interface=load_interface(source, config=config, **iface), threads=threads)
    if ":" in source:
        return open_callable(source, interface=load_interface(None, config=config, **iface), device=device)
    raise ValueError(f"unknown cloud {source!r}; expected one of {CLOUD_NAMES}, a PATH.onnx, MODULE:CALLABLE "
                     "or http://HOST:PORT/v2/models/NAME")


def _onnx_shape(value_info) -> list:
    return [d if isinstance(d, int) else None for d in (value_info.shape or [])]


def open_onnx(path: str | Path, *, interface: CloudInterface = CloudInterface(),
              threads: Optional[int] = None) -> OnnxCloud:
    """Any ONNX classifier, checked: one float image input (3 channels), one ``(N, K)`` output.

    ``threads``: onnxruntime's intra-op threads (default :func:`owsd.threads.cap`).
    """
    path = Path(path)
    where = f"--cloud {path}"
    if not path.is_file():
        raise FileNotFoundError(2, "ONNX model not found", str(path))
    probe = OnnxCloud(path, name=path.stem, input_size=(1, 1), threads=1)
    inputs, outputs = probe.session.get_inputs(), probe.session.get_outputs()
    if len(inputs) != 1:
        raise ValueError(f"{where}: the model has {len(inputs)} inputs ({[i.name for i in inputs]}); expected one image "
                         "input")
    if inputs[0].type != "tensor(float)":
        raise ValueError(f"{where}: its input {inputs[0].name!r} is {inputs[0].type}; expected tensor(float)")
    size = interface.resolve_size(_onnx_shape(inputs[0]), where=where)
    oshape = _onnx_shape(outputs[0])
    if len(oshape) != 2:
        raise ValueError(f"{where}: its output {outputs[0].name!r} has shape {outputs[0].shape}; expected (N, K) "
                         "class scores")
    cloud = OnnxCloud(path, name=path.stem, input_size=size, preprocess=interface.preprocess, threads=threads,
                      output_kind=interface.output, preprocess_tag=interface.tag())
    k = oshape[1]
    if k is None:  # a dynamic class count: ask the model once
        k = int(cloud.session.run(None, {cloud.input_name: interface.preprocess(
            torch.zeros(1, 3, *size)).numpy()})[0].shape[-1])
    if k < 2:
        raise ValueError(f"{where}: its output {outputs[0].name!r} has {k} class score(s); a classifier has at least 2")
    cloud.num_outputs = int(k)
    log.info("cloud %s: ONNX %s, %dx%d input, %d outputs (%s), %d onnxruntime threads", cloud.name, path,
             size[0], size[1], k, interface.output, cloud.threads)
    return cloud


class CallableCloud(Cloud):
    """A cloud backed by any callable: float images ``(N, 3, H, W)`` -> scores ``(N, K)``."""

    def __init__(self, fn: Callable, *, name: str, input_size: tuple[int, int], interface: CloudInterface,
                 identity: str) -> None:
        self.fn, self.name, self.input_size, self.interface = fn, name, tuple(input_size), interface
        self.output_kind = interface.output
        self.num_outputs = self._probe()
        # the source file does not see weights loaded from elsewhere: the outputs on a fixed,
        # seeded probe batch join the cache key, so a retrained model never reuses stale outputs
        probe = torch.rand(2, 3, *self.input_size, generator=torch.Generator().manual_seed(0))
        answer = hashlib.sha256(np.ascontiguousarray(self._call(probe), np.float32).tobytes()).hexdigest()
        self._digest_parts = (identity, interface.tag(), answer)

    def _call(self, images: torch.Tensor) -> np.ndarray:
        try:
            return np.asarray(self._logits(images))
        except Exception as exc:  # the user's model failed on a well-formed batch: say so in one line
            raise ValueError(f"--cloud {self.name}: the callable raised {type(exc).__name__} on a batch of shape "
                             f"{tuple(images.shape)}: {exc}") from None

    def _probe(self) -> int:
        s = self._call(torch.zeros(1, 3, *self.input_size))
        if s.ndim != 2 or s.shape[0] != 1 or s.shape[1] < 2:
            raise ValueError(f"--cloud {self.name}: returned shape {s.shape} for one image; expected (1, K) scores, K >= 2")
        return int(s.shape[1])

    def _logits(self, images: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            y = self.fn(self.interface.preprocess(images))
        return (y.detach().float().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y, np.float64))


def _callable_identity(obj: Any, ref: str) -> str:
    """What identifies a plain callable's model: its reference and its source file's bytes."""
    h = hashlib.sha256(ref.encode())
    try:
        src = inspect.getsourcefile(obj)
    except TypeError:
        src = None
    if src and Path(src).is_file():
        h.update(sha256_file(Path(src)).encode())
    else:
        log.warning("--cloud %s: cannot read its source file; its cached outputs are keyed by its name", ref)
    return h.hexdigest()


def open_callable(ref: str, *, interface: CloudInterface = CloudInterface(), device: str = "cpu") -> Cloud:
    """``MODULE:CALLABLE``: a torch module (instance or argument-free class) or any scoring callable."""
    obj = import_object(ref, option="--cloud")
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        try:
            obj = obj()
        except TypeError as exc:
            raise ValueError(f"--cloud {ref}: cannot build the module without arguments ({exc}); point at an "
                             "instance or a function returning scores") from None
    size = interface.input_size or (224, 224)
    if interface.input_size is None:
        log.info("--cloud %s: no input size given; assuming 224x224 (--cloud-input-size)", ref)
    name = ref.rsplit(":", 1)[1]
    if isinstance(obj, nn.Module):
        try:
            with torch.inference_mode():
                probe = obj.eval()(interface.preprocess(torch.zeros(1, 3, *size)))
        except Exception as exc:  # e.g. a wrong --cloud-input-size for this network
            raise ValueError(f"--cloud {ref}: the module raised {type(exc).__name__} on one {size[0]}x{size[1]} "
                             f"image: {exc}") from None
        if not isinstance(probe, torch.Tensor) or probe.ndim != 2 or probe.shape[1] < 2:
            raise ValueError(f"--cloud {ref}: the module returned {getattr(probe, 'shape', type(probe).__name__)} for "
                             "one image; expected (1, K) scores, K >= 2")
        return TorchCloud(obj, name=name, input_size=size, num_outputs=int(probe.shape[1]),
                          preprocess=interface.preprocess, device=device, output_kind=interface.output,
                          preprocess_tag=interface.tag())
    return CallableCloud(obj, name=name, input_size=size, interface=interface, identity=_callable_identity(obj, ref))
