"""Depthwise channel padding of onnx-int graphs, and the 8-bit weight container rule."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from flightco.measure import sample_genomes
from flightco.onnx_build import build_onnx
from flightco.onnx_channel_pad import DEPTHWISE_CHANNEL_ALIGN
from flightco.runtimes.onnxruntime import int8_weights_exact, kernel_report, session, signed_8bit_weights
from flightco.space import SearchSpace

from conftest import SPACE


def _groups(path):
    return [a.i for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"
            for a in n.attribute if a.name == "group" and a.i > 1]


def _real_weights(path):
    """Each conv's dequantized weight, in graph order."""
    from onnx import numpy_helper

    m = onnx.load(str(path))
    values = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    out = []
    for n in m.graph.node:
        if n.op_type != "Conv":
            continue
        dq = producer.get(n.input[1])
        if dq is None:
            out.append(values[n.input[1]].astype(np.float64))
            continue
        q, s = values[dq.input[0]].astype(np.float64), values[dq.input[1]].astype(np.float64)
        z = values[dq.input[2]].astype(np.float64) if len(dq.input) > 2 else np.zeros(())
        shape = [-1] + [1] * (q.ndim - 1)
        out.append((q - z.reshape(shape if z.size > 1 else ())) * s.reshape(shape if s.size > 1 else ()))
    return out


def test_int8_weights_are_exact_only_where_the_kernels_accumulate_in_32_bits():
    assert not int8_weights_exact("x86_64", {"avx2", "fma"})  # vpmaddubsw: saturating 16-bit pairs
    assert not int8_weights_exact("x86_64", {"avx2", "avx512f", "avx512bw"})
    assert int8_weights_exact("x86_64", {"avx2", "avx512_vnni"})
    assert int8_weights_exact("x86_64", {"avx2", "avx_vnni"})
    assert int8_weights_exact("aarch64", set())
    assert signed_8bit_weights("int8") and not signed_8bit_weights("uint8")
    with pytest.raises(ValueError, match="auto, int8, uint8"):
        signed_8bit_weights("int4")


@pytest.mark.parametrize("w8_type", ["int8", "uint8"])
def test_padding_depthwise_channels_is_exact_and_keeps_every_integer_kernel(tmp_path, w8_type):
    """Networks whose depthwise widths are off 16 are padded to it; onnxruntime's outputs are
    the same bit for bit (reference Q/DQ arithmetic and its integer kernels), and every conv still
    fuses into QLinearConv (a padded bias must keep scale = input scale x weight scale)."""
    space = SearchSpace.load(SPACE)
    checked = 0
    for genome in sample_genomes(space, 12, 3):
        if w8_type == "uint8":  # every weight 8-bit: uint8 with zero point 128, whose padding must be 128
            genome = genome.with_uniform_bits(8)
        plain, padded = tmp_path / "plain.onnx", tmp_path / "padded.onnx"
        build_onnx(genome, plain, w8_type=w8_type, pad_depthwise=False)
        if all(g % DEPTHWISE_CHANNEL_ALIGN == 0 for g in _groups(plain)):
            continue
        build_onnx(genome, padded, w8_type=w8_type)
        before, after = _groups(plain), _groups(padded)
        assert after != before and len(after) == len(before)
        assert all(b <= a < b + DEPTHWISE_CHANNEL_ALIGN for a, b in zip(after, before))
        for a, b in zip(_real_weights(plain), _real_weights(padded)):  # padding adds real zeros only
            core = b[tuple(slice(0, n) for n in a.shape)]
            np.testing.assert_array_equal(core, a)
            assert np.count_nonzero(b) == np.count_nonzero(a)
        x = np.random.default_rng(0).standard_normal((8, genome.in_channels, genome.resolution, genome.resolution)).astype(np.float32)
        for reference in (True, False):
            a = session(plain, reference=reference).run(None, {"input": x})[0]
            b = session(padded, reference=reference).run(None, {"input": x})[0]
            assert a.std(axis=0).mean() > 0.01  # real logits that vary by image, not a constant
            np.testing.assert_array_equal(a, b)
        k_plain, k_padded = kernel_report(plain, runs=1), kernel_report(padded, runs=1)
        assert k_padded.integer_convolutions == k_plain.integer_convolutions > 0
        checked += 1
        if checked == 2:
            break
    assert checked, "no sampled genome has a depthwise width off 16: pick other seeds"


def _depthwise_layer(path, channels: int, kernel: int, in_zero: int, groups: int | None = None) -> None:
    """uint8 codes -> DQ -> Conv (full-range 8-bit int8 weights, zero point 0) -> Q -> DQ."""
    from onnx import TensorProto, helper, numpy_helper

    groups = channels if groups is None else groups
    rng = np.random.default_rng(channels * kernel + in_zero)
    w = rng.integers(-127, 128, size=(channels, channels // groups, kernel, kernel)).astype(np.int8)
    w[:, :, 0, 0] = 127  # the extreme that saturates a 16-bit pair of products
    inits = [numpy_helper.from_array(v, n) for n, v in [
        ("xs", np.array(0.02, np.float32)), ("xz", np.array(in_zero, np.uint8)), ("w", w),
        ("ws", np.full(channels, 0.01, np.float32)), ("wz", np.zeros(channels, np.int8)),
        ("b", np.zeros(channels, np.int32)), ("bs", np.full(channels, 2e-4, np.float32)),
        ("bz", np.zeros(channels, np.int32)), ("ys", np.array(0.5, np.float32)), ("yz", np.array(128, np.uint8))]]
    p = kernel // 2
    nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0),
             helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bf"], axis=0),
             helper.make_node("Conv", ["xf", "wf", "bf"], ["y"], group=groups, kernel_shape=[kernel] * 2, pads=[p] * 4),
             helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["out"])]
    graph = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", channels, 10, 10])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.mark.parametrize("channels,kernel,in_zero", [(16, 3, 0), (32, 5, 128), (24, 3, 128)])
