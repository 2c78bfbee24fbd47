"""The QCDQ rewrite keeps the function and survives onnxruntime's graph optimizations."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from flightco.onnx_passes import clip_after_dequantize, guard_float_weights


def _qcdq_conv_model(scale=0.3, lo=-8, hi=7):
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array(scale, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "z"),
        numpy_helper.from_array(np.array(lo, np.int8), "lo"),
        numpy_helper.from_array(np.array(hi, np.int8), "hi"),
        numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("Clip", ["q", "lo", "hi"], ["qc"]),
        helper.make_node("DequantizeLinear", ["qc", "s", "z"], ["d"]),
        helper.make_node("Conv", ["d", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _run(model, level, x=None):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    if x is None:
        x = np.linspace(-4, 4, 2 * 64, dtype=np.float32).reshape(2, 1, 8, 8)
    return sess.run(None, {"x": x})[0]


def test_rewrite_is_exact_and_stable_under_optimizations():
    original = _qcdq_conv_model()
    reference = _run(original, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    rewritten = _qcdq_conv_model()
    assert clip_after_dequantize(rewritten) == 1
    onnx.checker.check_model(rewritten)
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops == ["QuantizeLinear", "DequantizeLinear", "Clip", "Conv"]
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        np.testing.assert_allclose(_run(rewritten, level), reference, atol=1e-5)


def test_clip_bounds_follow_scale_and_zero_point():
    model = _qcdq_conv_model(scale=0.5, lo=-2, hi=1)
    clip_after_dequantize(model)
    values = {i.name: float(numpy_helper.to_array(i)) for i in model.graph.initializer if i.name.endswith(("_min", "_max"))}
    assert sorted(values.values()) == [-1.0, 0.5]


def test_plain_qdq_is_left_alone():
    model = _qcdq_conv_model()
    nodes = [n for n in model.graph.node if n.op_type != "Clip"]
    nodes[1].input[0] = "q"
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    assert clip_after_dequantize(model) == 0


def _float_weight_between_quantizers():
    """8-bit input Q/DQ -> Conv with *float* weights -> Relu -> 8-bit output Q/DQ."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "s_in"),
        numpy_helper.from_array(np.array(0, np.int8), "z_in"),
        numpy_helper.from_array(np.array(0.07, np.float32), "s_out"),
        numpy_helper.from_array(np.array(0, np.uint8), "z_out"),
        numpy_helper.from_array((rng.normal(size=(16, 8, 3, 3)) * 0.2).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=(16,)).astype(np.float32) * 0.1, "b"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s_in", "z_in"], ["d"]),
        helper.make_node("Conv", ["d", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "s_out", "z_out"], ["q2"]),
        helper.make_node("DequantizeLinear", ["q2", "s_out", "z_out"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 16, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _run8(model, level):
    return _run(model, level, np.random.default_rng(2).normal(size=(4, 8, 8, 8)).astype(np.float32) * 2)


def test_float_weights_between_quantizers_are_not_requantized_by_onnxruntime():
    reference = _run8(_float_weight_between_quantizers(), ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    unguarded = _run8(_float_weight_between_quantizers(), ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    # the finding the guard exists for (if a future onnxruntime stops doing this, say so here)
    assert np.abs(unguarded - reference).max() > 0.05
    guarded = _float_weight_between_quantizers()
    assert guard_float_weights(guarded) == 1
    onnx.checker.check_model(guarded)
    clip = next(n for n in guarded.graph.node if n.op_type == "Clip")
    bounds = sorted(float(numpy_helper.to_array(i)) for i in guarded.graph.initializer if i.name.startswith("conv_float_guard"))
    assert clip.output[0] in next(n for n in guarded.graph.node if n.op_type == "Conv").input
    np.testing.assert_allclose(bounds, [-128 * 0.05, 127 * 0.05], rtol=1e-6)
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        np.testing.assert_allclose(_run8(guarded, level), reference, atol=1e-5)


def test_quantized_weights_are_not_guarded():
    model = _float_weight_between_quantizers()
    w = next(i for i in model.graph.initializer if i.name == "w")
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", ["w_q", "s_in", "z_in"], ["w_dq"]))
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((16, 8, 3, 3), np.int8), "w_q"))
    next(n for n in model.graph.node if n.op_type == "Conv").input[1] = "w_dq"
    assert w is not None and guard_float_weights(model) == 0
