"""OpenVINO (CPU plug-in) as a runtime: reads flightco's ``onnx-int`` QDQ file, saves it as IR
for a fixed batch, and reports per node the precision its CPU plug-in compiled.

What runs is read from OpenVINO itself: the compiled model's runtime graph
(``CompiledModel.get_runtime_model()``) gives every executed node its ``layerType``,
``runtimePrecision`` and ``originalLayersNames`` (the ONNX nodes it fused). Measured on this
machine (x86 AVX2, no VNNI; OpenVINO 2026.4): convolutions whose weights are int8 with zero
point 0 — every sub-8-bit layer of ``onnx-int`` — run as u8 x i8 kernels (``jit_avx2_I8``);
8-bit weights of dense convolutions, which ``onnx-int`` stores as uint8 with zero point 128
(onnxruntime's AVX2 kernel saturates on int8 ones, see :mod:`flightco.onnx_passes`), are not
taken by OpenVINO's low-precision transformations and run as f32 convolutions
(``brgconv_avx2_f32``); 8-bit depthwise weights stay int8 (exact in onnxruntime's depthwise
kernels) and OpenVINO runs those layers as int8 too. Handing it
the signed ``tensorrt`` form instead made 8-bit convolutions int8 but agreed with PyTorch on
only 61 % of test images: without VNNI the u8 x s8 product pairs saturate in int16 (the same
failure onnxruntime shows on such weights). A later machine with AVX-512 compiled the same
precisions with ``*_avx512_I8`` / ``*_avx512_f32`` kernels. Where the CPU has VNNI, ``onnx-int``
keeps 8-bit weights int8 (:func:`flightco.runtimes.onnxruntime.int8_weights_exact`), and OpenVINO
then runs those convolutions as int8 as well (the rule below follows the file).

Not bit-exact unless told (measured, OpenVINO 2026.4): the CPU plug-in fuses across two kinds
of quantizer and drops their rounding. (1) A residual block's projection conv + its output
QuantizeLinear + the residual Add + the next QuantizeLinear become one int8 convolution with a sum
post-op: on a W4A4 test network 1 % of the values after the next quantizer came out one step
off, every one within +-0.021 of a rounding boundary (half the ratio of the two quantizers'
scales, 0.023: what dropping the intermediate rounding predicts). (2) The average pool and the
classifier's input quantizer after it: OpenVINO pools the integer tensor (``Reduce`` u8), and
unless the pool's output is kept the logits differ from pooling and requantizing the dequantized
values (kept, they match). With every
node's output kept (which blocks all fusion) OpenVINO matched onnxruntime to 1e-6. So
:func:`compile` keeps, by default (``exact=True``), exactly those tensors as extra model outputs
(:func:`exactness_barriers`): the quantized value before each residual Add and each pooling
output, which stops these fusions and nothing else. Measured on that W4A4 network: top-1
agreement with PyTorch 70.6 % without the barriers (an untrained network whose logits lie within
+-0.5: the one-step errors flip near-ties), 99.7 % with them (onnxruntime: 99.4 %, ties), max
logit difference 0.18 -> 6e-8. On the default run's five front models (``benchmarks/
openvino_exact.py``): 100 / 100 / 98.7 / 100 / 99.7 % with the barriers against 99.9 / 100 / 90.9 /
99.9 / 91.3 % without, at 1.07x the batch-32 latency (median). The one remaining miss is OpenVINO's
own requantization arithmetic, not a fusion: in one channel of one tensor, values whose exact
(float64) pre-rounding value is -0.5000126 of a step came out rounded up (onnxruntime and PyTorch
round them down, as exact arithmetic does); ``export --runtime openvino`` refuses that model by
its agreement check. :func:`executed` still lists any fusion of a quantizer before an Add that
survives (``inexact_fusions``), and the export report names them.
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


def exactness_barriers(graph: Any) -> list[str]:
    """Tensors of an ONNX graph whose rounding OpenVINO's fusions would drop (module docstring):
    each QuantizeLinear whose dequantized value (through an integer Clip, if any) feeds an Add,
    and each pooling output. Kept as model outputs, they cannot be fused away."""
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def feeds_add(name: str) -> bool:
        for c in consumers.get(name, []):
            if c.op_type == "Add" or (c.op_type in ("Clip", "DequantizeLinear") and feeds_add(c.output[0])):
                return True
        return False

    return [n.output[0] for n in graph.node
            if (n.op_type == "QuantizeLinear" and feeds_add(n.output[0]))
            or n.op_type in ("GlobalAveragePool", "AveragePool")]


def compile(onnx_path: Path, artifact: Path, batch: int, threads: int = 1, exact: bool = True, **_: Any) -> Path:
    """OpenVINO IR (``artifact`` ``.xml`` + ``.bin``) of the QDQ file with the batch fixed; with
    ``exact`` the tensors of :func:`exactness_barriers` become extra outputs (after the logits)."""
    import tempfile

    import onnx
    import openvino as ov

    source = onnx.load(str(onnx_path))
    barriers = exactness_barriers(source.graph) if exact else []
    known = {o.name for o in source.graph.output}
    source.graph.output.extend(onnx.helper.make_empty_tensor_value_info(b) for b in barriers if b not in known)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model.onnx"
        onnx.save(source, str(staged))
        model = ov.Core().read_model(str(staged))
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
            "nodes": nodes, "inexact_fusions": inexact_fusions(nodes)}


def inexact_fusions(nodes: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Compiled nodes that fused a QuantizeLinear *followed by* an Add: OpenVINO applies that
    intermediate quantizer inside a sum post-op without its rounding (module docstring), so
    values near the next quantizer's rounding boundaries can land one step off."""
    found = []
    for n in nodes:
        names = n["onnx_nodes"].split(",")
        for i, name in enumerate(names):
            if name.endswith("/QuantizeLinear") and any(later.endswith("/Add") for later in names[i + 1:]):
                found.append({"node": n["node"], "quantizer": name,
                              "why": "quantizer fused before a residual Add: applied without rounding"})
                break
    return found


def describe_precision(w_bits: int, a_bits: int, op: str = "conv") -> str:
    """What OpenVINO's CPU plug-in runs a layer of ``onnx-int`` as on this machine (module docstring)."""
    from flightco.space import FLOAT_BITS

    from flightco.runtimes.onnxruntime import signed_8bit_weights

    if w_bits >= FLOAT_BITS or a_bits >= FLOAT_BITS:
        return "float"
    return "float" if w_bits >= 8 and op != "dwconv" and not signed_8bit_weights() else "int8"


def measure_artifacts(artifacts: dict[int, Path], input_shape: list[int], threads: int = 1, seconds: float = 0.5) -> dict[str, Any]:
    from flightco.runtimes.timing import measure_in_child

    return measure_in_child(__name__, artifacts, input_shape, threads, seconds)
