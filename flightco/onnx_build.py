"""Build the deploy-form (``onnx-int``) ONNX graph of a Genome directly, without torch or Brevitas.

Why: a characterization sweep times thousands of untrained networks, and latency does not
depend on weight values, only on the graph onnxruntime receives (shapes, Q/DQ placement, integer
types, clips). ``flightco export --format onnx-int`` takes 5-40 s per network on this shared
machine (Brevitas tracing plus the ONNX passes); this builder takes milliseconds. It writes the
same node pattern that export writes (read from exported files, see ``tests/test_characterize.py``
and ``benchmarks/stack.py --check-builder``, which compare the two):

* a quantized activation is ``QuantizeLinear`` (uint8; zero point 0 after a ReLU, 128 for signed
  tensors) -> ``Clip`` to the ``2**bits`` levels when below 8 bits -> ``DequantizeLinear``;
* a quantized convolution takes ``DequantizeLinear`` of per-channel int8 weights (at 8 bits uint8
  with zero point 128 where export re-expresses them so: dense convolutions on CPUs without VNNI)
  and of an int32 bias, then ``Relu`` where the
  layer has one (stem, expand, depthwise), then its output quantizer at its consumer's bits;
* a float-weight layer fed by a dequantized tensor gets export's float ``Clip`` guard;
* a residual projection's output and the tensor entering the pooling are requantized at 8 bits
  (:mod:`flightco.nn.deploy`); the residual ``Add`` of two dequantized tensors is requantized at
  its consumer's bits; ``GlobalAveragePool`` + ``Flatten`` at the classifier's input bits; the
  classifier is a ``Gemm`` (per-tensor weights, int32 bias when its input is quantized);
* depthwise convolutions padded to onnxruntime's fast channel multiple, by export's own pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flightco.hw.workload import LayerWorkload, workload
from flightco.space import FLOAT_BITS, Genome

OPSET = 13
RELU_KERNELS = (".expand", ".dw")  # besides the stem: layers followed by a ReLU
REQUANT_BITS = 8  # flightco.nn.deploy: a residual projection and the pooled tensor are requantized at 8 bits


def _has_relu(layer: LayerWorkload) -> bool:
    return layer.name == "stem" or layer.name.endswith(RELU_KERNELS)


ACTIVATION_RANGE = 3.0
"""Activations are scaled for a unit-variance signal (weights preserve variance): a quantizer covers
about +-3 (signed) or 0..3 (after a ReLU), so values survive every layer of a random network and
tests that compare two rewrites of one graph compare real outputs, not zeros."""


class _Graph:
    """A small graph writer: unique names, initializers, nodes."""

    def __init__(self, seed: int, signed_8bit: bool, uint8_depthwise: bool = False) -> None:
        self.uint8_depthwise = uint8_depthwise
        self.input_scale = 1.0  # the scale of the last quantized activation: the next layer's input
        self.weight_scale = 1.0  # the scale of the last layer's weights (its int32 bias uses both)
        self.nodes: list = []
        self.inits: list = []
        self.n = 0
        self.rng = np.random.default_rng(seed)
        self.signed_8bit = signed_8bit

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, base: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], base: str, **attrs) -> str:
        from onnx import helper

        out = self.name(f"{base}_{op}")
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def quantize(self, x: str, bits: int, signed: bool, base: str) -> str:
        """Q (uint8) -> Clip to ``2**bits`` levels below 8 bits -> DQ: a quantized activation."""
        zp = 128 if signed else 0
        step = ACTIVATION_RANGE / (2 ** (bits - 1) if signed else 2 ** bits - 1)
        self.input_scale = float(np.float32(step))
        scale = self.const(f"{base}_scale", np.array(step, np.float32))
        zero = self.const(f"{base}_zp", np.array(zp, np.uint8))
        q = self.node("QuantizeLinear", [x, scale, zero], base)
        if bits < 8:
            lo, hi = (zp - 2 ** (bits - 1), zp + 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
            q = self.node("Clip", [q, self.const(f"{base}_lo", np.array(lo, np.uint8)),
                                   self.const(f"{base}_hi", np.array(hi, np.uint8))], base)
        return self.node("DequantizeLinear", [q, scale, zero], base)

    def weights(self, shape: tuple[int, ...], bits: int, per_channel: bool, base: str, depthwise: bool = False) -> str:
        """Dequantized integer weights (int8; at 8 bits uint8 + zero point 128 where export stores
        them so, except depthwise ones, whose kernels are exact with int8 everywhere)."""
        cout = shape[0]
        levels = 2 ** (bits - 1) - 1
        w = self.rng.integers(-levels, levels + 1, size=shape)
        if bits >= 8 and not self.signed_8bit and (self.uint8_depthwise or not depthwise):
            q, zp = (w + 128).astype(np.uint8), np.full(cout if per_channel else (), 128, np.uint8)
        else:
            q, zp = w.astype(np.int8), np.zeros(cout if per_channel else (), np.int8)
        step = np.float32(np.sqrt(6.0 / np.prod(shape[1:])) / levels)  # uniform codes, He gain: unit variance through ReLUs
        self.weight_scale = float(step)
        scale = np.full(cout, step, np.float32) if per_channel else np.array(step, np.float32)
        attrs = {"axis": 0} if per_channel else {}
        return self.node("DequantizeLinear", [self.const(f"{base}_w", q), self.const(f"{base}_ws", scale),
                                              self.const(f"{base}_wzp", zp)], f"{base}_w", **attrs)

    def bias(self, cout: int, quantized_input: bool, base: str, axis: bool = True) -> str:
        """An int32 bias (per channel for convolutions, per tensor for the classifier) when the
        layer's input and weights are quantized, else a float one."""
        if not quantized_input:
            return self.const(f"{base}_b", np.zeros(cout, np.float32))
        shape = cout if axis else ()
        bias_scale = np.float32(self.input_scale) * np.float32(self.weight_scale)  # what QLinearConv fuses
        return self.node("DequantizeLinear", [self.const(f"{base}_b", np.zeros(cout, np.int32)),
                                              self.const(f"{base}_bs", np.full(shape, bias_scale, np.float32)),
                                              self.const(f"{base}_bzp", np.zeros(shape, np.int32))],
                         f"{base}_b", **({"axis": 0} if axis else {}))

    def guard(self, x: str, base: str) -> str:
        """Export's float guard: keeps onnxruntime from quantizing a float-weight layer itself."""
        return self.node("Clip", [x, self.const(f"{base}_gmin", np.array(-6.4, np.float32)),
                                  self.const(f"{base}_gmax", np.array(6.35, np.float32))], base)


