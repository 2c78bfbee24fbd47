"""Pad depthwise convolutions of an ``onnx-int`` graph to a channel count onnxruntime's fast
integer depthwise kernel takes, exactly (the padded channels compute zeros nobody reads).

Why: onnxruntime's symmetric-weight depthwise kernel (MLAS ``MlasConvSymDepthwise``: int8
weights with zero point 0, which ``onnx-int`` writes) runs only when the channel count is a
multiple of 16 on x86 (8 on ARM64); any other count falls back to a generic per-pixel loop.
Measured on this machine (AMD EPYC, AVX-512 VNNI, onnxruntime 1.32, 1 thread, batch 32, 14x14):
a 5x5 depthwise conv of 72 channels took 735 us, of 80 channels 313 us; a 3x3 one 346 vs 166 us.
The searched widths (24, 40, 72, ...) are often off that multiple.

How, exactly: every dense convolution that writes the depthwise input gets ``pad`` extra
output channels with zero weights and zero bias, so they hold the real value 0 (their quantized
code is the zero point, whatever the activation's per-tensor scale); the depthwise convolution
gets ``pad`` zero filters (``group`` grows with them), so its padded outputs are 0 too; every
convolution that reads the padded tensors gets zero weights on those input channels, so they add
nothing (integer accumulation: ``(x - zp) * 0``). Every real channel's arithmetic is unchanged,
bit for bit. The padded tensors are the depthwise input followed through per-tensor
``Relu | Q | Clip | DQ`` and residual ``Add`` nodes (0 + 0 = 0 in ``QLinearAdd``): in a residual
block the trunk, the block's projection and the next block's readers grow together, and other
depthwise convs reading the same trunk are padded with it. The depthwise output must reach one
dense conv through single-consumer pass-through ops. A stream that touches anything else (a
graph input or output, a pool, a per-channel activation quantizer) is left alone.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from flightco.onnx_passes import _add_constant, _constant_values, remove_unused_constants

DEPTHWISE_CHANNEL_ALIGN = 16
"""Channel multiple of MLAS's fast symmetric depthwise kernel on x86 (ARM64 needs 8, which 16 meets)."""

_PASS_THROUGH = ("Relu", "QuantizeLinear", "Clip", "DequantizeLinear")


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(helper.get_attribute_value(a))
    return default


class _Graph:
    """Producer / consumer maps and constant values of one graph, for a walk along a chain."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.values = _constant_values(self.graph)
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in self.graph.output}

    def sole_consumer(self, tensor: str) -> onnx.NodeProto | None:
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.outputs else None

    def per_tensor(self, node: onnx.NodeProto) -> bool:
        """A Q/DQ with scalar scale and zero point (an activation quantizer), or any other pass-through op."""
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            return True
        return all(i in self.values and self.values[i].size == 1 for i in node.input[1:3] if i)

    def weight(self, conv: onnx.NodeProto, index: int) -> tuple[onnx.NodeProto | None, np.ndarray] | None:
        """(its DequantizeLinear or None, the constant integer / float array) of a conv's input ``index``."""
        if len(conv.input) <= index or not conv.input[index]:
            return None
        name = conv.input[index]
        if name in self.values:
            return None, self.values[name]
        dq = self.producer.get(name)
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in self.values:
            return dq, self.values[dq.input[0]]
        return None


def _pad0(a: np.ndarray, pad: int, axis: int, edge: bool = False) -> np.ndarray:
    """Pad ``a`` by ``pad`` along ``axis`` with zeros, or with copies of its last entry (``edge``)."""
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, pad)
    return np.pad(a, widths, mode="edge") if edge else np.pad(a, widths)


