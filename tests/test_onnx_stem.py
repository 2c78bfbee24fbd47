"""The strided stem of an onnx-int graph rewritten as a stride-1 conv on SpaceToDepth of the input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from flightco.onnx_build import build_onnx
from flightco.runtimes.onnxruntime import kernel_report, session
from flightco.space import BlockGene, Genome, Precision


def _genome(in_channels: int, resolution: int, kernel: int, stride: int, stem: Precision) -> Genome:
    p = Precision(4, 5)
    blocks = (BlockGene(16, 1, 3, 1, None, p, p), BlockGene(24, 3, 5, 2, p, p, p))
    return Genome(in_channels=in_channels, resolution=resolution, num_classes=10, stem_channels=16,
                  stem_kernel=kernel, stem_stride=stride, stem=stem, blocks=blocks, classifier=Precision(8, 8))


def _stem(path) -> onnx.NodeProto:
    return next(n for n in onnx.load(str(path)).graph.node if n.op_type == "Conv")


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: list(a.ints) for a in node.attribute if a.ints}


def _stem_only(path, in_channels: int, resolution: int, kernel: int, w_dtype, a_bits: int, cout: int = 16) -> None:
    """input -> Q [-> Clip] -> DQ -> Conv(DQ w, DQ int32 b), stride 2 -> Relu -> Q -> DQ: a stem whose
    outputs span its 8-bit range, with per-channel weight scales and a 4-bit input clip on demand."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    zp_w = 128 if w_dtype == np.uint8 else 0
    w = (rng.integers(-127, 128, size=(cout, in_channels, kernel, kernel)) + zp_w).astype(w_dtype)
    ws = rng.uniform(0.005, 0.02, cout).astype(np.float32)
    xs = np.float32(0.02)
    inits = [numpy_helper.from_array(np.array(xs), "xs"), numpy_helper.from_array(np.array(128, np.uint8), "xz"),
             numpy_helper.from_array(w, "w"), numpy_helper.from_array(ws, "ws"),
             numpy_helper.from_array(np.full(cout, zp_w, w_dtype), "wz"),
             numpy_helper.from_array(rng.integers(-2000, 2000, cout).astype(np.int32), "b"),
             numpy_helper.from_array(ws * xs, "bs"), numpy_helper.from_array(np.zeros(cout, np.int32), "bz"),
             numpy_helper.from_array(np.array(0.04, np.float32), "ys"), numpy_helper.from_array(np.array(0, np.uint8), "yz"),
             numpy_helper.from_array(np.array(128 - 2 ** (a_bits - 1), np.uint8), "lo"),
             numpy_helper.from_array(np.array(127 + 2 ** (a_bits - 1), np.uint8), "hi")]
    q = [helper.make_node("QuantizeLinear", ["input", "xs", "xz"], ["xq"])]
    if a_bits < 8:
        q.append(helper.make_node("Clip", ["xq", "lo", "hi"], ["xc"]))
    p = kernel // 2
    nodes = q + [helper.make_node("DequantizeLinear", [q[-1].output[0], "xs", "xz"], ["xd"]),
                 helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
                 helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], axis=0),
                 helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], kernel_shape=[kernel, kernel], pads=[p] * 4, strides=[2, 2]),
                 helper.make_node("Relu", ["c"], ["r"]), helper.make_node("QuantizeLinear", ["r", "ys", "yz"], ["yq"]),
                 helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    graph = helper.make_graph(nodes, "stem", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            ["N", in_channels, resolution, resolution])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", cout, resolution // 2, resolution // 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.mark.parametrize("in_channels,resolution,kernel,w_dtype,a_bits,block_kernel,pads", [
    (1, 28, 3, "auto", 8, [2, 2], [1, 1, 0, 0]),     # the default space's stem, weights as onnx-int writes them here
    (1, 28, 3, np.int8, 4, [2, 2], [1, 1, 0, 0]),    # a 4-bit input quantizer (integer Clip in the chain)
    (3, 32, 5, np.uint8, 8, [3, 3], [1, 1, 1, 1]),   # RGB, 5x5; uint8 weights: the unused taps hold 128
])
def test_strided_stem_reads_space_to_depth_exactly_on_integer_kernels(tmp_path, in_channels, resolution, kernel,
                                                                       w_dtype, a_bits, block_kernel, pads):
    """The rewritten stem computes the same outputs bit for bit on onnxruntime's integer kernels,
    still runs as QLinearConv, and its real weights are the original ones moved to their block
    taps, with real zeros elsewhere."""
    from flightco.onnx_stem import space_to_depth_stem
    from flightco.runtimes.onnxruntime import int8_weights_exact

    if w_dtype == "auto":  # full-range int8 weights saturate on x86 without VNNI, so onnx-int writes uint8 there
        w_dtype = np.int8 if int8_weights_exact() else np.uint8
    plain, blocked = tmp_path / "plain.onnx", tmp_path / "blocked.onnx"
    _stem_only(plain, in_channels, resolution, kernel, w_dtype, a_bits)
    model = onnx.load(str(plain))
    assert space_to_depth_stem(model) == 1
    onnx.checker.check_model(model)
    onnx.save(model, str(blocked))
    a = _attrs(_stem(blocked))
    assert a["kernel_shape"] == block_kernel and a["strides"] == [1, 1] and a["pads"] == pads
    from test_channel_pad import _real_weights

    before, after = _real_weights(plain)[0], _real_weights(blocked)[0]
    assert after.shape == (16, in_channels * 4, *block_kernel)
    np.testing.assert_array_equal(np.sort(after[after != 0]), np.sort(before[before != 0]))
    x = np.random.default_rng(1).standard_normal((6, in_channels, resolution, resolution)).astype(np.float32)
    ya = session(plain).run(None, {"input": x})[0]
    yb = session(blocked).run(None, {"input": x})[0]
    assert ya.std() > 0.1 and np.count_nonzero(ya) > ya.size // 4  # real outputs, not a constant
    np.testing.assert_array_equal(ya, yb)  # integer kernels: the same int32 sums
    # the float reference (Q/DQ as written) sums the same products in another order (12 channels
    # instead of 3), so a rounding tie may land one output step the other way, rarely
    ra = session(plain, reference=True).run(None, {"input": x})[0]
    rb = session(blocked, reference=True).run(None, {"input": x})[0]
    assert np.abs(ra - rb).max() <= 0.04 + 1e-6 and np.count_nonzero(ra != rb) <= ra.size // 10_000
    k_plain, k_blocked = kernel_report(plain, runs=1), kernel_report(blocked, runs=1)
    assert k_blocked.integer_convolutions == k_plain.integer_convolutions == 1


