"""ExecuTorch with the XNNPACK backend (the mobile path) as a runtime.

The ``.pte`` is built from flightco's verified ``onnx-int`` file, not re-quantized: every Q/DQ
node of the file becomes a torch ``quantized_decomposed`` quantize/dequantize op with the
trained quantizer's own scale and zero point (:mod:`flightco.runtimes.onnx_to_torch`), the
module is captured with ``torch.export`` for a fixed batch, and
``to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])`` hands XNNPACK every
pattern it takes. What it took is read back from the lowered program: each
``executorch_call_delegate`` holds the original subgraph, where a convolution whose input and
weight come from dequantize ops (and whose output is quantized) is an XNNPACK qs8 convolution;
anything left outside a delegate runs in ExecuTorch's portable float kernels.

Measured here (ExecuTorch 1.5.1): all 9 convolutions, residual adds and the pooling of a W8A8
network go to XNNPACK as qs8; the classifier (``Flatten`` + ``Gemm``) is not delegated and
runs as a float ``addmm``. A dynamic batch axis exported but the program's planned input stayed
at 15 images whatever its upper bound, so one ``.pte`` is written per batch size.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from flightco.runtimes import missing_package, with_ext

IMPORTS = ("torch", "executorch.runtime", "executorch.extension.pybindings.portable_lib")  # imported before the memory baseline of a measurement
FORMATS = ("onnx-int",)
EXTRA = "executorch"
QUANT_OPS = ("quantize_per_tensor", "quantize_per_channel")
DEQUANT_OPS = ("dequantize_per_tensor", "dequantize_per_channel")


def available() -> tuple[bool, str]:
    return missing_package("executorch.backends.xnnpack.partition.xnnpack_partitioner", EXTRA)


def version() -> str:
    from importlib.metadata import version as v

    return f"executorch {v('executorch')} (XNNPACK)"


def _lower(onnx_path: Path, batch: int) -> Any:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from flightco.runtimes.onnx_to_torch import onnx_to_torch

    module = onnx_to_torch(Path(onnx_path))
    import onnx

    dims = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    shape = [batch, *[d.dim_value for d in dims[1:]]]
    ep = torch.export.export(module, (torch.zeros(shape),))
    return to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])


def compile(onnx_path: Path, artifact: Path, batch: int, threads: int = 1, **_: Any) -> Path:
    """A ``.pte`` of the file lowered to XNNPACK (int8 where XNNPACK takes it), batch fixed."""
    from flightco.atomic import atomic_path

    edge = _lower(onnx_path, batch)
    artifact = with_ext(artifact, ".pte")
    report = delegation(edge)  # before to_executorch(), which rewrites the program in place
    with atomic_path(artifact) as tmp:
        Path(tmp).write_bytes(edge.to_executorch().buffer)
    import json

    artifact.with_name(artifact.name + ".delegation.json").write_text(json.dumps(report, indent=1))
    return artifact


def _short(target: Any) -> str:
    """``convolution`` from ``aten.convolution.default`` / an edge op overload / its schema."""
    import re

    m = re.search(r"(?:aten|quantized_decomposed)(?:\.|::)(\w+)", str(target))
    return m.group(1) if m else getattr(target, "__name__", str(target))


FUSED_ACTIVATIONS = ("relu", "hardtanh")  # XNNPACK folds these into a quantized conv's output range


def delegation(edge: Any) -> dict[str, Any]:
    """What XNNPACK took, from the lowered program: per delegated convolution whether it is
    quantized (dequantized input and weight, quantized output), and the ops left outside."""
    ep = edge.exported_program()
    outside = Counter(_short(n.target) for n in ep.graph.nodes if n.op == "call_function"
                      and _short(n.target) not in ("executorch_call_delegate", "getitem", "sym_size", "alloc"))
    nodes = []
    for n in ep.graph.nodes:
        if n.op != "get_attr" or not n.name.startswith("lowered_module"):
            continue
        sub = getattr(ep.graph_module, n.target).original_module.graph
        for k in sub.nodes:
            op = _short(k.target) if k.op == "call_function" else ""
            if op not in ("convolution", "linear", "addmm", "mm", "add", "mean"):
                continue
            ins = [a for a in k.args[:2] if hasattr(a, "op")]
            dq_in = all(a.op == "call_function" and _short(a.target) in DEQUANT_OPS for a in ins)
            users = list(k.users)
            while len(users) == 1 and _short(users[0].target) in FUSED_ACTIVATIONS:
                users = list(users[0].users)
            q_out = bool(users) and all(_short(u.target) in QUANT_OPS for u in users)
            nodes.append({"node": k.name, "op": op, "delegate": "XnnpackBackend",
                          "precision": "int8" if dq_in and q_out else "float"})
    for op, count in outside.items():
        if op in ("addmm", "convolution", "linear", "mm", "add", "mean"):
            nodes += [{"node": op, "op": op, "delegate": "portable", "precision": "float"}] * count
    convs = [n for n in nodes if n["op"] == "convolution"]
    return {"convolutions": len(convs), "integer_convolutions": sum(n["precision"] == "int8" for n in convs),
            "nodes": nodes, "outside_delegates": dict(outside)}


class Session:
    """An ExecuTorch method with onnxruntime's ``run`` call."""

    def __init__(self, artifact: Path, threads: int = 1) -> None:
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        portable_lib._unsafe_reset_threadpool(threads)  # XNNPACK's pool (default: every core)
        self.method = Runtime.get().load_program(str(artifact)).load_method("forward")

    def run(self, _names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(next(iter(feeds.values()))))
        return [self.method.execute([x])[0].numpy()]


def load(artifact: Path, threads: int = 1) -> Session:
    return Session(artifact, threads)


def executed(artifact: Path, threads: int = 1) -> dict[str, Any]:
    """The delegation report written beside the ``.pte`` when it was lowered (:func:`delegation`)."""
    import json

    return json.loads(Path(artifact).with_name(Path(artifact).name + ".delegation.json").read_text())


def describe_precision(w_bits: int, a_bits: int, op: str = "conv") -> str:
    """What ExecuTorch + XNNPACK runs a layer of ``onnx-int`` as (module docstring)."""
    from flightco.space import FLOAT_BITS

    if w_bits >= FLOAT_BITS or a_bits >= FLOAT_BITS or op == "linear":
        return "float"
    return "int8"


def measure_artifacts(artifacts: dict[int, Path], input_shape: list[int], threads: int = 1, seconds: float = 0.5) -> dict[str, Any]:
    from flightco.runtimes.timing import measure_in_child

    return measure_in_child(__name__, artifacts, input_shape, threads, seconds)
