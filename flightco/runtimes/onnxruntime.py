"""onnxruntime (CPU provider) as a runtime: sessions, what it really executes, timing and memory.

What ran is read from onnxruntime itself, never guessed: the optimized graph it saves
(``SessionOptions.optimized_model_filepath``) says which nodes became integer kernels
(``QLinearConv``, ``QLinearAdd``, ``QGemm`` ...), and its profiler's per-node events say which
kernels executed and for how long. Every compute node that stayed float is named with the
reason read from the exported graph (float weights, float input, output not quantized).

Latency and memory are measured in a fresh child process (:func:`measure_file`), so the
torch threads and the memory of the exporting process do not enter the figures: peak memory
is the child's peak resident set (``VmHWM``) after the runs minus before the session existed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

INTEGER_OPS = ("QLinearConv", "QLinearAdd", "QLinearMul", "QGemm", "QLinearMatMul", "MatMulInteger", "ConvInteger",
               "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu")
COMPUTE_OPS = ("Conv", "Gemm", "MatMul", "Add", "GlobalAveragePool", "AveragePool")
FLOAT_COMPUTE_OPS = COMPUTE_OPS + ("FusedConv", "FusedGemm", "FusedMatMul", "NchwcConv")


W8_TYPES = ("auto", "int8", "uint8")


def _cpu_flags() -> tuple[str, set[str]]:
    import platform

    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags.update(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return platform.machine().lower(), flags


def int8_weights_exact(machine: str | None = None, flags: set[str] | None = None) -> bool:
    """Whether onnxruntime's u8 x s8 integer kernels are exact for full 8-bit weights on this CPU.

    Why it matters: on x86 without VNNI, MLAS multiplies u8 activations by s8 weights with
    ``vpmaddubsw``, which adds pairs of products in 16 bits and saturates once ``|w| > 64``
    (measured on an AVX2-only EPYC: 21 points of top-1 agreement lost), so ``onnx-int`` stores
    8-bit weights there as uint8 with zero point 128 (u8 x u8 kernels, exact but 2.2-2.4x slower
    per pointwise conv, measured on this VNNI machine). VNNI (``vpdpbusd``; AVX512-VNNI or
    AVX-VNNI) and ARM64's dot products accumulate in 32 bits: int8 weights are exact and fast."""
    if machine is None or flags is None:
        found_machine, found_flags = _cpu_flags()
        machine = found_machine if machine is None else machine
        flags = found_flags if flags is None else flags
    if machine in ("aarch64", "arm64"):
        return True
    return bool({"avx512_vnni", "avx_vnni"} & flags)


def signed_8bit_weights(w8_type: str = "auto") -> bool:
    """The container ``onnx-int`` uses for 8-bit weights: int8 (True) or uint8 + 128 (False);
    ``auto`` picks int8 where :func:`int8_weights_exact` says the kernels are exact."""
    if w8_type not in W8_TYPES:
        raise ValueError(f"w8 type must be one of {', '.join(W8_TYPES)}, got {w8_type!r}")
    return w8_type == "int8" or (w8_type == "auto" and int8_weights_exact())


