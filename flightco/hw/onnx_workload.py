"""ONNX graph -> the fused kernels :func:`flightco.hw.workload.workload` builds (torch-free).

So that any ONNX model can be priced on any profile: a torchvision/timm export, a user's own
file, or what ``flightco export`` wrote. Read are float graphs, QCDQ/QDQ graphs (onnxruntime,
TensorRT) and QONNX graphs (``Quant`` nodes, FINN):

- ``Conv`` (``group == cin`` -> ``dwconv``), ``ConvInteger``/``QLinearConv``; ``Gemm``/``MatMul``
  -> ``linear``; ``Add`` of two computed tensors -> ``add`` (an Add of a constant is a bias, fused);
  ``GlobalAveragePool``/``AveragePool``/``MaxPool``/``ReduceMean`` -> ``pool``.
- A convolution, its BatchNormalization and its activation are one kernel, as in the workload
  and in runtimes, so BN/ReLU/Clip/Q/DQ nodes are not kernels of their own.
- Bit-widths are read where the graph states them: a ``Quant`` node's bit-width input; the range
  of an integer ``Clip`` between Q and DQ (or on an integer weight), ``levels = max - min + 1``,
  ``bits = ceil(log2(levels))``; a float ``Clip`` after a DQ, whose range divided by the DQ's scale
  gives the levels; else the container type of the quantized tensor (int8/uint8 -> 8, int4 -> 4).
  A tensor no quantizer produced is float (32 bits).
- Kernel names follow the module path in the node name, mapped as :func:`flightco.nn.mobilenet.
  kernel_name` does (``/blocks/blocks.3/dw/conv/Conv`` -> ``block3.dw``), so a flightco export reads
  back with the Genome's kernel names; unnamed nodes are ``conv0``, ``add1``, ...

Differences from the Genome workload, by design: element-wise kernels (``add``, ``pool``) are given
the bits of what they really read — float in a flightco export, where the Genome workload prices
them at a neighbouring layer's bits; FLightNN term counts are not recovered (the weights are int8
integers); a convolution whose padding is not ``k // 2`` gets an input size that yields the true
output size (so MACs are exact). FLOAT_BITS (32) stands for float.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from flightco.errors import ProfileError
from flightco.hw.workload import LayerWorkload
from flightco.space import FLOAT_BITS

PASS_THROUGH = {"Identity", "Relu", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "MaxPool",
                "Dropout", "Cast"}
QUANT_OPS = {"Quant", "BipolarQuant", "Trunc", "IntQuant", "FloatQuant"}  # QONNX custom ops
POOL_OPS = {"GlobalAveragePool", "AveragePool", "MaxPool", "GlobalMaxPool", "ReduceMean"}
_INT_BITS = {2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 21: 4, 22: 4}  # onnx TensorProto dtypes


def _container_bits(elem_type: int) -> int:
    bits = _INT_BITS.get(elem_type, FLOAT_BITS)
    return bits if bits <= 8 else FLOAT_BITS


def _bits_from_levels(levels: float) -> int:
    b = max(1, math.ceil(math.log2(max(levels, 2)) - 1e-9))
    return b if b <= 8 else FLOAT_BITS


def _module_path(node_name: str) -> str:
    """``/blocks/blocks.0/expand/conv/Conv`` -> ``blocks.0.expand.conv`` (PyTorch's module path)."""
    parts = [p for p in node_name.strip("/").split("/") if p][:-1]
    out = [p for i, p in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
    return ".".join(out)


def _kernel_name(path: str, op: str) -> str:
    path = re.sub(r"^blocks\.(\d+)", r"block\1", path)
    path = re.sub(r"\.conv$", "", path)
    return f"{path}.add" if op == "add" and path else path


class _Graph:
    """Producers, consumers, constants and shapes of one ONNX graph."""

    def __init__(self, model: Any) -> None:
        import numpy as np
        from onnx import numpy_helper

        self.model = model
        g = model.graph
        self.init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.init_type = {i.name: i.data_type for i in g.initializer}
        for n in g.node:  # Constant nodes are constants too
            if n.op_type == "Constant" and n.output:
                for a in n.attribute:
                    if a.name == "value":
                        self.init[n.output[0]] = numpy_helper.to_array(a.t)
                        self.init_type[n.output[0]] = a.t.data_type
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.shapes = _infer_shapes(model)
        self.np = np
        self._bits: dict[str, int] = {}

    def const(self, name: str) -> Any | None:
        return self.init.get(name)

    def is_const(self, name: str, depth: int = 0) -> bool:
        if name in self.init:
            return True
        p = self.producer.get(name)
        if p is None or depth > 20:
            return False
        return all(self.is_const(i, depth + 1) for i in p.input if i)

    def weight_shape(self, name: str, depth: int = 0) -> tuple[int, ...] | None:
        if name in self.init:
            return tuple(self.init[name].shape)
        if name in self.shapes:
            return self.shapes[name]
        p = self.producer.get(name)
        if p is None or depth > 20 or not p.input:
            return None
        return self.weight_shape(p.input[0], depth + 1)

    def scalar(self, name: str) -> float | None:
        v = self.const(name) if name else None
        if v is None:
            return None
        return float(self.np.max(self.np.abs(v))) if v.size > 1 else float(v.reshape(-1)[0])

    def clip_bounds(self, node: Any) -> tuple[float, float] | None:
        lo = self.scalar(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        hi = self.scalar(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        for a in node.attribute:  # opset < 11
            if a.name == "min":
                lo = a.f
            if a.name == "max":
                hi = a.f
        if lo is None or hi is None:
            return None
        if len(node.input) > 1 and node.input[1]:
            v = self.const(node.input[1])
            if v is not None and v.size > 1:
                lo = float(self.np.min(v))
        return lo, hi

    def bits(self, name: str, depth: int = 0) -> int:
        """Bits of a tensor as the graph quantizes it (FLOAT_BITS when nothing quantizes it)."""
        if name in self._bits:
            return self._bits[name]
        b = self._bits_uncached(name, depth)
        self._bits[name] = b
        return b

    def _weight_bits(self, dq: Any) -> int:
        """Bits of integer weights read by a DequantizeLinear, from their values: symmetric
        narrow-range weights scaled by their (per-channel) maximum, as Brevitas quantizes them, put
        +-(2**(b-1) - 1) in every channel, so the largest magnitude gives b exactly even when the
        container is int8 or uint8 with zero point 128 (the onnx-int form stores no weight Clip)."""
        import numpy as np

        container = _container_bits(self.init_type[dq.input[0]])
        q = np.asarray(self.const(dq.input[0]), dtype=np.int64)
        zp_name = dq.input[2] if len(dq.input) > 2 and dq.input[2] else None
        zp = np.asarray(self.const(zp_name), dtype=np.int64) if zp_name and self.const(zp_name) is not None else 0
        if q.size == 0:
            return container
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        if np.ndim(zp) == 1 and q.ndim > 1:
            shape = [1] * q.ndim
            shape[axis] = -1
            zp = np.reshape(zp, shape)
        peak = int(np.abs(q - zp).max())
        if peak <= 0:
            return container
        return min(container, math.ceil(math.log2(peak + 1)) + 1)

    def _bits_uncached(self, name: str, depth: int) -> int:
        if depth > 50:
            return FLOAT_BITS
        if name in self.init:
            return _container_bits(self.init_type.get(name, 1))
        p = self.producer.get(name)
        if p is None:
            return FLOAT_BITS  # a graph input
        op = p.op_type
        if op == "Quant" or op == "IntQuant":
            bw = self.scalar(p.input[3]) if len(p.input) > 3 else None
            return int(round(bw)) if bw is not None and bw <= 8 else FLOAT_BITS
        if op == "BipolarQuant":
            return 1
        if op == "QuantizeLinear":
            zp = p.input[2] if len(p.input) > 2 and p.input[2] else None
            if zp and zp in self.init_type:
                return _container_bits(self.init_type[zp])
            for a in p.attribute:
                if a.name == "output_dtype" and a.i:
                    return _container_bits(a.i)
            return 8  # default output type uint8
        if op == "DequantizeLinear":
            if p.input[0] in self.init and self.init_type.get(p.input[0], 1) in _INT_BITS:
                return self._weight_bits(p)
            return self.bits(p.input[0], depth + 1)
        if op in ("QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearGlobalAveragePool"):
            return 8
        if op == "Clip":
            bounds = self.clip_bounds(p)
            inner = self.bits(p.input[0], depth + 1)
            if bounds is None:
                return inner
            lo, hi = bounds
            src = self.producer.get(p.input[0])
            while src is not None and src.op_type in PASS_THROUGH:
                src = self.producer.get(src.input[0])
            if src is not None and src.op_type == "DequantizeLinear":  # a float clip of dequantized values
                scale = self.scalar(src.input[1])
                return min(inner, _bits_from_levels(round((hi - lo) / scale) + 1)) if scale else inner
            integer = (p.input[0] in self.init and self.init_type.get(p.input[0], 1) != 1) or (
                src is not None and src.op_type in ("QuantizeLinear", "Clip") and inner < FLOAT_BITS)
            if integer:  # an integer clip on a quantized tensor
                return min(inner, _bits_from_levels(hi - lo + 1))
            return inner  # a float clip (ReLU6) keeps what it clips
        if op in PASS_THROUGH and p.input:
            return self.bits(p.input[0], depth + 1)
        return FLOAT_BITS


def _infer_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Static shapes of every tensor at batch 1 (QONNX custom ops treated as identities)."""
    import onnx
    from onnx import helper, shape_inference

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for inp in g.input:
        dims = inp.type.tensor_type.shape.dim
        for d in dims[:1]:
            if not d.HasField("dim_value"):
                d.dim_value = 1
    nodes = []
    for n in g.node:
        if n.domain not in ("", "ai.onnx") and n.op_type in QUANT_OPS:
            nodes.append(helper.make_node("Identity", [n.input[0]], [n.output[0]], name=n.name))
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    try:
        inferred = shape_inference.infer_shapes(m, data_prop=True)
    except Exception as exc:  # onnx raises several types
        raise ProfileError(f"cannot infer the graph's tensor shapes: {str(exc).splitlines()[0]}") from None
    out: dict[str, tuple[int, ...]] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            out[vi.name] = dims
    return out


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def workload_from_model(model: Any, source: str = "model") -> list[LayerWorkload]:
    """The fused kernels of an ``onnx.ModelProto`` in graph order (see the module docstring)."""
    g = _Graph(model)
    specs: list[dict[str, Any]] = []
    counters: dict[str, int] = {}

    def shape(t: str, node: Any) -> tuple[int, ...]:
        s = g.shapes.get(t)
        if s is None or any(d <= 0 for d in s[1:]):
            raise ProfileError(f"{source}: node {node.name or node.op_type}: the shape of {t!r} is unknown or "
                               "dynamic; export with fixed input sizes")
        return s

    def name_for(node: Any, op: str) -> str:
        path = _module_path(node.name) if node.name.startswith("/") else ""
        name = _kernel_name(path, op) if path else ""
        if not name:
            name = f"{op}{counters.get(op, 0)}"
            counters[op] = counters.get(op, 0) + 1
        return name

    for node in model.graph.node:
        op = node.op_type
        if op in ("Conv", "ConvInteger", "QLinearConv"):
            x, wt = (node.input[0], node.input[3]) if op == "QLinearConv" else (node.input[0], node.input[1])
            ws = g.weight_shape(wt)
            xs = shape(x, node)
            if ws is None or len(ws) != 4 or len(xs) != 4:
                raise ProfileError(f"{source}: node {node.name or op}: only 2-D convolutions are read")
            group = int(_attr(node, "group", 1))
            cout, cin = int(ws[0]), int(ws[1]) * group
            k = int(_attr(node, "kernel_shape", [ws[2], ws[3]])[0])
            stride = int(_attr(node, "strides", [1, 1])[0])
            pads = _attr(node, "pads", [0, 0, 0, 0])
            h, w = int(xs[2]), int(xs[3])
            if _attr(node, "auto_pad", b"NOTSET") in (b"SAME_UPPER", b"SAME_LOWER", "SAME_UPPER", "SAME_LOWER"):
                pads = [k // 2] * 4
            # padding other than k//2: shift the input size so that the output size stays exact
            h += pads[0] + pads[2] - 2 * (k // 2)
            w += pads[1] + pads[3] - 2 * (k // 2)
            kind = "dwconv" if group > 1 and group == cin else "conv"
            w_bits = 8 if op != "Conv" else g.bits(wt)
            a_bits = 8 if op != "Conv" else g.bits(x)
            specs.append(dict(name=name_for(node, kind), op=kind, cin=cin, cout=cout, h=max(h, 1), w=max(w, 1),
                              k=k, stride=stride, groups=group, w_bits=w_bits, a_bits=a_bits))
        elif op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "QGemm"):
            x = node.input[0]
            wt = node.input[3] if op in ("QLinearMatMul", "QGemm") else node.input[1]
            ws = g.weight_shape(wt)
            if ws is None or len(ws) < 2:
                raise ProfileError(f"{source}: node {node.name or op}: the shape of its weight {wt!r} is unknown")
            trans_b = int(_attr(node, "transB", 0)) if op in ("Gemm", "QGemm") else 0
            cout, cin = (int(ws[0]), int(ws[1])) if trans_b else (int(ws[-1]), int(ws[-2]))
            integer = op not in ("Gemm", "MatMul")
            specs.append(dict(name=name_for(node, "linear"), op="linear", cin=cin, cout=cout, h=1, w=1, k=1, stride=1,
                              groups=1, w_bits=8 if integer else g.bits(wt), a_bits=8 if integer else g.bits(x)))
        elif op in ("Add", "QLinearAdd", "Sum"):
            ins = [node.input[0], node.input[3]] if op == "QLinearAdd" else list(node.input)
            if any(g.is_const(i) for i in ins):
                continue  # a bias: fused into the kernel before it
            s = shape(node.output[0], node)
            c, h, w = (int(s[1]), int(s[2]), int(s[3])) if len(s) == 4 else (int(s[-1]), 1, 1)
            a_bits = 8 if op == "QLinearAdd" else max(g.bits(i) for i in ins)
            specs.append(dict(name=name_for(node, "add"), op="add", cin=c, cout=c, h=h, w=w, k=1, stride=1,
                              groups=1, w_bits=FLOAT_BITS, a_bits=a_bits))
        elif op in POOL_OPS or op == "QLinearGlobalAveragePool":
            s = shape(node.input[0], node)
            if len(s) != 4:
                continue  # a ReduceMean over other axes (e.g. a layer norm): not a pooling kernel
            if op == "ReduceMean":
                axes = _attr(node, "axes", None)
                if axes is None and len(node.input) > 1 and g.const(node.input[1]) is not None:
                    axes = [int(a) for a in g.const(node.input[1]).reshape(-1)]
                if sorted(int(a) % 4 for a in (axes or [])) != [2, 3]:
                    continue
            c, h, w = int(s[1]), int(s[2]), int(s[3])
            k = int(_attr(node, "kernel_shape", [h])[0]) if "Global" not in op and op != "ReduceMean" else h
            stride = int(_attr(node, "strides", [1])[0]) if "Global" not in op and op != "ReduceMean" else 1
            specs.append(dict(name=name_for(node, "pool"), op="pool", cin=c, cout=c, h=h, w=w, k=k, stride=stride,
                              groups=c, w_bits=FLOAT_BITS, a_bits=8 if op.startswith("QLinear") else g.bits(node.input[0])))
    if not specs:
        raise ProfileError(f"{source}: no Conv, Gemm/MatMul, Add or pooling node found")
    seen: dict[str, int] = {}
    for s in specs:  # unique names
        if s["name"] in seen:
            seen[s["name"]] += 1
            s["name"] = f"{s['name']}#{seen[s['name']]}"
        else:
            seen[s["name"]] = 0
    return [LayerWorkload(**s, out_bits=specs[i + 1]["a_bits"] if i + 1 < len(specs) else FLOAT_BITS)
            for i, s in enumerate(specs)]


def workload_from_onnx(path: str | Path) -> list[LayerWorkload]:
    """The fused kernels of the ONNX file ``path``, ready for any profile's ``cost``.

    Example (prices a file on a profile)::

        from flightco.hw.profile import load_profile
        costs = load_profile("hw_profiles/bitfusion.yaml").cost(workload_from_onnx("model.onnx"))
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: file not found")
    try:
        model = onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # protobuf raises DecodeError and others
        raise ProfileError(f"{path}: not an ONNX model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return workload_from_model(model, str(path))