def build_onnx(genome: Genome, path: Path, seed: int = 0, w8_type: str = "auto", pad_depthwise: bool = True,
               uint8_depthwise: bool = False, stem_space_to_depth: bool = True) -> None:
    """Write the ``onnx-int`` form of ``genome`` (random integer weights) to ``path``; ``w8_type``
    as for :func:`flightco.export.export_onnx_int`; ``pad_depthwise=False`` skips export's
    depthwise channel padding and ``uint8_depthwise=True`` stores 8-bit depthwise weights as
    uint8 too where dense ones are (export's form before it kept them int8), and
    ``stem_space_to_depth=False`` keeps the strided stem as it is (export's form before
    :mod:`flightco.onnx_stem`), to compare."""
    import onnx
    from onnx import TensorProto, helper

    from flightco.onnx_channel_pad import pad_depthwise_channels
    from flightco.onnx_stem import space_to_depth_stem
    from flightco.runtimes.onnxruntime import signed_8bit_weights

    g = _Graph(seed, signed_8bit_weights(w8_type), uint8_depthwise)
    layers = workload(genome)
    x = "input"
    quantized = genome.stem.a_bits < FLOAT_BITS
    if quantized:
        x = g.quantize(x, genome.stem.a_bits, True, "input")
    block_input: dict[str, tuple[str, bool]] = {}
    for li, layer in enumerate(layers):
        nxt = layers[li + 1].op if li + 1 < len(layers) else ""
        base = layer.name.replace(".", "_")
        block = layer.name.split(".")[0]
        if layer.name.endswith((".expand", ".dw")) and block not in block_input:
            block_input[block] = (x, quantized)
        if layer.op in ("conv", "dwconv", "linear"):
            wq = layer.w_bits < FLOAT_BITS
            if not wq and quantized:
                x = g.guard(x, base)
            if layer.op == "linear":
                shape = (layer.cout, layer.cin)
                w = g.weights(shape, layer.w_bits, False, base) if wq else \
                    g.const(f"{base}_w", g.rng.standard_normal(shape).astype(np.float32) * 0.1)
                b = g.bias(layer.cout, quantized and wq, base, axis=False)
                x = g.node("Gemm", [x, w, b], base, transB=1)
                quantized = False
                continue
            shape = (layer.cout, layer.cin // layer.groups, layer.k, layer.k)
            w = g.weights(shape, layer.w_bits, True, base, depthwise=layer.groups > 1) if wq else \
                g.const(f"{base}_w", g.rng.standard_normal(shape).astype(np.float32) * 0.1)
            b = g.bias(layer.cout, quantized and wq, base)
            p = layer.k // 2
            x = g.node("Conv", [x, w, b], base, group=layer.groups, kernel_shape=[layer.k, layer.k],
                       pads=[p, p, p, p], strides=[layer.stride, layer.stride])
            relu = _has_relu(layer)
            if relu:
                x = g.node("Relu", [x], base)
        elif layer.op == "add":
            skip, _ = block_input[block]
            x = g.node("Add", [skip, x], base)
            relu = False
        else:  # pool
            x = g.node("GlobalAveragePool", [x], base)
            x = g.node("Flatten", [x], base, axis=1)
            relu = False
        out_bits = REQUANT_BITS if nxt in ("add", "pool") else layer.out_bits
        quantized = out_bits < FLOAT_BITS
        if quantized:
            x = g.quantize(x, out_bits, not relu, f"{base}_out")
    out = g.node("Identity", [x], "logits")
    graph = helper.make_graph(
        g.nodes, f"flightco_{genome.arch_key()[:32]}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                       ["N", genome.in_channels, genome.resolution, genome.resolution])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", genome.num_classes])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    if pad_depthwise:
        pad_depthwise_channels(model)
    if stem_space_to_depth:
        space_to_depth_stem(model)
    onnx.save(model, str(path))
