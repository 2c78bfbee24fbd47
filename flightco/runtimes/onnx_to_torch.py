"""A flightco QDQ ONNX file as a torch module whose quantizers are torch's own
quantize/dequantize ops: the bridge to ExecuTorch's XNNPACK int8 path.

Why from the ONNX file and not from the Brevitas model: the file is the deploy form that was
already verified against PyTorch (BN folded, int32 biases, every conv input and output
quantized), and its Q/DQ nodes carry the trained quantizers' exact scales and zero points.
Each ``QuantizeLinear``/``DequantizeLinear`` becomes ``quantized_decomposed.quantize_per_tensor``
/ ``dequantize_per_tensor`` (``dequantize_per_channel`` for per-channel weights) — the ops
PT2E quantization leaves in a graph, which XNNPACK's partitioner lowers to its qs8 kernels.

XNNPACK's quantized kernels are signed (qs8), so unsigned containers are shifted exactly:
``u8`` value ``q`` with zero point ``z`` is ``q - 128`` with zero point ``z - 128`` (same scale,
same real value). Sub-8-bit activations are the integer ``Clip`` between a Q and its DQ in the
file; it becomes that quantizer's ``quant_min``/``quant_max`` and, because XNNPACK's quantize
honours only the int8 range, also a float clamp to the same end codes' real values before the Q. Int32 biases are dequantized
here to the float values they encode (XNNPACK requantizes them with the same input x weight
scale).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SUPPORTED = ("QuantizeLinear", "DequantizeLinear", "Conv", "Relu", "Clip", "Add", "GlobalAveragePool",
             "Flatten", "Gemm", "Identity")


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _signed(dtype: np.dtype) -> tuple[int, int, int]:
    """(shift, qmin, qmax) that moves ``dtype``'s container to int8 exactly."""
    if dtype == np.uint8:
        return -128, -128, 127
    if dtype == np.int8:
        return 0, -128, 127
    raise ValueError(f"only int8/uint8 quantizers convert to XNNPACK qs8, got {dtype}")


