"""Targets a network can be costed on across the stack: hardware profiles and real runtimes.

One small adapter over the two kinds, so that ``flightco characterize`` and ``flightco across-stack``
never care which is which:

* :class:`ProfileTarget` prices a Genome with a hardware profile (latency, energy, memory; exact,
  no noise, microseconds);
* :class:`OnnxRuntimeTarget` times real onnxruntime sessions of the network's deploy-form ONNX
  file (batch 1, each point in two interleaved passes of the lowest of ``repeats`` runs — the
  estimator that survives a heavily shared machine, see :func:`flightco.measure.time_session_lowest`;
  the lower pass is kept, the gap between the two is the point's measured run-to-run spread) with the runtime's own knobs (threads, graph
  optimization level, export format), and peak heap memory (:func:`flightco.measure.peak_memory_kb`);
* :class:`FileRuntimeTarget` wraps any runtime plug-in of :data:`flightco.runtimes.RUNTIMES` that
  offers ``available()`` and ``measure_file(path, input_shape, batches=..., threads=...)`` (the
  contract the OpenVINO, ExecuTorch and TVM plug-ins follow), one fresh process per file.

Untrained networks are measured: latency does not depend on weight values.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flightco.errors import FlightcoError
from flightco.space import Genome

GRAPH_OPT_LEVELS = ("disabled", "basic", "extended", "all")
EXPORTED_FORMATS = ("onnx-int", "qcdq")  # written by flightco export (Brevitas: seconds per network)
BUILT_FORMAT = "onnx-int-built"           # flightco.onnx_build: the onnx-int graph without Brevitas


class TargetError(FlightcoError):
    """A target cannot be used as asked (unknown runtime, runtime not installed, bad knob)."""


@dataclass(frozen=True)
class Knobs:
    """A runtime's own settings for one measurement (ignored by profiles)."""

    threads: int = 1
    graph_opt: str = "all"
    format: str = BUILT_FORMAT

    def as_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "graph_opt": self.graph_opt, "format": self.format}


class Target:
    """What characterize and across-stack need from a target."""

    name: str
    kind: str  # "profile" or "runtime"
    metrics: tuple[str, ...]
    knob_values: dict[str, tuple[Any, ...]] = {}  # knob -> values swept around each base network

    def describe(self) -> str:
        return self.name

    def measure(self, items: Sequence[tuple[Genome, Knobs]], memory: Sequence[bool],
                progress: Callable[[int], None] | None = None) -> list[dict[str, float]]:
        raise NotImplementedError


class ProfileTarget(Target):
    kind = "profile"
    metrics = ("latency_ms", "energy_mj", "memory_kb")

    def __init__(self, path: Path) -> None:
        from flightco.hw.profile import load_profile

        self.profile = load_profile(path)
        self.path = Path(path)
        self.name = self.profile.name
        self.knob_values = {}

    def describe(self) -> str:
        return self.profile.describe_precision()

    def measure(self, items, memory, progress=None):
        from flightco.hw.workload import workload

        out = []
        for i, (genome, _) in enumerate(items):
            out.append({**self.profile.cost(workload(genome)).as_dict(), "spread": 0.0})
            if progress:
                progress(i + 1)
        return out


