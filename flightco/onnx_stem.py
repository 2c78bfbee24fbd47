"""Rewrite a strided stem of an ``onnx-int`` graph as a stride-1 conv on a space-to-depth input, exactly.

Why: the stem reads the image, which has 1 (or 3) channels. onnxruntime's fast symmetric integer
conv (MLAS ``MlasConvSym``) needs a multiple of 4 input channels on x86, so such a stem runs
through im2col and a QGEMM whose reduction is only ``k*k`` (9) long, and a per-call cost swamps
its few MACs. Measured on an AVX-512 VNNI EPYC (onnxruntime 1.32, 1 thread, batch 32), a stem
graph (quantize, conv, ReLU, requantize) timed interleaved against its rewrite, 40 rounds: 1->16,
1->24 and 1->32 3x3/2 stems at 28x28 ran in 0.62-0.64x the time (p10-p90 0.59-0.67), 1->8 in 0.87x
(below MLAS's 16 output channels the symmetric kernel is not taken, only the GEMM's reduction
grows); 3->16..32 at 32x32 in 0.69-0.71x, 3->8 in 0.97x. Per conv node: 1->16, 140 -> 64 us (+12
us for ``SpaceToDepth`` on the float input).

How, exactly: ``SpaceToDepth(s)`` moves each ``s x s`` block of pixels into ``s*s`` channels
(output channel ``(py*s + px)*C + c``). Input row ``s*i + d - p`` of tap ``d`` lies in block row
``i + floor((d - p)/s)`` at phase ``(d - p) mod s``, so the stride-``s`` conv is a stride-1 conv
over the blocks whose taps are those block offsets; taps no original weight lands on get the
weight zero point (real 0). Padding still reads the activation's zero point (real 0) outside the
image, as before. The per-tensor input quantizer commutes with the reshuffle, so ``SpaceToDepth``
runs on the float input ahead of it and the ``Q -> DQ -> Conv`` chain that onnxruntime fuses into
``QLinearConv`` is kept. Every product and every int32 sum is the original one, so integer
kernels give identical outputs; a float evaluation of the Q/DQ graph (onnxruntime's reference
level) adds the same products in another order and may round a tie one step the other way
(measured: 2 of 65,536 outputs of a 3-channel stem, none of a 1-channel one).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from flightco.onnx_channel_pad import _attr, _Graph
from flightco.onnx_passes import _add_constant, remove_unused_constants

SYMMETRIC_INPUT_ALIGN = 4
"""Input-channel multiple of MLAS's symmetric direct conv kernel on x86."""

_INPUT_CHAIN = ("QuantizeLinear", "Clip", "DequantizeLinear")


def _ints(node: onnx.NodeProto, name: str) -> list[int] | None:
    for a in node.attribute:
        if a.name == name:
            return [int(v) for v in a.ints]
    return None