def onnx_to_torch(path: Path):
    """A ``torch.nn.Module`` computing the QDQ ONNX file ``path`` with torch quantize/dequantize
    ops (see the module docstring); raises ``ValueError`` naming an op it does not know."""
    import onnx
    import torch
    import torch.nn.functional as F
    from onnx import numpy_helper
    from torch.ao.quantization.fx import _decomposed  # noqa: F401  (registers quantized_decomposed ops)

    qd = torch.ops.quantized_decomposed
    g = onnx.load(str(path)).graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    unknown = sorted({n.op_type for n in g.node if n.op_type not in SUPPORTED + ("Constant",)})
    if unknown:
        raise ValueError(f"{path}: ops {', '.join(unknown)} have no torch translation here")
    producer = {o: n for n in g.node for o in n.output}
    # integer Clip between a Q and its DQ: the quantizer's own range (sub-8-bit activations)
    q_range: dict[str, tuple[float, float]] = {}
    for n in g.node:
        p = producer.get(n.input[0])
        if n.op_type == "Clip" and p is not None and p.op_type == "QuantizeLinear":
            lo = consts.get(n.input[1]) if len(n.input) > 1 and n.input[1] else None
            hi = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            q_range[p.output[0]] = (float(lo) if lo is not None else -np.inf, float(hi) if hi is not None else np.inf)

    users: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)

    def ranged_relu(relu: Any) -> bool:
        """A ReLU read only by a sub-8-bit Q whose range starts at real 0 (zero point = range
        minimum): the Q's float clamp (a hardtanh) does the ReLU, and XNNPACK fuses conv +
        hardtanh into its quantized conv, where conv + ReLU + clamp breaks the partition."""
        out = users.get(relu.output[0], [])
        if len(out) != 1 or out[0].op_type != "QuantizeLinear" or out[0].output[0] not in q_range:
            return False
        q = out[0]
        zp = consts[q.input[2]] if len(q.input) > 2 and q.input[2] else np.zeros((), np.uint8)
        return float(q_range[q.output[0]][0]) <= float(zp) and float(zp) == float(np.iinfo(zp.dtype).min)

    class QDQModule(torch.nn.Module):
        """The file's nodes, executed in order (torch.export traces the loop into one graph)."""

        def __init__(self) -> None:
            super().__init__()
            self.input_name, self.output_name = g.input[0].name, g.output[0].name
            self.steps: list[tuple[str, Any, list[str], list[str]]] = []
            self._n = 0
            for n in g.node:
                if n.op_type != "Constant":
                    self.steps.append(self._plan(n))
            # float initializers read directly by a node (a layer the genome keeps in float: its
            # weight and bias have no DequantizeLinear) become constants computed first
            produced = {o for _, _, _, outs in self.steps for o in outs}
            read = {i for _, _, ins, _ in self.steps for i in ins}
            floats = sorted(name for name in read - produced if name in consts and name != self.input_name)
            self.steps[:0] = [("Const", self._buffer(consts[name].astype(np.float32)), [], [name]) for name in floats]

        def _buffer(self, array: np.ndarray) -> str:
            name = f"c{self._n}"
            self._n += 1
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(array)))
            return name

        def _plan(self, n: Any) -> tuple[str, Any, list[str], list[str]]:
            a = _attrs(n)
            if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
                scale = consts[n.input[1]]
                zp = consts[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros((), np.uint8)
                if n.op_type == "DequantizeLinear" and n.input[0] in consts:
                    return self._constant_dq(n, consts[n.input[0]], scale, zp, a.get("axis", 1))
                shift, qmin, qmax = _signed(zp.dtype)
                if scale.size != 1:
                    raise ValueError(f"{path}: {n.name}: per-channel activation quantizers are not supported")
                clamp = None
                if n.op_type == "QuantizeLinear" and n.output[0] in q_range:
                    lo, hi = q_range[n.output[0]]
                    qmin, qmax = max(qmin, int(lo) + shift), min(qmax, int(hi) + shift)
                    # XNNPACK's quantize ignores a quant_min/quant_max narrower than int8 (measured: 8.7 %
                    # of a 4-bit input quantizer's codes came out unclamped), so the range is also a float
                    # clamp before the Q: exact, since the bounds are real values of the end codes
                    zq = int(zp) + shift
                    clamp = (float(np.float32((qmin - zq) * float(scale))), float(np.float32((qmax - zq) * float(scale))))
                spec = (float(scale), int(zp) + shift, qmin, qmax, clamp)
                return (n.op_type, spec, list(n.input[:1]), list(n.output))
            if n.op_type == "Clip":
                p = producer.get(n.input[0])
                if p is not None and p.op_type == "QuantizeLinear":
                    return ("Identity", None, [n.input[0]], list(n.output))  # folded into the Q's range
                lo = consts.get(n.input[1]) if len(n.input) > 1 and n.input[1] else None
                hi = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
                return ("Clip", (None if lo is None else float(lo), None if hi is None else float(hi)), [n.input[0]], list(n.output))
            if n.op_type == "Conv":
                spec = {"stride": tuple(a.get("strides", [1, 1])), "dilation": tuple(a.get("dilations", [1, 1])),
                        "groups": int(a.get("group", 1))}
                pads = a.get("pads", [0, 0, 0, 0])
                if pads[:2] != pads[2:]:
                    raise ValueError(f"{path}: {n.name}: asymmetric padding is not supported")
                spec["padding"] = tuple(pads[:2])
                return ("Conv", spec, [i for i in n.input if i], list(n.output))
            if n.op_type == "Gemm":
                if a.get("transA", 0) or not a.get("transB", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                    raise ValueError(f"{path}: {n.name}: only Gemm(A, B^T) + C converts")
                return ("Gemm", None, [i for i in n.input if i], list(n.output))
            if n.op_type == "Flatten":
                return ("Flatten", int(a.get("axis", 1)), [n.input[0]], list(n.output))
            if n.op_type == "Relu" and ranged_relu(n):
                return ("Identity", None, [n.input[0]], list(n.output))  # the Q's clamp starts at 0: it is the ReLU
            return (n.op_type, None, list(n.input), list(n.output))

        def _constant_dq(self, n: Any, q: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int):
            if q.dtype == np.int32:  # a bias: its float value, requantized by XNNPACK with the same scale
                value = (q.astype(np.float64) - zp.astype(np.float64)) * scale.astype(np.float64)
                return ("Const", self._buffer(value.astype(np.float32)), [], list(n.output))
            shift, qmin, qmax = _signed(q.dtype)
            ints = (q.astype(np.int16) + shift).astype(np.int8)
            zps = (zp.astype(np.int64) + shift)
            if np.any(zps != 0) and scale.size > 1:
                raise ValueError(f"{path}: {n.name}: per-channel weights need zero point 0 (after the int8 shift)")
            if scale.size > 1:
                spec = (self._buffer(ints), self._buffer(scale.astype(np.float32).reshape(-1)),
                        self._buffer(np.zeros(scale.size, np.int64)), axis, qmin, qmax)
                return ("DQWeightChannel", spec, [], list(n.output))
            spec = (self._buffer(ints), float(scale), int(zps), qmin, qmax)
            return ("DQWeightTensor", spec, [], list(n.output))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            env: dict[str, torch.Tensor] = {self.input_name: x}
            lazy: dict[str, tuple[torch.Tensor, Any]] = {}
            for op, spec, ins, outs in self.steps:
                if op == "DequantizeLinear":  # one dequantize per consumer, as PT2E graphs have them:
                    lazy[outs[0]] = (env[ins[0]], spec[:4])  # a shared one would join partitions into cycles
                    continue
                args = [env[i] if i not in lazy else
                        qd.dequantize_per_tensor.default(lazy[i][0], *lazy[i][1], torch.int8) for i in ins]
                if op == "QuantizeLinear":
                    x_in = args[0] if spec[4] is None else F.hardtanh(args[0], spec[4][0], spec[4][1])
                    y = qd.quantize_per_tensor.default(x_in, spec[0], spec[1], spec[2], spec[3], torch.int8)
                elif op == "DQWeightChannel":
                    w, s, z, axis, lo, hi = spec
                    y = qd.dequantize_per_channel.default(getattr(self, w), getattr(self, s), getattr(self, z),
                                                          axis, lo, hi, torch.int8)
                elif op == "DQWeightTensor":
                    w, s, z, lo, hi = spec
                    y = qd.dequantize_per_tensor.default(getattr(self, w), s, z, lo, hi, torch.int8)
                elif op == "Const":
                    y = getattr(self, spec)
                elif op == "Conv":
                    y = F.conv2d(args[0], args[1], args[2] if len(args) > 2 else None, **spec)
                elif op == "Gemm":
                    y = F.linear(args[0], args[1], args[2] if len(args) > 2 else None)
                elif op == "Relu":
                    y = F.relu(args[0])
                elif op == "Clip":
                    y = torch.clamp(args[0], spec[0], spec[1])
                elif op == "Add":
                    y = args[0] + args[1]
                elif op == "GlobalAveragePool":
                    y = F.adaptive_avg_pool2d(args[0], 1)
                elif op == "Flatten":
                    y = torch.flatten(args[0], spec)
                else:  # Identity
                    y = args[0]
                env[outs[0]] = y
            if self.output_name in lazy:
                q, spec = lazy[self.output_name]
                return qd.dequantize_per_tensor.default(q, *spec, torch.int8)
            return env[self.output_name]

    return QDQModule().eval()