def _pad_real_zeros(q: np.ndarray, pad: int, axis: int, zp: np.ndarray | None) -> np.ndarray:
    """Pad integer weights ``q`` by ``pad`` along ``axis`` with codes whose real value is 0: the
    zero point (uint8 8-bit weights have 128; a per-channel zero point runs along axis 0, so new
    output channels take the last channel's and new input channels each row's own)."""
    out = _pad0(q, pad, axis)
    if zp is None or not np.any(zp != 0):
        return out
    z = np.asarray(zp).reshape(-1)
    index = [slice(None)] * q.ndim
    index[axis] = slice(q.shape[axis], None)
    if z.size == 1:
        out[tuple(index)] = z[0]
    elif axis == 0:
        out[tuple(index)] = z[-1]
    else:
        out[tuple(index)] = z.reshape([-1] + [1] * (q.ndim - 1))
    return out


def _add_known_constant(g: _Graph, base: str, value: np.ndarray) -> str:
    """Add a constant to the graph and to ``g``'s values, so a later pad of the same input (a
    residual projection is padded on both axes) reads the padded array without a rebuild."""
    name = _add_constant(g.graph, base, value)
    g.values[name] = value
    return name


def _pad_channel_constant(g: _Graph, conv: onnx.NodeProto, index: int, pad: int, axis: int, channels: int) -> None:
    """Pad input ``index`` of ``conv`` (weight or bias, constant or DQ of a constant) by ``pad``
    real zeros along ``axis``; a per-channel DQ's scale and zero point repeat their last channel's. New
    constants are written (Brevitas shares zero-point constants between layers)."""
    found = g.weight(conv, index)
    if found is None:
        raise ValueError(f"{conv.name}: input {index} is not a constant")
    dq, value = found
    if dq is None:
        conv.input[index] = _add_known_constant(g, f"{conv.input[index]}_padded", _pad0(value, pad, axis))
        return
    zp = g.values.get(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
    dq.input[0] = _add_known_constant(g, f"{dq.input[0]}_padded", _pad_real_zeros(value, pad, axis, zp))
    if axis == 0:  # per output channel: the DQ's scale / zero point are per channel too (or scalars)
        for j in (1, 2):  # scales repeat the last channel's (onnxruntime fuses an int32 bias only if its
            # scale is input scale x weight scale, channel by channel); zero points are 0 there
            if len(dq.input) > j and dq.input[j] and g.values[dq.input[j]].size == channels:
                dq.input[j] = _add_known_constant(g, f"{dq.input[j]}_padded", _pad0(g.values[dq.input[j]], pad, 0, edge=True))


class _Stream:
    """The tensors that must grow by the same ``pad`` channels together, and the convs that
    write, read or depthwise-filter them: the input of one depthwise conv, followed through
    per-tensor pass-through ops and residual ``Add`` nodes (whose inputs and output share their
    channels) to every dense conv that writes into it and every conv that reads from it."""

    def __init__(self) -> None:
        self.tensors: list[str] = []
        self.writers: list[onnx.NodeProto] = []   # dense convs: grow output channels (zero filters)
        self.readers: list[onnx.NodeProto] = []   # dense convs: grow input channels (zero weights)
        self.depthwise: list[tuple[onnx.NodeProto, onnx.NodeProto, list[str]]] = []  # (dw, its dense reader, chain)


def _stream(g: _Graph, tensor: str, channels: int) -> _Stream | None:
    """Walk the stream of ``tensor`` (``channels`` wide); ``None`` where any node touching it is
    not one the padding keeps exact (a graph input or output, a pool, a per-channel quantizer...)."""
    st, seen, todo = _Stream(), set(), [tensor]
    nodes_seen: set[str] = set()

    def visit(node: onnx.NodeProto) -> bool:
        """Record ``node`` once; False if it was recorded already."""
        key = node.name or node.output[0]
        if key in nodes_seen:
            return False
        nodes_seen.add(key)
        return True

    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        st.tensors.append(t)
        if t in g.outputs or t in g.values:
            return None
        node = g.producer.get(t)
        if node is None:
            return None  # a graph input
        if node.op_type in _PASS_THROUGH:
            if not g.per_tensor(node):
                return None
            todo.append(node.input[0])
        elif node.op_type == "Add":
            todo.extend(node.input[:2])
        elif node.op_type == "Conv" and _attr(node, "group", 1) == 1:
            if visit(node):
                st.writers.append(node)
        else:
            return None
        for user in g.consumers.get(t, []):
            if user.op_type in _PASS_THROUGH:
                if not g.per_tensor(user) or user.input[0] != t:
                    return None
                todo.append(user.output[0])
            elif user.op_type == "Add":
                todo.append(user.output[0])
            elif user.op_type == "Conv" and user.input[0] == t and _attr(user, "group", 1) == 1:
                if visit(user):
                    st.readers.append(user)
            elif user.op_type == "Conv" and user.input[0] == t and _attr(user, "group", 1) == channels:
                if visit(user):
                    down = _conv_chain_down(g, user.output[0])
                    if down is None:
                        return None
                    st.depthwise.append((user, down[0], down[1]))
            else:
                return None
    return st


def _conv_chain_down(g: _Graph, tensor: str) -> tuple[onnx.NodeProto, list[str]] | None:
    """The dense conv that ``tensor`` reaches through single-consumer pass-through ops."""
    chain = [tensor]
    node = g.sole_consumer(tensor)
    while node is not None and node.op_type in _PASS_THROUGH:
        if not g.per_tensor(node) or node.input[0] != tensor:
            return None
        tensor = node.output[0]
        chain.append(tensor)
        node = g.sole_consumer(tensor)
    if node is None or node.op_type != "Conv" or _attr(node, "group", 1) != 1 or node.input[0] != tensor:
        return None
    return node, chain


def pad_depthwise_channels(model: onnx.ModelProto, align: int = DEPTHWISE_CHANNEL_ALIGN) -> int:
    """Pad every eligible depthwise conv of ``model`` to a multiple of ``align`` channels, in
    place (see the module docstring); returns how many were padded."""
    g = _Graph(model)
    padded = 0
    stale: set[str] = set()
    for dw in [n for n in g.graph.node if n.op_type == "Conv"]:
        groups = _attr(dw, "group", 1)
        found = g.weight(dw, 1)
        if groups <= 1 or found is None or groups % align == 0:
            continue
        w = found[1]
        if w.ndim != 4 or w.shape[0] != groups or w.shape[1] != 1:
            continue
        st = _stream(g, dw.input[0], groups)
        if st is None or not st.writers:
            continue
        pad = -groups % align
        edits = [(conv, i, 0) for conv in st.writers + [d for d, _, _ in st.depthwise] for i in (1, 2)
                 if len(conv.input) > i and conv.input[i]]
        edits += [(conv, 1, 1) for conv in st.readers + [r for _, r, _ in st.depthwise]]
        if any(g.weight(conv, i) is None for conv, i, _ in edits):
            continue  # a weight or bias that is not a constant: leave this stream as it is
        shape = {id(conv): g.weight(conv, 1)[1].shape for conv, _, _ in edits}
        if any(shape[id(c)][0] != groups for c in st.writers) \
                or any(shape[id(c)][1] != groups for c, _, axis in edits if axis == 1):
            continue  # a width that is not the stream's: leave it
        for conv, i, axis in edits:  # a residual projection is padded on both axes (it reads the
            _pad_channel_constant(g, conv, i, pad, axis, groups)  # depthwise output and writes the trunk)
        for d, _, chain in st.depthwise:
            for a in d.attribute:
                if a.name == "group":
                    a.i = groups + pad
            stale.update(chain)
        stale.update(st.tensors)
        g = _Graph(model)  # constants and names changed: rebuild the maps
        padded += len(st.depthwise)
    if padded:
        keep = [v for v in model.graph.value_info if v.name not in stale]  # their channel counts changed
        del model.graph.value_info[:]
        model.graph.value_info.extend(keep)
        remove_unused_constants(model)
    return padded