def test_depthwise_int8_weights_are_exact_on_this_cpu(tmp_path, channels, kernel, in_zero):
    """The claim behind keeping 8-bit depthwise weights int8 on every CPU: onnxruntime's
    depthwise integer kernels (16-multiple: symmetric kernel; 24: the generic one) give the
    reference evaluation's output codes for full-range weights and inputs near 255, bar the one-code
    float rounding at the output quantizer; a dense conv with the same weights would saturate
    on AVX2-only x86."""
    path = tmp_path / "dw.onnx"
    _depthwise_layer(path, channels, kernel, in_zero)
    x = np.random.default_rng(1).integers(200, 256, size=(4, channels, 10, 10)).astype(np.uint8)
    fast = session(path).run(None, {"x": x})[0]
    reference = session(path, reference=True).run(None, {"x": x})[0]
    assert "QLinearConv" in kernel_report(path, example=x, runs=1).integer_nodes
    codes = np.abs(fast - reference) / 0.5
    assert codes.max() <= 1.0 + 1e-6 and np.mean(codes > 0.5) < 0.01


def test_only_dense_8bit_weights_become_uint8(tmp_path):
    """``wide_weights_to_uint8`` re-expresses dense 8-bit weights and leaves depthwise ones int8."""
    from flightco.onnx_passes import _constant_values, wide_weights_to_uint8

    dw, dense = tmp_path / "dw.onnx", tmp_path / "dense.onnx"
    _depthwise_layer(dw, 16, 3, 0)
    _depthwise_layer(dense, 16, 3, 0, groups=1)
    for path, changed in ((dw, 0), (dense, 1)):
        model = onnx.load(str(path))
        assert wide_weights_to_uint8(model) == changed
        dtype = {n.input[0]: _constant_values(model.graph)[n.input[0]].dtype for n in model.graph.node
                 if n.op_type == "DequantizeLinear" and n.input[0].startswith("w")}
        assert list(dtype.values()) == [np.uint8 if changed else np.int8]


def _residual_genome(last_stride: int):
    """Two stride-1 residual blocks of expansion 1 on a 24-channel trunk (their depthwise convs
    read the trunk that the residual adds also read), then a 40-channel block of expansion 3
    (72 depthwise channels); ``last_stride=1`` adds a final 24-channel residual block whose
    trunk reaches the pool."""
    from flightco.space import BlockGene, Genome, Precision

    p = Precision(4, 5)
    blocks = [BlockGene(24, 1, 5, 1, None, p, p), BlockGene(24, 1, 3, 1, None, p, p),
              BlockGene(40, 3, 3, 2, p, p, p)]
    if last_stride == 1:
        blocks.append(BlockGene(40, 1, 3, 1, None, p, p))
    return Genome(in_channels=1, resolution=28, num_classes=10, stem_channels=24, stem_kernel=3, stem_stride=2,
                  stem=Precision(8, 6), blocks=tuple(blocks), classifier=Precision(8, 8))


@pytest.mark.parametrize("w8_type", ["int8", "uint8"])
def test_residual_trunks_are_padded_with_their_depthwise_convs_exactly(tmp_path, w8_type):
    """A depthwise conv that reads a residual trunk (expansion 1) is padded with the trunk: the
    stem and both projections grow zero filters, the next block's expand grows zero inputs, and
    both depthwise convs on the trunk are padded together (onnxruntime's generic depthwise loop
    took 350 us against 173 us for the padded 5x5 24-channel layer here, batch 32). A trunk that
    reaches the pool is left alone. Outputs stay identical bit for bit, every conv and residual
    add still runs as an integer kernel."""
    for last_stride, expected in ((2, [32, 32, 80]), (1, [32, 32, 80, 40])):
        genome = _residual_genome(last_stride)
        if w8_type == "uint8":
            genome = genome.with_uniform_bits(8)
        plain, padded = tmp_path / "plain.onnx", tmp_path / "padded.onnx"
        build_onnx(genome, plain, w8_type=w8_type, pad_depthwise=False)
        build_onnx(genome, padded, w8_type=w8_type)
        assert _groups(plain) == [24, 24, 72] + ([40] if last_stride == 1 else [])
        assert _groups(padded) == expected
        for a, b in zip(_real_weights(plain), _real_weights(padded)):
            np.testing.assert_array_equal(b[tuple(slice(0, n) for n in a.shape)], a)
            assert np.count_nonzero(b) == np.count_nonzero(a)
        x = np.random.default_rng(1).standard_normal((8, 1, 28, 28)).astype(np.float32)
        for reference in (True, False):
            a = session(plain, reference=reference).run(None, {"input": x})[0]
            b = session(padded, reference=reference).run(None, {"input": x})[0]
            assert a.std(axis=0).mean() > 0.01  # real logits that vary by image, not a constant
            np.testing.assert_array_equal(a, b)
        k_plain, k_padded = kernel_report(plain, runs=1), kernel_report(padded, runs=1)
        assert k_padded.integer_convolutions == k_plain.integer_convolutions == k_plain.convolutions
        assert k_padded.integer_nodes.get("QLinearAdd") == k_plain.integer_nodes.get("QLinearAdd") == 2 + (last_stride == 1)
