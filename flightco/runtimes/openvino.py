"""OpenVINO (CPU plug-in) as a runtime: reads flightco's ``onnx-int`` QDQ file, saves it as IR
for a fixed batch, and reports per node the precision its CPU plug-in compiled.

What runs is read from OpenVINO itself: the compiled model's runtime graph
(``CompiledModel.get_runtime_model()``) gives every executed node its ``layerType``,
``runtimePrecision`` and ``originalLayersNames`` (the ONNX nodes it fused). Measured on this
machine (x86 AVX2, no VNNI; OpenVINO 2026.4): convolutions whose weights are int8 with zero
point 0 — every sub-8-bit layer of ``onnx-int`` — run as u8 x i8 kernels (``jit_avx2_I8``);
8-bit weights, which ``onnx-int`` stores as uint8 with zero point 128 (onnxruntime's AVX2 kernel
saturates on int8 ones, see :mod:`flightco.onnx_passes`), are not taken by OpenVINO's
low-precision transformations and run as f32 convolutions (``brgconv_avx2_f32``). Handing it
the signed ``tensorrt`` form instead made 8-bit convolutions int8 but agreed with PyTorch on
only 61 % of test images: without VNNI the u8 x s8 product pairs saturate in int16 (the same
failure onnxruntime shows on such weights). A W4A4 ``onnx-int`` file runs all its convolutions
as int8 but agreed with PyTorch on only 74 % of test images (cause not found yet);
``flightco export --runtime openvino`` refuses such files by its agreement check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flightco.runtimes import missing_package, with_ext

IMPORTS = ("openvino",)  # imported before the memory baseline of a measurement
FORMATS = ("onnx-int",)
EXTRA = "openvino"
COMPUTE = ("Convolution", "FullyConnected", "MatMul", "Eltwise", "Reduce", "Pooling")


def available() -> tuple[bool, str]:
    return missing_package("openvino", EXTRA)


def version() -> str:
    import openvino as ov

    return f"openvino {ov.__version__.split('-')[0]}"


def compile(onnx_path: Path, artifact: Path, batch: int, threads: int = 1, **_: Any) -> Path:
    """OpenVINO IR (``artifact`` ``.xml`` + ``.bin``) of the QDQ file with the batch fixed."""
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    shape = list(model.input(0).get_partial_shape())
    model.reshape({0: [batch, *[int(d.get_length()) for d in shape[1:]]]})
    artifact = with_ext(artifact, ".xml")
    ov.save_model(model, str(artifact), compress_to_fp16=False)
    return artifact


class Session:
    """An OpenVINO CPU compiled model with onnxruntime's ``run`` call."""

    def __init__(self, artifact: Path, threads: int = 1, profile: bool = False) -> None:
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": "YES" if profile else "NO"}
        self.compiled = core.compile_model(core.read_model(str(artifact)), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, _names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.request.infer({0: next(iter(feeds.values()))})
        return [self.request.get_output_tensor(0).data.copy()]


def load(artifact: Path, threads: int = 1) -> Session:
    return Session(artifact, threads)


def executed(artifact: Path, threads: int = 1) -> dict[str, Any]:
    """Per compute node of the compiled runtime graph: its type and runtime precision, the ONNX
    nodes it came from, and the kernels the profiler saw (``exec_type``) after one run."""
    sess = Session(artifact, threads, profile=True)
    shape = [int(d) for d in sess.compiled.input(0).get_shape()]
    sess.run(None, {"input": np.zeros(shape, np.float32)})
    exec_type = {p.node_name: p.exec_type for p in sess.request.profiling_info}
    nodes = []
    for op in sess.compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind not in COMPUTE:
            continue
        kernel = exec_type.get(op.get_friendly_name(), "")
        if not kernel:  # folded into a constant (weight decompression): never executed
            continue
        # the kernel, not runtimePrecision, is the evidence: a weight-compressed FullyConnected
        # reports u8 but runs brgemm_avx2_f32 on weights decompressed to f32
        nodes.append({"node": op.get_friendly_name(), "op": kind, "runtime_precision": info["runtimePrecision"].astype(str),
                      "kernel": kernel, "precision": "int8" if "i8" in kernel.lower() else "float",
                      "onnx_nodes": info["originalLayersNames"].astype(str)})
    convs = [n for n in nodes if n["op"] == "Convolution"]
    return {"convolutions": len(convs), "integer_convolutions": sum(n["precision"] == "int8" for n in convs),
            "nodes": nodes}


def describe_precision(w_bits: int, a_bits: int, op: str = "conv") -> str:
    """What OpenVINO's CPU plug-in runs a layer of ``onnx-int`` as on this machine (module docstring)."""
    from flightco.space import FLOAT_BITS

    if w_bits >= FLOAT_BITS or a_bits >= FLOAT_BITS:
        return "float"
    return "float" if w_bits >= 8 else "int8"


def measure_artifacts(artifacts: dict[int, Path], input_shape: list[int], threads: int = 1, seconds: float = 0.5) -> dict[str, Any]:
    from flightco.runtimes.timing import measure_in_child

    return measure_in_child(__name__, artifacts, input_shape, threads, seconds)