def _taps(k: int, stride: int, pad_begin: int, pad_end: int, size: int) -> tuple[list[tuple[int, int]], int, int, int] | None:
    """Per original tap ``d``: (block offset index, phase); the block kernel size and its pads.
    None where the output size cannot be kept with non-negative pads."""
    offsets = [((d - pad_begin) // stride, (d - pad_begin) % stride) for d in range(k)]
    t_min, t_max = offsets[0][0], offsets[-1][0]
    k2 = t_max - t_min + 1
    out = (size + pad_begin + pad_end - k) // stride + 1
    begin = -t_min
    end = out - size // stride - begin + k2 - 1
    if begin < 0 or end < 0:
        return None
    return [(t - t_min, ph) for t, ph in offsets], k2, begin, end


def _input_chain(g: _Graph, conv: onnx.NodeProto, inputs: set[str]) -> list[onnx.NodeProto] | None:
    """The per-tensor ``Q [-> Clip] -> DQ`` chain from a graph input to ``conv``, each tensor read
    by the next node alone (so reshuffling it changes nothing else)."""
    chain, t = [], conv.input[0]
    while t not in inputs:
        node = g.producer.get(t)
        if node is None or node.op_type not in _INPUT_CHAIN or not g.per_tensor(node) or g.sole_consumer(t) is None:
            return None
        chain.append(node)
        t = node.input[0]
    return chain if chain and chain[-1].op_type == "QuantizeLinear" else None


def space_to_depth_stem(model: onnx.ModelProto) -> int:
    """Rewrite, in place, every integer conv that reads a graph input through its quantizer with
    a stride ``s >= 2``, whose input channels are off MLAS's multiple of 4 and become a multiple of
    4 after ``SpaceToDepth(s)`` (1 or 3 channels at stride 2); returns how many were rewritten."""
    g = _Graph(model)
    graph = model.graph
    shapes = {i.name: [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim]
              for i in graph.input if i.name not in g.values}
    count, stale, first, before = 0, set(), [], {}
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        strides = _ints(conv, "strides") or [1, 1]
        kernel = _ints(conv, "kernel_shape")
        pads = _ints(conv, "pads") or [0, 0, 0, 0]
        s = strides[0]
        if (_attr(conv, "group", 1) != 1 or len(strides) != 2 or s < 2 or strides[1] != s or kernel is None
                or any(d != 1 for d in _ints(conv, "dilations") or [1, 1])
                or any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in conv.attribute)):
            continue
        chain = _input_chain(g, conv, set(shapes))
        found = g.weight(conv, 1)
        if chain is None or found is None or found[0] is None:
            continue  # not reading a graph input through its quantizer, or float weights
        dq, q = found
        source = chain[-1].input[0]
        shape = shapes[source]
        if len(shape) != 4 or q.ndim != 4 or None in shape[1:]:
            continue
        c, h, w = shape[1:]
        if c % SYMMETRIC_INPUT_ALIGN == 0 or (c * s * s) % SYMMETRIC_INPUT_ALIGN or h % s or w % s:
            continue
        rows, cols = _taps(kernel[0], s, pads[0], pads[2], h), _taps(kernel[1], s, pads[1], pads[3], w)
        if rows is None or cols is None:
            continue
        zero = g.values.get(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
        blocked = np.zeros((q.shape[0], c * s * s, rows[1], cols[1]), dtype=q.dtype)
        if zero is not None:
            blocked[...] = np.asarray(zero).reshape(-1, 1, 1, 1) if zero.size > 1 else zero.reshape(())
        for dy, (ty, py) in enumerate(rows[0]):
            for dx, (tx, px) in enumerate(cols[0]):
                blocked[:, (py * s + px) * c : (py * s + px + 1) * c, ty, tx] = q[:, :, dy, dx]
        weight = _add_constant(graph, f"{dq.input[0]}_space_to_depth", blocked)
        new_dq = helper.make_node("DequantizeLinear", [weight, *dq.input[1:]], [f"{dq.output[0]}_space_to_depth"],
                                  name=f"{dq.name or dq.output[0]}_space_to_depth")
        new_dq.attribute.extend(dq.attribute)
        before[id(conv)] = new_dq  # its scale may be a Constant node further down: keep the order
        conv.input[1] = new_dq.output[0]
        moved = f"{source}_space_to_depth{count}"
        first.append(helper.make_node("SpaceToDepth", [source], [moved], name=moved, blocksize=s))
        chain[-1].input[0] = moved
        for name, values in (("kernel_shape", [rows[1], cols[1]]), ("strides", [1, 1]),
                             ("pads", [rows[2], cols[2], rows[3], cols[3]])):
            for a in list(conv.attribute):
                if a.name == name:
                    conv.attribute.remove(a)
            conv.attribute.append(helper.make_attribute(name, values))
        stale.update(n.output[0] for n in chain)
        count += 1
    if count:
        nodes = list(first)  # SpaceToDepth reads a graph input only
        for n in graph.node:
            nodes += [before[id(n)], n] if id(n) in before else [n]
        used = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
        nodes = [n for n in nodes if n.op_type != "DequantizeLinear" or n.output[0] in used]  # the old weight DQs
        del graph.node[:]
        graph.node.extend(nodes)
        keep = [v for v in graph.value_info if v.name not in stale]  # their shapes changed
        del graph.value_info[:]
        graph.value_info.extend(keep)
        remove_unused_constants(model)
    return count
