"""FLOPs of an ONNX model, counted from its graph: what a cloud's images cost at the least.

:func:`count_flops` runs the model once on a zero image (onnxruntime, every matrix node's
input and output made a graph output, so their shapes are measured) and adds, per node,
``2 x`` the multiply-adds of every ``Conv`` (output elements x input channels per group x
kernel area), ``Gemm`` and ``MatMul`` (M x N x K), and ``ConvTranspose`` (input elements x
output channels per group x kernel area).  Elementwise nodes (activations, batch-norm
folded or not, additions, pooling, softmax) are left out: they are memory-bound and a few
percent of the total for a CNN.  This is the usual "FLOPs = 2 x MACs" convention; papers
that quote "FLOPs" for EfficientNet (0.39 G for B0) count multiply-adds.

Example:
    >>> import onnx
    >>> from onnx import helper, TensorProto
    >>> w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], [0.0] * 108)
    >>> node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    >>> g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 8, 8])],
    ...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w])
    >>> count_flops(helper.make_model(g))["flops"]  # 2 x (4 x 8 x 8 outputs) x (3 x 3 x 3 taps)
    13824
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Union

import numpy as np
import onnx
import onnxruntime as ort

log = logging.getLogger(__name__)


def _shapes(model: onnx.ModelProto, names: list[str]) -> dict[str, list[int]]:
    """The shapes of ``names`` for one image, measured: the model run once by onnxruntime on zeros
    with those tensors added as outputs (static inference stops at dynamic pads and reshapes)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name: [int(d) for d in i.dims] for i in m.graph.initializer}
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in inits and n not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
            have.add(n)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every named tensor
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for inp in sess.get_inputs():
        if inp.name in inits:
            continue
        shape = [1 if not isinstance(d, int) else d for d in inp.shape]
        feeds[inp.name] = np.zeros(shape, dtype=np.float32)
    outs = [o.name for o in sess.get_outputs()]
    shapes = {n: list(v.shape) for n, v in zip(outs, sess.run(outs, feeds))}
    shapes.update(inits)
    return shapes


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return a.i if a.type == a.INT else list(a.ints)
    return default


def count_flops(model: Union[str, Path, onnx.ModelProto]) -> dict:
    """``{"flops": int, "by_op": {op: flops}, "uncounted_nodes": int}`` for one image (batch 1).

    ``model``: an ``onnx.ModelProto`` or a path (float32 inputs).  ``uncounted_nodes``:
    Conv/Gemm/MatMul nodes whose shapes could not be read (their FLOPs are missing from the total).
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    matrix_nodes = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
    shapes = _shapes(model, sorted({t for n in matrix_nodes for t in (*n.input[:2], n.output[0])}))
    by_op: dict[str, int] = {}
    missing = 0
    for node in matrix_nodes:
        ins = [shapes.get(n) for n in node.input[:2]]
        outs = shapes.get(node.output[0])
        if any(s is None for s in ins) or outs is None:
            missing += 1
            continue
        if node.op_type == "Conv":
            w = ins[1]  # (Cout, Cin / groups, kh, kw)
            macs = math.prod(outs) * math.prod(w[1:])
        elif node.op_type == "ConvTranspose":
            w = ins[1]  # (Cin, Cout / groups, kh, kw)
            macs = math.prod(ins[0]) * math.prod(w[1:])
        else:
            a, b = ins
            k = a[-1] if not (node.op_type == "Gemm" and _attr(node, "transA", 0)) else a[0]
            macs = math.prod(outs) * k
        by_op[node.op_type] = by_op.get(node.op_type, 0) + 2 * int(macs)
    if missing:
        log.warning("count_flops: %d matrix nodes without static shapes were not counted", missing)
    return {"flops": sum(by_op.values()), "by_op": by_op, "uncounted_nodes": missing}
