"""FLOPs counted from an ONNX graph (owsd.onnx_flops): a convolution behind a Pad node, a Gemm."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from owsd.onnx_flops import count_flops


def _model():
    w = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    fc = numpy_helper.from_array(np.zeros((10, 8 * 8 * 8), np.float32), "fc")
    pads = helper.make_tensor("p", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1])
    nodes = [helper.make_node("Constant", [], ["pads"], value=pads),  # pads from a node, as torch exports them
             helper.make_node("Pad", ["x", "pads"], ["xp"]),
             helper.make_node("Conv", ["xp", "w"], ["y"], strides=[2, 2]),
             helper.make_node("Flatten", ["y"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["z"], transB=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 16, 16])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], initializer=[w, fc])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_count_flops_reads_shapes_behind_pads():
    got = count_flops(_model())
    conv = 2 * (8 * 8 * 8) * (3 * 3 * 3)  # 18x18 padded input, 3x3 stride 2: 8 x 8 x 8 outputs
    gemm = 2 * 10 * (8 * 8 * 8)
    assert got == {"flops": conv + gemm, "by_op": {"Conv": conv, "Gemm": gemm}, "uncounted_nodes": 0}