def session(path: Path, threads: int = 1, optimized_path: Path | None = None, profile_prefix: str | None = None,
            reference: bool = False):
    """An onnxruntime CPU session with default (all) graph optimizations; ``reference=True``
    keeps only basic ones, so Q/DQ run as written (float ops between exact Q/DQ): the file's
    defined meaning, without onnxruntime's int8 kernels, which saturate u8 x s8 products of
    8-bit weights on CPUs without VNNI (measured here: 70.6 % top-1 parity on a W8A8 TensorRT-form
    file at default level, vs the PyTorch model it was exported from)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if reference:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@dataclass
class KernelReport:
    """Which nodes onnxruntime runs as integer kernels, from its optimized graph and profiler."""

    integer_nodes: dict[str, int]          # integer op -> count in the optimized graph
    float_nodes: dict[str, int]            # float compute op -> count in the optimized graph
    convolutions: int                      # Conv nodes in the exported file
    integer_convolutions: int              # of which onnxruntime runs as QLinearConv
    not_integer: list[dict[str, str]]      # exported compute nodes left float, with the reason
    executed_us: dict[str, float] = field(default_factory=dict)  # op -> µs per run (profiler, batch 1)
    integer_time_share: float = 0.0        # share of profiled kernel time in integer kernels

    def summary(self) -> str:
        ints = ", ".join(f"{n} {op}" for op, n in sorted(self.integer_nodes.items())) or "none"
        floats = ", ".join(f"{n} {op}" for op, n in sorted(self.float_nodes.items())) or "none"
        return (f"{self.integer_convolutions}/{self.convolutions} convolutions as QLinearConv; integer kernels: {ints}; "
                f"float compute: {floats}; {100 * self.integer_time_share:.0f}% of kernel time in integer kernels")


def _reason(node: Any, producer: dict[str, Any], consumers: dict[str, list[Any]], constants: set[str]) -> str:
    """Why onnxruntime's QDQ fusion cannot take ``node``, read from the exported graph."""
    def from_dq(name: str) -> bool:
        p = producer.get(name)
        return p is not None and p.op_type == "DequantizeLinear"

    def to_q(name: str) -> bool:
        users = consumers.get(name, [])
        if len(users) == 1 and users[0].op_type in ("Relu", "Flatten", "Reshape"):
            return to_q(users[0].output[0])
        return len(users) == 1 and users[0].op_type == "QuantizeLinear"

    from flightco.onnx_passes import FLOAT_STEM_SUFFIX

    if node.op_type in ("Conv", "Gemm", "MatMul"):
        if FLOAT_STEM_SUFFIX in node.input[1]:
            return "float on purpose (--float-stem: the stem's integer weights run as a float conv)"
        if node.input[1] in constants or not from_dq(node.input[1]):
            return "float weights (the genome keeps this layer in float)"
        if not from_dq(node.input[0]):
            return "float input (its input quantizer is float in the genome)"
        if len(node.input) > 2 and node.input[2] and not from_dq(node.input[2]):
            return "float bias (no int32 bias)"
        if not to_q(node.output[0]):
            return "output not quantized: runs as an integer kernel with float output only for Gemm/MatMul" \
                if node.op_type != "Conv" else "output not quantized (its sole consumer must be a QuantizeLinear)"
        return "onnxruntime kept it float (check activation types: int8 pairs fuse only in some positions)"
    if not all(from_dq(i) for i in node.input if i not in constants):
        return "an input is not dequantized"
    if not to_q(node.output[0]):
        return "output not quantized"
    return "onnxruntime has no integer kernel for it here"


def kernel_report(path: Path, threads: int = 1, example: np.ndarray | None = None, runs: int = 5) -> KernelReport:
    """Open ``path`` in onnxruntime, save its optimized graph, profile ``runs`` batch-1 runs, and
    report integer vs float execution (see the module docstring); kernel times are each node's
    median over the runs, summed by op."""
    import onnx

    exported = onnx.load(str(path))
    g = exported.graph
    constants = {i.name for i in g.initializer} | {n.output[0] for n in g.node if n.op_type == "Constant"}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    with tempfile.TemporaryDirectory() as tmp:
        opt = Path(tmp) / "optimized.onnx"
        sess = session(path, threads, optimized_path=opt, profile_prefix=str(Path(tmp) / "profile"))
        optimized = onnx.load(str(opt)).graph
        inp = sess.get_inputs()[0]
        if example is None:
            shape = [1 if not isinstance(d, int) else d for d in inp.shape]
            example = np.zeros(shape, np.float32)
        for _ in range(runs):
            sess.run(None, {inp.name: example[:1]})
        events = json.loads(Path(sess.end_profiling()).read_text())
    integer: dict[str, int] = {}
    floats: dict[str, int] = {}
    fused_names: set[str] = set()
    for n in optimized.node:
        if n.op_type in INTEGER_OPS:
            integer[n.op_type] = integer.get(n.op_type, 0) + 1
            fused_names.add(n.name)
        elif n.op_type in FLOAT_COMPUTE_OPS:
            floats[n.op_type] = floats.get(n.op_type, 0) + 1
    float_names = {n.name for n in optimized.node if n.op_type in FLOAT_COMPUTE_OPS}
    convs = [n for n in g.node if n.op_type == "Conv"]

    def fused(n: Any) -> bool:
        # onnxruntime names the fused node after the node it replaces (``<name>_quant``, ``<name>_token_7``)
        return any(f == n.name or f.startswith(n.name + "_") for f in fused_names) and \
            not any(f == n.name for f in float_names)

    not_integer = [{"node": n.name, "op": n.op_type, "reason": _reason(n, producer, consumers, constants)}
                   for n in g.node if n.op_type in COMPUTE_OPS and not fused(n)]
    # per node the median over the runs, then summed by op: one run of one node stalled by the OS
    # (a 4 ms QuantizeLinear among 3 us ones was seen on a busy machine) must not swing the share
    per_node: dict[str, tuple[str, list[float]]] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_node.setdefault(e["name"], (e.get("args", {}).get("op_name", "?"), []))[1].append(float(e.get("dur", 0)))
    executed: dict[str, float] = {}
    for op, durations in per_node.values():
        executed[op] = executed.get(op, 0.0) + float(np.median(durations))
    total = sum(executed.values()) or 1.0
    share = sum(v for k, v in executed.items() if k in INTEGER_OPS) / total
    return KernelReport(integer, floats, len(convs), sum(1 for n in convs if fused(n)), not_integer,
                        {k: round(v, 2) for k, v in sorted(executed.items())}, share)


