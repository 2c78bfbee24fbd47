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
            np.testing.assert_array_equal(a, b)
        k_plain, k_padded = kernel_report(plain, runs=1), kernel_report(padded, runs=1)
        assert k_padded.integer_convolutions == k_plain.integer_convolutions > 0
        checked += 1
        if checked == 2:
            break
    assert checked, "no sampled genome has a depthwise width off 16: pick other seeds"
