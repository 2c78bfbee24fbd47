"""TensorRT as a runtime: a CPU lint of the explicit-quantization rules, and a real engine
build + CUDA-event timing where ``import tensorrt`` works and a GPU is present.

TensorRT's explicit quantization (the only INT8 mode TensorRT 10+ keeps) takes Q/DQ pairs that
are signed int8 with zero point 0, per-tensor for activations and per output channel (axis 0)
for convolution weights, with nothing between a Q and its DQ; it fuses Conv + bias + ReLU
itself. :func:`lint` checks a file against exactly those rules on any machine; the engine
path is never on flightco's default path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def lint(path: Path) -> list[str]:
    """Problems that keep ``path`` from TensorRT's explicit INT8 quantization, one line each
    (empty: the file follows the rules)."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    values = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute:
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    producer = {o: n for n in g.node for o in n.output}
    problems: list[str] = []
    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp_name = n.input[2] if len(n.input) > 2 else ""
        if zp_name and zp_name in values:
            zp = values[zp_name]
            is_bias = n.op_type == "DequantizeLinear" and values.get(n.input[0], np.zeros(0, np.int8)).dtype == np.int32
            if zp.dtype != np.int8 and not is_bias:
                problems.append(f"{n.name}: {n.op_type} is {zp.dtype.name.upper()}; TensorRT takes signed INT8 only")
            if np.any(zp != 0):
                problems.append(f"{n.name}: {n.op_type} has a non-zero zero point; TensorRT takes symmetric (0) only")
        elif not zp_name and n.op_type == "DequantizeLinear" and n.input[0] in values and values[n.input[0]].dtype == np.uint8:
            problems.append(f"{n.name}: DequantizeLinear of UINT8; TensorRT takes signed INT8 only")
        if n.op_type == "DequantizeLinear":
            src = producer.get(n.input[0])
            if src is not None and src.op_type not in ("QuantizeLinear",) and n.input[0] not in values:
                problems.append(f"{n.name}: {src.op_type} between QuantizeLinear and DequantizeLinear; "
                                "TensorRT takes no op between a Q and its DQ")
    for n in g.node:
        if n.op_type != "Conv":
            continue
        x, w = producer.get(n.input[0]), producer.get(n.input[1])
        if x is None or x.op_type != "DequantizeLinear":
            problems.append(f"{n.name}: Conv input is not a DequantizeLinear (no Q/DQ on the conv input)")
        if w is None or w.op_type != "DequantizeLinear":
            problems.append(f"{n.name}: Conv weight is not a DequantizeLinear (float weights)")
        elif w.input[1] in values and values[w.input[1]].size > 1:
            axis = next((a.i for a in w.attribute if a.name == "axis"), 1)
            if axis != 0:
                problems.append(f"{n.name}: per-channel weight scale on axis {axis}; TensorRT takes axis 0")
    return problems


def available() -> tuple[bool, str]:
    """Whether an engine can be built here, and if not, why (one line)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, ("tensorrt is not importable here (the index's wheels fetch their libraries from NVIDIA's "
                       "own index); install it on a GPU machine to build engines")
    try:
        from cuda.bindings import runtime as cudart  # cuda-python
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return False, "tensorrt imports but cuda-python (cuda.bindings) does not: pip install cuda-python"
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        return False, "tensorrt imports but no CUDA GPU is visible"
    return True, "tensorrt and a CUDA GPU are present"


def build_and_time(path: Path, input_shape: list[int], batches: tuple[int, ...] = (1, 32),
                   repeats: int = 200) -> dict[str, Any]:
    """Build an INT8 (explicit Q/DQ) engine for ``path`` with the TensorRT Python API, time it
    with CUDA events at each batch size, and read each layer's precision from the engine
    inspector. Raises RuntimeError with one line when the parser or builder refuses the file."""
    import tensorrt as trt

    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(path).read_bytes()):
        raise RuntimeError(f"{path}: TensorRT's ONNX parser refused it: {parser.get_error(0)}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_flag(trt.BuilderFlag.FP16)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    lo, hi = min(batches), max(batches)
    profile.set_shape(name, [lo, *input_shape[1:]], [hi, *input_shape[1:]], [hi, *input_shape[1:]])
    config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"{path}: TensorRT could not build an engine")
    engine = trt.Runtime(logger).deserialize_cuda_engine(blob)
    context = engine.create_execution_context()
    inspector = engine.create_engine_inspector()
    layers = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    out: dict[str, Any] = {"tensorrt": trt.__version__, "engine_bytes": len(bytes(blob)), "layers_json": layers}
    _, stream = cudart.cudaStreamCreate()
    for b in batches:
        shape = [b, *input_shape[1:]]
        context.set_input_shape(name, shape)
        buffers = []
        for i in range(engine.num_io_tensors):
            t = engine.get_tensor_name(i)
            size = int(np.prod(context.get_tensor_shape(t))) * 4
            _, ptr = cudart.cudaMalloc(size)
            buffers.append(ptr)
            context.set_tensor_address(t, ptr)
        _, start = cudart.cudaEventCreate()
        _, stop = cudart.cudaEventCreate()
        times = []
        for r in range(repeats + 20):
            cudart.cudaEventRecord(start, stream)
            context.execute_async_v3(stream)
            cudart.cudaEventRecord(stop, stream)
            cudart.cudaEventSynchronize(stop)
            _, ms = cudart.cudaEventElapsedTime(start, stop)
            if r >= 20:
                times.append(ms)
        q = np.percentile(times, [10, 50, 90])
        out[f"batch{b}"] = {"median_ms": float(q[1]), "p10_ms": float(q[0]), "p90_ms": float(q[2]), "runs": repeats}
        for ptr in buffers:
            cudart.cudaFree(ptr)
    return out
