"""ONNX graph rewrites applied after Brevitas's QCDQ export.

Sub-8-bit tensors in QCDQ are ``QuantizeLinear -> Clip(int) -> DequantizeLinear``. Measured
here with onnxruntime 1.32 (CPU): with its default graph optimizations, a model whose 4-bit
input quantizer fed a float-weight convolution gave different logits for every test image
(top-1 agreement with PyTorch 98.4%), while the unoptimized session matched. Moving the clip
to the float side, ``QuantizeLinear -> DequantizeLinear -> Clip(float)`` with bounds
``(q_min - zero_point) * scale`` and ``(q_max - zero_point) * scale``, is exactly the same
function (dequantization is increasing when ``scale > 0``) and restored 100% agreement at every
optimization level. 8-bit tensors have no Clip and keep the plain Q/DQ form that onnxruntime
fuses into integer kernels.

A second, larger surprise, measured the same way: when a layer whose weights are *float* (a
float stem or classifier) reads a dequantized activation and feeds a quantizer
(``DQ -> Conv -> Relu -> Q``), onnxruntime 1.32's default optimizations quantize its float
weights to int8 on their own and run a ``QLinearConv``: a trained model's logits moved by up to
0.7 and top-1 agreement fell to 46-67 % on a barely trained model. :func:`guard_float_weights`
places an exactly redundant float ``Clip`` (the dequantized tensor's own range) between the
``DequantizeLinear`` and such a layer, which stops that fusion; the layer then runs in float as
trained.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def clip_after_dequantize(model: onnx.ModelProto) -> int:
    """Rewrite every ``Q -> Clip(int) -> DQ`` chain as ``Q -> DQ -> Clip(float)`` in place.

    Returns the number of chains rewritten. Chains whose clip bounds or scale are not
    constants, or whose scale is not positive, are left alone.
    """
    graph = model.graph
    values = _constant_values(graph)
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    replaced: dict[int, onnx.NodeProto] = {}  # id(DQ node) -> float Clip to insert after it
    dropped: set[int] = set()
    for clip in graph.node:
        if clip.op_type != "Clip" or len(clip.input) < 3:
            continue
        q = producer.get(clip.input[0])
        users = consumers.get(clip.output[0], [])
        if q is None or q.op_type != "QuantizeLinear" or len(users) != 1 or users[0].op_type != "DequantizeLinear":
            continue
        dq = users[0]
        if not all(name in values for name in (clip.input[1], clip.input[2], dq.input[1])):
            continue
        scale = values[dq.input[1]].astype(np.float64)
        if np.any(scale <= 0) or scale.size != 1:
            continue
        zero = values[dq.input[2]].astype(np.float64) if len(dq.input) > 2 and dq.input[2] else 0.0
        lo = float((values[clip.input[1]].astype(np.float64) - zero) * scale)
        hi = float((values[clip.input[2]].astype(np.float64) - zero) * scale)
        out = dq.output[0]
        dq.input[0] = clip.input[0]
        dq.output[0] = f"{out}_unclipped"
        lo_name, hi_name = f"{out}_clip_min", f"{out}_clip_max"
        graph.initializer.extend([numpy_helper.from_array(np.array(lo, np.float32), lo_name),
                                  numpy_helper.from_array(np.array(hi, np.float32), hi_name)])
        replaced[id(dq)] = helper.make_node("Clip", [dq.output[0], lo_name, hi_name], [out], name=f"{clip.name}_float")
        dropped.add(id(clip))

    nodes = []
    for n in graph.node:
        if id(n) in dropped:
            continue
        nodes.append(n)
        if id(n) in replaced:
            nodes.append(replaced[id(n)])
    del graph.node[:]
    graph.node.extend(nodes)
    remove_unused_constants(model)
    return len(dropped)


FLOAT_WEIGHT_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}  # op -> weight input


def _dequantized_range(values: dict[str, np.ndarray], dq: onnx.NodeProto,
                      producer: dict[str, onnx.NodeProto]) -> tuple[float, float] | None:
    """The float range a DequantizeLinear can output (constant positive scalar scale, 8-bit
    integers whose type its zero point, or its QuantizeLinear's, gives); ``None`` otherwise."""
    if dq.input[1] not in values or values[dq.input[1]].size != 1:
        return None
    scale = float(values[dq.input[1]].astype(np.float64).reshape(()))
    zp_name = dq.input[2] if len(dq.input) > 2 else ""
    q = producer.get(dq.input[0])
    type_source = zp_name if zp_name in values else (q.input[2] if q is not None and len(q.input) > 2 else "")
    if type_source not in values or values[type_source].dtype not in (np.int8, np.uint8) or scale <= 0:
        return None
    zero = float(values[zp_name].astype(np.float64).reshape(())) if zp_name in values else 0.0
    info = np.iinfo(values[type_source].dtype)
    return (info.min - zero) * scale, (info.max - zero) * scale


def guard_float_weights(model: onnx.ModelProto) -> int:
    """Insert ``Clip(float)`` between a ``DequantizeLinear`` and a layer with float weights.

    The clip bounds are the dequantized tensor's own range, so the function is unchanged; the
    Clip only keeps onnxruntime from fusing ``DQ -> layer -> Q`` into an integer kernel with
    weights it quantized itself. Returns the number of layers guarded.
    """
    graph = model.graph
    values = _constant_values(graph)
    producer = {o: n for n in graph.node for o in n.output}
    guards: dict[int, list[onnx.NodeProto]] = {}  # id(layer) -> clips to insert before it
    count = 0
    for node in graph.node:
        w = FLOAT_WEIGHT_OPS.get(node.op_type)
        if w is None or len(node.input) <= w:
            continue
        dq = producer.get(node.input[0])
        weight_src = producer.get(node.input[w])
        if dq is None or dq.op_type != "DequantizeLinear" or node.input[w] not in values:
            continue
        if weight_src is not None and weight_src.op_type == "DequantizeLinear":
            continue
        bounds = _dequantized_range(values, dq, producer)
        if bounds is None:
            continue
        base = f"{node.name or node.output[0]}_float_guard"
        lo_name, hi_name, out = f"{base}_min", f"{base}_max", f"{base}_out"
        graph.initializer.extend([numpy_helper.from_array(np.array(bounds[0], np.float32), lo_name),
                                  numpy_helper.from_array(np.array(bounds[1], np.float32), hi_name)])
        guards[id(node)] = [helper.make_node("Clip", [node.input[0], lo_name, hi_name], [out], name=base)]
        node.input[0] = out
        count += 1
    nodes = []
    for n in graph.node:
        nodes.extend(guards.get(id(n), []))
        nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def remove_unused_constants(model: onnx.ModelProto) -> None:
    """Drop Constant nodes and initializers that no node reads any more."""
    graph = model.graph
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] not in used)]
    del graph.node[:]
    graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
