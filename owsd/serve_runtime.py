"""The MLServer runtime of ``owsd serve-cloud``: a cloud model answering Open Inference Protocol requests.

:class:`OwsdRuntime` is an ``mlserver.MLModel`` (a custom runtime).  Its ``load`` opens the model
through owsd's own cloud sources (:func:`owsd.cloud_sources.open_cloud`: a built-in name, or a
``PATH.onnx`` with its settings JSON beside it, exactly as ``--cloud PATH.onnx`` reads them) and
declares the model's tensors; its ``predict`` answers KServe V2 requests in the form
:class:`owsd.kserve.KServeCloud` asks for:

* input ``images``: FP32 ``[N, 3, H, W]``, scrambled images in [0, 1].  The model's own input
  handling (size, scale, mean/std, channel order, layout: its settings JSON, or the built-in
  cloud's) is applied here, on the server, so a client needs no settings;
* output ``logits``: FP32 ``[N, K]``, the model's logits.  A model that returns probabilities
  answers their logarithm (a softmax gives them back), so the client's default
  (``output: logits``) fits every served model;
* ``versions``: ``[digest]``, the hash of the model itself and its input handling
  (:attr:`owsd.cloud.Cloud.digest`: the ONNX file's bytes, a torch module's weights).  The
  client keys its cloud-output cache by the endpoint and these versions, so a model replaced
  behind the same URL gets new cache entries; ``platform`` is ``owsd/<kind>``.

The runtime also runs under MLServer's own ``mlserver start`` with a ``model-settings.json``
(``uri``: a built-in cloud name or an ONNX file, relative to the settings file)::

    {"name": "clf", "implementation": "owsd.serve_runtime.OwsdRuntime",
     "parameters": {"uri": "clf.onnx", "extra": {"threads": 2}}}

This module imports without MLServer: the class is built on first use of ``OwsdRuntime``.

Example:
    >>> from owsd.cloud import make_cloud
    >>> cloud = make_cloud("tiny", input_size=8, num_outputs=5)
    >>> inputs, outputs = tensor_metadata(cloud)
    >>> inputs[0]["shape"], outputs[0]["name"], outputs[0]["shape"]
    ([-1, 3, 8, 8], 'logits', [-1, 5])
    >>> answer_logits(cloud, np.full((2, 3, 8, 8), 0.5, np.float32)).shape
    (2, 5)
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any, Optional

import numpy as np
import torch

from owsd.cloud import CLOUD_NAMES, Cloud, _probabilities
from owsd.validation import as_image_batch

#: the tensor names the served model declares (the client reads them from the metadata)
INPUT_NAME, OUTPUT_NAME = "images", "logits"
#: the smallest probability whose logarithm is answered (log of 0 is not a JSON number)
_FLOOR = float(np.finfo(np.float32).tiny)


def open_served_cloud(source: str, *, threads: Optional[int] = None, config: Optional[str] = None) -> Cloud:
    """The cloud ``source`` names: a built-in name or ``PATH.onnx`` (settings from the JSON beside it)."""
    from owsd.cloud_sources import open_cloud  # local: start-up speed of `owsd --help` (onnx, onnxruntime)

    source = str(source)
    if source not in CLOUD_NAMES and not source.lower().endswith(".onnx"):
        raise ValueError(f"MODEL {source!r}: expected {', '.join(CLOUD_NAMES)} or a PATH.onnx (with its settings "
                         "JSON beside it)")
    return open_cloud(source, threads=threads, config=config)


def tensor_metadata(cloud: Cloud) -> tuple[list[dict], list[dict]]:
    """The KServe V2 ``inputs`` and ``outputs`` metadata of a served cloud (``-1``: any batch size)."""
    h, w = cloud.input_size
    return ([{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, 3, h, w]}],
            [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, cloud.num_outputs]}])


def answer_logits(cloud: Cloud, x: np.ndarray) -> np.ndarray:
    """Logits ``(N, K)`` float32 for images ``x`` ``(N, 3, H, W)`` in [0, 1]; a ``ValueError`` says what is wrong."""
    h, w = cloud.input_size
    if x.ndim != 4 or x.shape[1:] != (3, h, w):
        raise ValueError(f"input {INPUT_NAME!r} has shape {list(x.shape)}; this model takes [N, 3, {h}, {w}] "
                         "(scrambled images in [0, 1], NCHW)")
    images = as_image_batch(torch.from_numpy(np.ascontiguousarray(x, np.float32)), name=f"input {INPUT_NAME!r}",
                            channels=3, size=(h, w))
    scores = np.asarray(cloud._logits(images))
    if scores.shape != (len(x), cloud.num_outputs):
        raise ValueError(f"the model answered shape {scores.shape} for {len(x)} images; expected "
                         f"({len(x)}, {cloud.num_outputs})")
    if cloud.output_kind == "logits":
        if not np.isfinite(scores).all():
            raise ValueError(f"cloud {cloud.name!r} returned NaN or infinite scores")
        return scores.astype(np.float32, copy=False)
    p = _probabilities(scores, cloud.output_kind, cloud.name)  # checked: finite, rows sum to 1
    return np.log(np.maximum(p, _FLOOR)).astype(np.float32)


@lru_cache(maxsize=None)
def runtime_class() -> type:
    """Build :class:`OwsdRuntime` (imports MLServer)."""
    from mlserver import MLModel
    from mlserver.codecs import NumpyCodec
    from mlserver.errors import InferenceError
    from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor
    from mlserver.utils import get_model_uri

    class OwsdRuntime(MLModel):
        """An owsd cloud (built-in name or ONNX file) as an MLServer model; see :mod:`owsd.serve_runtime`."""

        cloud: Cloud

        async def load(self) -> bool:
            params = self.settings.parameters
            uri = params.uri if params is not None else None
            if not uri:
                raise ValueError(f"model {self.name!r}: parameters.uri must name the cloud ({', '.join(CLOUD_NAMES)} "
                                 "or a PATH.onnx)")
            source = uri if uri in CLOUD_NAMES else await get_model_uri(self.settings)
            extra: dict[str, Any] = dict(params.extra or {}) if params is not None else {}
            self.cloud = open_served_cloud(source, threads=extra.get("threads"), config=extra.get("config"))
            digest = self.cloud.digest
            if params.version is not None and params.version != digest:
                raise ValueError(f"model {self.name!r}: declared version {params.version} but {source} is model "
                                 f"{digest} (the file changed?)")
            params.version = digest
            inputs, outputs = tensor_metadata(self.cloud)
            self.inputs = [MetadataTensor(**t) for t in inputs]
            self.outputs = [MetadataTensor(**t) for t in outputs]
            self.settings.versions = [digest]
            self.settings.platform = f"owsd/{type(self.cloud).__name__}"
            return True

        async def predict(self, payload: InferenceRequest) -> InferenceResponse:
            if len(payload.inputs) != 1:
                raise InferenceError(f"expected one input {INPUT_NAME!r}, got {len(payload.inputs)}")
            inp = payload.inputs[0]
            if inp.datatype != "FP32":
                raise InferenceError(f"input {inp.name!r} is {inp.datatype}; expected FP32")
            try:
                x = NumpyCodec.decode_input(inp)
                logits = await asyncio.to_thread(answer_logits, self.cloud, x)
            except ValueError as exc:  # a bad request, or a model misdeclared: its reason goes back
                raise InferenceError(str(exc)) from None
            return InferenceResponse(model_name=self.name, model_version=self.version, id=payload.id,
                                     outputs=[NumpyCodec.encode_output(OUTPUT_NAME, logits)])

    OwsdRuntime.__module__ = __name__
    OwsdRuntime.__qualname__ = "OwsdRuntime"
    return OwsdRuntime


def __getattr__(name: str) -> Any:  # PEP 562: ``owsd.serve_runtime.OwsdRuntime`` built on first use
    if name == "OwsdRuntime":
        return runtime_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