def _ort_session(path: Path, threads: int, graph_opt: str):
    import onnxruntime as ort

    level = {"disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
             "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
             "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
             "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[graph_opt]
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def write_network(genome: Genome, path: Path, fmt: str) -> None:
    """The ONNX file of an untrained ``genome`` in ``fmt`` (built directly, or exported by flightco export)."""
    if fmt == BUILT_FORMAT:
        from flightco.onnx_build import build_onnx

        build_onnx(genome, path)
    elif fmt in EXPORTED_FORMATS:
        from flightco.measure import _export_network

        _export_network(genome, path, fmt)
    else:
        raise TargetError(f"format must be one of {BUILT_FORMAT}, {', '.join(EXPORTED_FORMATS)}, got {fmt!r}")


class OnnxRuntimeTarget(Target):
    kind = "runtime"
    metrics = ("latency_ms", "memory_kb")

    def __init__(self, threads: Sequence[int] = (1, 2), graph_opt: Sequence[str] = GRAPH_OPT_LEVELS,
                 formats: Sequence[str] = (BUILT_FORMAT, *EXPORTED_FORMATS), warmup: int = 5,
                 repeats: int = 30, memory_runs: int = 20) -> None:
        import onnxruntime as ort

        self.name = "onnxruntime"
        self.version = ort.__version__
        self.knob_values = {"threads": tuple(threads), "graph_opt": tuple(graph_opt), "format": tuple(formats)}
        self.warmup, self.repeats, self.memory_runs = warmup, repeats, memory_runs

    def describe(self) -> str:
        return (f"onnxruntime {self.version} CPU provider, batch 1; sub-8-bit layers run on its 8-bit "
                "QLinearConv kernels (int8/uint8 containers)")

    def measure(self, items, memory, progress=None):
        from flightco.measure import peak_memory_kb, time_session_lowest

        rng = np.random.default_rng(len(items))
        with tempfile.TemporaryDirectory() as tmp:
            sessions, feeds, sizes, paths = [], [], [], []
            for i, (genome, knobs) in enumerate(items):
                path = Path(tmp) / f"n{i}.onnx"
                write_network(genome, path, knobs.format)
                sess = _ort_session(path, knobs.threads, knobs.graph_opt)
                x = rng.standard_normal((1, genome.in_channels, genome.resolution, genome.resolution)).astype(np.float32)
                sessions.append(sess)
                feeds.append({sess.get_inputs()[0].name: x})
                sizes.append(path.stat().st_size / 1024)
                paths.append(path)
            passes: list[list[float]] = [[] for _ in items]
            for _ in range(2):  # two interleaved passes: the gap between them is the run-to-run spread
                for i in rng.permutation(len(items)):
                    passes[i].append(time_session_lowest(sessions[i], feeds[i], self.warmup, self.repeats))
            out = []
            for i in range(len(items)):
                lo, hi = min(passes[i]), max(passes[i])
                row = {"latency_ms": lo, "spread": (hi - lo) / lo, "file_kb": sizes[i]}
                if memory[i]:
                    row["memory_kb"] = peak_memory_kb(paths[i], items[i][1].threads, runs=self.memory_runs)
                out.append(row)
                if progress:
                    progress(i + 1)
            del sessions
        return out


class FileRuntimeTarget(Target):
    """A runtime plug-in measured file by file through its ``measure_file`` (see module docstring)."""

    kind = "runtime"
    metrics = ("latency_ms", "memory_kb")

    def __init__(self, name: str, module: Any, threads: Sequence[int] = (1, 2), options: dict[str, Any] | None = None) -> None:
        self.name = name
        self.module = module
        self.options = dict(options or {})  # compile options the registry entry fixes (tvm-tuned: tune)
        self.knob_values = {"threads": tuple(threads)}

    def describe(self) -> str:
        version = getattr(self.module, "version", lambda: self.name)()
        return f"{version}, batch 1"

    def measure(self, items, memory, progress=None):
        out = []
        with tempfile.TemporaryDirectory() as tmp:
            for i, (genome, knobs) in enumerate(items):
                path = Path(tmp) / f"n{i}.onnx"
                write_network(genome, path, knobs.format if knobs.format in EXPORTED_FORMATS else BUILT_FORMAT)
                shape = [1, genome.in_channels, genome.resolution, genome.resolution]
                if hasattr(self.module, "measure_artifacts"):  # compiled runtimes: their own artifact, batch 1
                    art = self.module.compile(path, Path(tmp) / f"n{i}.art", 1, knobs.threads, **self.options)
                    a = self.module.measure_artifacts({1: art}, shape, threads=knobs.threads)
                    b = self.module.measure_artifacts({1: art}, shape, threads=knobs.threads)
                else:
                    a = self.module.measure_file(path, shape, batches=(1,), threads=knobs.threads)
                    b = self.module.measure_file(path, shape, batches=(1,), threads=knobs.threads)
                la, lb = a["batch1"]["median_ms"], b["batch1"]["median_ms"]
                row = {"latency_ms": min(la, lb), "spread": abs(la - lb) / min(la, lb)}
                if memory[i] and "peak_memory_kb" in a:
                    row["memory_kb"] = float(min(a["peak_memory_kb"], b["peak_memory_kb"]))
                out.append(row)
                if progress:
                    progress(i + 1)
        return out


def make_target(runtime: str | None = None, profile: Path | None = None, **options: Any) -> Target:
    """``--runtime R`` or ``--profile P`` as a :class:`Target` (one-line errors otherwise)."""
    if (runtime is None) == (profile is None):
        raise TargetError("give exactly one of --runtime R or --profile P")
    if profile is not None:
        return ProfileTarget(Path(profile))
    from flightco.runtimes import RUNTIMES

    if runtime == "onnxruntime":
        return OnnxRuntimeTarget(**options)
    if runtime not in RUNTIMES:
        raise TargetError(f"--runtime: unknown runtime {runtime!r}; known: {', '.join(sorted(RUNTIMES))}")
    try:
        module = importlib.import_module(RUNTIMES[runtime].module)
    except ImportError as exc:
        raise TargetError(f"--runtime {runtime}: its package is not installed ({exc})") from None
    available = getattr(module, "available", None)
    if available is None or not (hasattr(module, "measure_file") or hasattr(module, "measure_artifacts")):
        raise TargetError(f"--runtime {runtime}: this plug-in cannot time arbitrary networks here "
                          "(it has no available()/measure_file())")
    ok = available()
    if ok is not True and not (isinstance(ok, tuple) and ok and ok[0]):
        why = ok[1] if isinstance(ok, tuple) and len(ok) > 1 else "not available on this machine"
        raise TargetError(f"--runtime {runtime}: {why}")
    return FileRuntimeTarget(runtime, module, threads=options.get("threads", (1, 2)),
                             options=dict(RUNTIMES[runtime].options))

