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

from collections.abc import Collection

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


FLOAT_STEM_SUFFIX = "_float_stem"
"""Suffix of the float weights :func:`float_stem` writes; kernel reports read it to say why."""


def _dequantize(values: dict[str, np.ndarray], dq: onnx.NodeProto) -> np.ndarray:
    """The real values of a DequantizeLinear of constants, along its ``axis`` (ONNX's default 1)."""
    q = values[dq.input[0]].astype(np.float64)
    scale = values[dq.input[1]].astype(np.float64)
    zero = values[dq.input[2]].astype(np.float64) if len(dq.input) > 2 and dq.input[2] else np.zeros(())
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    shape = [1] * q.ndim
    shape[axis if axis < q.ndim else 0] = -1  # per-channel scales and zero points run along axis
    return ((q - zero.reshape(shape if zero.size > 1 else ())) * scale.reshape(shape if scale.size > 1 else ())).astype(np.float32)


def float_stem(model: onnx.ModelProto) -> int:
    """Run the stem (every conv reading the network input through its input quantizer) as a float
    convolution on the quantized input: its integer weights and bias become their float values.

    Why: with one input channel onnxruntime's int8 conv wastes most of each dot product. Measured
    on an AVX-512 VNNI EPYC (onnxruntime 1.32, 1 thread, batch 32, 28x28): a 1->24 3x3/2 stem took
    125 us as QLinearConv against 22 us as a float conv (plus ~40 us of re-quantization and layout
    changes); a front model's whole file ran 0.87x the time of its all-integer export, with the same
    logits on 999 of 1,000 test images (one rounding tie moved one image's logits; same top-1). Exactness: the same integers times the same scales, accumulated in float
    instead of int32. Call before :func:`guard_float_weights`, which then keeps onnxruntime from
    re-quantizing these weights. Returns the number of convs changed."""
    graph = model.graph
    values = _constant_values(graph)
    producer = {o: n for n in graph.node for o in n.output}
    inputs = {i.name for i in graph.input} - set(values)
    count = 0
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        t, hops = node.input[0], 0
        while t not in inputs and t in producer and producer[t].op_type in ("QuantizeLinear", "Clip", "DequantizeLinear") and hops < 4:
            t, hops = producer[t].input[0], hops + 1
        if t not in inputs:
            continue
        weight = producer.get(node.input[1])
        if weight is None or weight.op_type != "DequantizeLinear" or not all(i in values for i in weight.input if i):
            continue  # float weights already (the genome's), or not constant
        for index in (1, 2):
            dq = producer.get(node.input[index]) if len(node.input) > index and node.input[index] else None
            if dq is not None and dq.op_type == "DequantizeLinear" and all(i in values for i in dq.input if i):
                node.input[index] = _add_constant(graph, f"{dq.output[0]}{FLOAT_STEM_SUFFIX}", _dequantize(values, dq))
        count += 1
    if count:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        keep = [n for n in graph.node if n.op_type != "DequantizeLinear" or n.output[0] in used]
        del graph.node[:]
        graph.node.extend(keep)
        remove_unused_constants(model)
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


# ---------------------------------------------------------------------------------------------
# Integer deployment (``--format onnx-int``) and TensorRT's explicit quantization (``tensorrt``)


def _insert_before(graph: onnx.GraphProto, before: dict[int, onnx.NodeProto], dropped: Collection[int] = ()) -> None:
    """Rewrite the node list in order: ``before[i]`` goes just ahead of node ``i`` (graph order
    stays topological), and the nodes at the ``dropped`` positions are left out."""
    nodes = []
    for i, n in enumerate(graph.node):
        if i in dropped:
            continue
        if i in before:
            nodes.append(before[i])
        nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)


def _new_name(graph: onnx.GraphProto, base: str) -> str:
    taken = {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output}
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def _add_constant(graph: onnx.GraphProto, base: str, value: np.ndarray) -> str:
    name = _new_name(graph, base)
    graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def fold_constant_clips(model: onnx.ModelProto) -> int:
    """Replace every ``Clip`` of constants (Brevitas's sub-8-bit weight clip, ``int8 -> Clip ->
    DequantizeLinear``) by its result, so a weight is one integer initializer read by its DQ
    (the form integer kernels and TensorRT take). Returns the number folded."""
    graph = model.graph
    values = _constant_values(graph)
    folded = 0
    keep = []
    for n in graph.node:
        if n.op_type == "Clip" and len(n.input) == 3 and all(i in values for i in n.input):
            v = np.clip(values[n.input[0]], values[n.input[1]], values[n.input[2]]).astype(values[n.input[0]].dtype)
            graph.initializer.append(numpy_helper.from_array(v, n.output[0]))
            values[n.output[0]] = v
            folded += 1
            continue
        keep.append(n)
    del graph.node[:]
    graph.node.extend(keep)
    remove_unused_constants(model)
    return folded