def test_onnx_build_writes_the_stem_as_export_does(tmp_path):
    """characterize's graph builder follows export: the default space's stem reads SpaceToDepth
    and every conv stays integer; ``stem_space_to_depth=False`` writes the old form to compare."""
    genome = _genome(1, 28, 3, 2, Precision(8, 6))
    plain, blocked = tmp_path / "plain.onnx", tmp_path / "blocked.onnx"
    build_onnx(genome, plain, stem_space_to_depth=False)
    build_onnx(genome, blocked)
    assert [n.op_type for n in onnx.load(str(blocked)).graph.node].count("SpaceToDepth") == 1
    assert "SpaceToDepth" not in [n.op_type for n in onnx.load(str(plain)).graph.node]
    assert _attrs(_stem(blocked))["strides"] == [1, 1]
    k = kernel_report(blocked, runs=1)
    assert k.integer_convolutions == k.convolutions == kernel_report(plain, runs=1).integer_convolutions


@pytest.mark.parametrize("in_channels,stride,stem", [
    (1, 1, Precision(8, 8)),      # stride 1: nothing to fold
    (4, 2, Precision(8, 8)),      # 4 channels already take MLAS's symmetric kernel
    (1, 2, Precision(32, 8)),     # float stem weights (the genome's): not an integer conv
])
def test_stems_the_rewrite_does_not_help_are_left_alone(tmp_path, in_channels, stride, stem):
    genome = _genome(in_channels, 28, 3, stride, stem)
    path = tmp_path / "m.onnx"
    build_onnx(genome, path)
    assert "SpaceToDepth" not in [n.op_type for n in onnx.load(str(path)).graph.node]
    assert _attrs(_stem(path))["strides"] == [stride, stride]