def _spread(times_ms: list[float]) -> dict[str, float]:
    q = np.percentile(times_ms, [10, 50, 90])
    return {"median_ms": float(q[1]), "p10_ms": float(q[0]), "p90_ms": float(q[2]), "runs": len(times_ms)}


def _vm_hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _measure_here(path: str, shape: list[int], batches: list[int], threads: int, seconds: float) -> dict[str, Any]:
    """Timing and memory of one file in this process (the child of :func:`measure_file`)."""
    from flightco.measure import time_session

    base = _rss_kb()
    sess = session(Path(path), threads)
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"file_bytes": os.path.getsize(path), "threads": threads}
    for b in batches:
        x = rng.standard_normal([b, *shape[1:]]).astype(np.float32)
        for _ in range(3):
            sess.run(None, {name: x})
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        one = max(time.perf_counter() - t0, 1e-6)
        repeats = int(min(200, max(9, seconds / one)))
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            sess.run(None, {name: x})
            times.append((time.perf_counter() - t) * 1e3)
        out[f"batch{b}"] = {**_spread(times), "quietest_block_ms": time_session(sess, {name: x}, 2, max(9, repeats // 2))}
    out["peak_memory_kb"] = max(0, _vm_hwm_kb() - base)
    return out


def measure_file(path: Path, input_shape: list[int], batches: tuple[int, ...] = (1, 32), threads: int = 1,
                 seconds: float = 0.5) -> dict[str, Any]:
    """Latency (median, p10, p90 of about ``seconds`` of runs, and the quietest-block median of
    :func:`flightco.measure.time_session`) at each batch size, file size and the session's peak
    memory, measured in a fresh Python process running only onnxruntime."""
    arg = json.dumps({"path": str(path), "shape": list(input_shape), "batches": list(batches),
                      "threads": threads, "seconds": seconds})
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "flightco.runtimes.onnxruntime", arg], capture_output=True,
                          text=True, env=env, timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"measuring {path} failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def version() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__}"


# ---- the plug-in interface (flightco.runtimes): onnxruntime is the default runtime -----------

IMPORTS = ("onnxruntime",)  # imported before the memory baseline of a measurement
FORMATS = ("onnx-int", "qcdq", "tensorrt")


def available() -> tuple[bool, str]:
    from flightco.runtimes import missing_package

    return missing_package("onnxruntime", "default install")


def compile(onnx_path: Path, artifact: Path, batch: int, threads: int = 1, **_: Any) -> Path:
    """onnxruntime reads the ONNX file itself (dynamic batch): nothing to build."""
    return Path(onnx_path)


class _Session:
    def __init__(self, path: Path, threads: int) -> None:
        self.sess = session(path, threads)
        self.name = self.sess.get_inputs()[0].name

    def run(self, _names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.sess.run(None, {self.name: next(iter(feeds.values()))})


def load(artifact: Path, threads: int = 1) -> _Session:
    return _Session(Path(artifact), threads)


def executed(artifact: Path, threads: int = 1) -> dict[str, Any]:
    """:func:`kernel_report` in the common form: per exported compute node its precision."""
    r = kernel_report(Path(artifact), threads)
    floats = {n["node"] for n in r.not_integer}
    import onnx

    nodes = [{"node": n.name, "op": n.op_type, "precision": "float" if n.name in floats else "int8"}
             for n in onnx.load(str(artifact)).graph.node if n.op_type in COMPUTE_OPS]
    return {"convolutions": r.convolutions, "integer_convolutions": r.integer_convolutions, "nodes": nodes,
            "kernels": asdict(r)}


def measure_artifacts(artifacts: dict[int, Path], input_shape: list[int], threads: int = 1,
                      seconds: float = 0.5) -> dict[str, Any]:
    """The interface's measurement: one dynamic-batch file serves every batch size."""
    return measure_file(next(iter(artifacts.values())), input_shape, tuple(artifacts), threads, seconds)


def describe_precision(w_bits: int, a_bits: int, op: str = "conv") -> str:
    """onnxruntime on ``onnx-int``: every quantized layer runs as an integer kernel (8-bit
    kernels for sub-8-bit layers too: no sub-8-bit conv kernel), float layers in float."""
    from flightco.space import FLOAT_BITS

    return "float" if w_bits >= FLOAT_BITS or a_bits >= FLOAT_BITS else "int8"


if __name__ == "__main__":  # the child process of measure_file
    a = json.loads(sys.argv[1])
    print(json.dumps(_measure_here(a["path"], a["shape"], a["batches"], a["threads"], a["seconds"])))