def bias_scales(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The int32 step ``s_x * s_w`` (float32, one per output channel or one) of every float bias
    initializer of a Conv/Gemm whose input and weight come from DequantizeLinear with constant
    scales, by initializer name (Brevitas names them after the torch parameter,
    ``blocks.0.dw.conv.bias``), so the torch model can use exactly the bias the file holds."""
    graph = model.graph
    values = _constant_values(graph)
    producer = {o: n for n in graph.node for o in n.output}
    out: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or node.input[2] not in values:
            continue
        if values[node.input[2]].dtype != np.float32:
            continue
        dq_x, dq_w = producer.get(node.input[0]), producer.get(node.input[1])
        if dq_x is None or dq_w is None or dq_x.op_type != "DequantizeLinear" or dq_w.op_type != "DequantizeLinear":
            continue
        if dq_x.input[1] not in values or dq_w.input[1] not in values or values[dq_x.input[1]].size != 1:
            continue
        s_x = values[dq_x.input[1]].astype(np.float32).reshape(())
        s_w = values[dq_w.input[1]].astype(np.float32).reshape(-1)
        out[node.input[2]] = (s_x * s_w).astype(np.float32)
    return out


def quantize_bias_int32(model: onnx.ModelProto) -> int:
    """Give every Conv/Gemm whose input and weight come from DequantizeLinear an int32 bias:
    ``round(b / (s_x * s_w))`` read by a DQ of scale ``s_x * s_w`` (zero point 0), as
    onnxruntime's QLinearConv / QGemm fusion and TensorRT require. At low bit-widths the step is
    coarse (2-bit activations x 2-bit weights: a step of ~0.3), so the torch model must use the
    rounded bias too (:func:`flightco.nn.deploy.snap_biases`, from :func:`bias_scales`) for
    the file to match it. Returns the number of layers changed."""
    graph = model.graph
    values = _constant_values(graph)
    scales = bias_scales(model)
    inserted: dict[int, onnx.NodeProto] = {}  # node index -> its bias DQ
    for index, node in enumerate(graph.node):
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or node.input[2] not in scales:
            continue
        scale = scales[node.input[2]]
        b = values[node.input[2]]
        q = np.round(b.astype(np.float64) / scale.astype(np.float64)).astype(np.int64)
        if np.abs(q).max(initial=0) >= 2**31:
            continue
        base = f"{node.name or node.output[0]}_bias"
        q_name = _add_constant(graph, f"{base}_int32", q.astype(np.int32))
        s_name = _add_constant(graph, f"{base}_scale", scale if scale.size > 1 else scale.reshape(()))
        z_name = _add_constant(graph, f"{base}_zero", np.zeros(scale.shape if scale.size > 1 else (), np.int32))
        out = _new_name(graph, f"{base}_dq")
        attrs = {"axis": 0} if scale.size > 1 else {}
        inserted[index] = helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [out], name=out, **attrs)
        node.input[2] = out
    _insert_before(graph, inserted)
    remove_unused_constants(model)
    return len(inserted)


def activations_to_uint8(model: onnx.ModelProto) -> int:
    """Re-express every signed int8 activation quantizer as uint8 with zero point ``zp + 128``.

    ``clamp(round(x / s) + 128, 0, 255) - 128 == clamp(round(x / s), -128, 127)``: the same
    function, but onnxruntime's x86 kernels fuse uint8 activations into QLinearConv/QLinearAdd
    in every position, while int8 pairs fuse only when the Q feeds straight into a DQ (a Clip or
    a fan-out keeps them float). Sub-8-bit clips between the Q and its DQs shift by 128 too.
    Weights (DQ of a constant) stay int8. Returns the number of quantizers changed."""
    graph = model.graph
    values = _constant_values(graph)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    changed = 0
    for q in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        if q.input[0] in values or len(q.input) < 3 or q.input[2] not in values or values[q.input[2]].dtype != np.int8:
            continue
        zp = values[q.input[2]].astype(np.int16) + 128
        z_name = _add_constant(graph, f"{q.name or q.output[0]}_zero_uint8", zp.astype(np.uint8))
        q.input[2] = z_name
        stack = list(consumers.get(q.output[0], []))
        while stack:
            c = stack.pop()
            if c.op_type == "DequantizeLinear":
                c.input[2] = z_name
            elif c.op_type == "Clip" and len(c.input) == 3 and c.input[1] in values and c.input[2] in values:
                lo = values[c.input[1]].astype(np.int16) + 128
                hi = values[c.input[2]].astype(np.int16) + 128
                c.input[1] = _add_constant(graph, f"{c.name or c.output[0]}_min_uint8", lo.astype(np.uint8))
                c.input[2] = _add_constant(graph, f"{c.name or c.output[0]}_max_uint8", hi.astype(np.uint8))
                stack.extend(consumers.get(c.output[0], []))
            else:
                raise ValueError(f"activations_to_uint8: {q.name} feeds {c.op_type} {c.name}, not a DQ or Clip")
        changed += 1
    remove_unused_constants(model)
    return changed


def clip_before_quantize(model: onnx.ModelProto) -> int:
    """Rewrite every ``Q -> Clip(int) -> DQ`` as ``Clip(float) -> Q -> DQ`` (TensorRT takes no
    integer op between Q and DQ). Exact: rounding is monotonic and the bounds are integers, so
    ``clamp(round(x/s)+z, lo, hi) == round(clamp(x, (lo-z-0.49)s, (hi-z+0.49)s)/s)+z`` (the
    float bounds lie just under half a step beyond the integer ones, so they round onto them). Returns the chains rewritten."""
    graph = model.graph
    values = _constant_values(graph)
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    index = {o: i for i, n in enumerate(graph.node) for o in n.output}
    before: dict[int, onnx.NodeProto] = {}  # index of a Q -> the float Clip to put before it
    dropped: set[int] = set()  # indices of integer Clips
    for ci, clip in enumerate(graph.node):
        if clip.op_type != "Clip" or len(clip.input) < 3:
            continue
        q = producer.get(clip.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] in values:
            continue
        if not all(n in values for n in (clip.input[1], clip.input[2], q.input[1])) or values[q.input[1]].size != 1:
            continue
        users = consumers.get(clip.output[0], [])
        if not users or any(u.op_type != "DequantizeLinear" for u in users):
            continue
        s = float(values[q.input[1]].reshape(()))
        z = float(values[q.input[2]].reshape(())) if len(q.input) > 2 and q.input[2] in values else 0.0
        lo = (float(values[clip.input[1]].reshape(())) - z - 0.49) * s
        hi = (float(values[clip.input[2]].reshape(())) - z + 0.49) * s
        base = f"{clip.name or clip.output[0]}_float"
        lo_name = _add_constant(graph, f"{base}_min", np.array(lo, np.float32))
        hi_name = _add_constant(graph, f"{base}_max", np.array(hi, np.float32))
        clipped = _new_name(graph, f"{base}_out")
        qi = index[clip.input[0]]
        before[qi] = helper.make_node("Clip", [q.input[0], lo_name, hi_name], [clipped], name=base)
        graph.node[qi].input[0] = clipped
        for u in users:
            u.input[0] = q.output[0]
        dropped.add(ci)
    _insert_before(graph, before, dropped)
    remove_unused_constants(model)
    return len(dropped)


SATURATION_SAFE_WEIGHT = 64
"""Largest |int8 weight| for which onnxruntime's AVX2 u8 x s8 kernels cannot saturate: they add
pairs of products in 16 bits (``vpmaddubsw``), and ``2 * 255 * 64 < 32767``. Chips with VNNI
accumulate in 32 bits and have no such limit."""


def _feeds_depthwise(graph: onnx.GraphProto, tensor: str) -> bool:
    """Whether ``tensor`` is the weight input of a grouped (depthwise) Conv."""
    for n in graph.node:
        if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] == tensor:
            return any(a.name == "group" and helper.get_attribute_value(a) > 1 for a in n.attribute)
    return False


def wide_weights_to_uint8(model: onnx.ModelProto, limit: int = SATURATION_SAFE_WEIGHT) -> int:
    """Re-express int8 weights that use more than ``limit`` levels (8-bit layers) as uint8 with
    zero point 128: the same values, but onnxruntime then runs a u8 x u8 kernel that widens to
    16 bits before multiplying, so no pair of products saturates on CPUs without VNNI (measured
    here, an AMD EPYC with AVX2 only: u8 x s8 8-bit layers cost 21 points of top-1 agreement).
    Sub-8-bit weights (|w| <= 63) keep int8 and the faster kernel, and so do **depthwise**
    weights at any width: MLAS's depthwise kernels (the symmetric one and the generic one) do not
    saturate on full-range int8 weights (measured on an AVX2-only EPYC: the reference
    evaluation's output codes, bar the usual one-code float rounding at the output quantizer, on
    16/24/32-channel 3x3 and 5x5 layers, where a dense conv with the same weights missed by up to
    93 codes; ``tests/test_channel_pad.py`` checks it on the CPU it runs on), and zero point 0
    keeps them on the symmetric kernel: 1.2-1.5x faster than the uint8 form per 8-bit depthwise
    layer at batch 32 there. Returns the layers changed."""
    graph = model.graph
    values = _constant_values(graph)
    inits = {i.name: i for i in graph.initializer}
    changed = 0
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear"]:
        w = values.get(dq.input[0])
        if w is None or w.dtype != np.int8 or w.ndim < 2 or np.abs(w.astype(np.int16)).max(initial=0) <= limit:
            continue
        if _feeds_depthwise(graph, dq.output[0]):
            continue
        zp = values[dq.input[2]] if len(dq.input) > 2 and dq.input[2] in values else np.zeros((), np.int8)
        if np.any(zp != 0):
            continue
        if dq.input[0] in inits:
            inits[dq.input[0]].CopyFrom(numpy_helper.from_array((w.astype(np.int16) + 128).astype(np.uint8), dq.input[0]))
        else:
            dq.input[0] = _add_constant(graph, f"{dq.input[0]}_uint8", (w.astype(np.int16) + 128).astype(np.uint8))
        dq.input[2] = _add_constant(graph, f"{dq.name or dq.output[0]}_zero_uint8", np.full(zp.shape, 128, np.uint8))
        changed += 1
    remove_unused_constants(model)
    return changed


def unsigned_to_signed(model: onnx.ModelProto) -> tuple[int, int]:
    """Make every uint8 activation quantizer (zero point 0: ReLU outputs) signed int8 with zero
    point 0, as TensorRT requires. Codes up to 127 (a Clip at or below 127: sub-8-bit ReLUs) map
    exactly; a full 8-bit unsigned range cannot, so its step is doubled (7 bits of magnitude) —
    the one inexact step of the TensorRT form, measured by the export's agreement check.
    Returns (exact, doubled) counts."""
    graph = model.graph
    values = _constant_values(graph)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    exact = doubled = 0
    for q in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        if q.input[0] in values or len(q.input) < 3 or q.input[2] not in values or values[q.input[2]].dtype != np.uint8:
            continue
        if np.any(values[q.input[2]] != 0) or q.input[1] not in values:
            continue
        users = consumers.get(q.output[0], [])
        clips = [u for u in users if u.op_type == "Clip" and len(u.input) == 3 and u.input[2] in values]
        hi = max((int(values[c.input[2]]) for c in clips), default=255) if len(clips) == len(users) else 255
        z_name = _add_constant(graph, f"{q.name or q.output[0]}_zero_int8", np.zeros((), np.int8))
        scale_name = q.input[1]
        if hi > 127:
            scale_name = _add_constant(graph, f"{q.name or q.output[0]}_scale_x2",
                                       (values[q.input[1]].astype(np.float32) * 2).astype(np.float32))
            doubled += 1
        else:
            exact += 1
        q.input[1], q.input[2] = scale_name, z_name
        stack = list(users)
        while stack:
            c = stack.pop()
            if c.op_type == "DequantizeLinear":
                c.input[1], c.input[2] = scale_name, z_name
            elif c.op_type == "Clip" and len(c.input) == 3:
                c.input[1] = _add_constant(graph, f"{c.name or c.output[0]}_min_int8", np.array(0, np.int8))
                c.input[2] = _add_constant(graph, f"{c.name or c.output[0]}_max_int8", np.array(min(int(values[c.input[2]]), 127), np.int8))
                stack.extend(consumers.get(c.output[0], []))
    remove_unused_constants(model)
    return exact, doubled
