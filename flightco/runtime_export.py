"""Deploy a verified flightco ONNX file to another runtime: build its artifact per batch size,
verify it against PyTorch on the same test images, read back what it compiled, and measure it.

``flightco export RUN --trial N --out m.onnx --runtime openvino|executorch|tvm|tvm-tuned`` first
exports and verifies ``m.onnx`` (``onnx-int``) as always, then hands the file to the runtime's
plug-in (:mod:`flightco.runtimes`). Artifacts sit beside the file, one per batch size (the new
runtimes compile for a fixed batch): ``m.openvino.b1.xml``, ``m.executorch.b32.pte``,
``m.tvm-tuned.b1.so`` (its MetaSchedule database in ``m.tvm-tuned.b1.so.tuning/``). The report,
``m.onnx.<runtime>.json`` / ``.md``, holds top-1 agreement with PyTorch, what the runtime
compiled per compute node, the executed-precision rule checked against it, and latency at
batch 1 and 32, file size and peak memory measured in a fresh process.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flightco.errors import ExportError

BATCHES = (1, 32)
VERIFY_BATCH = 32


@dataclass(frozen=True)
class RuntimeReport:
    runtime: str
    version: str
    source: str                       # the verified ONNX file the artifacts were built from
    artifacts: dict[str, str]         # batch -> artifact path
    test_images: int
    top1_agreement: float
    max_abs_diff: float
    runtime_accuracy: float
    pytorch_accuracy: float
    executed: dict[str, Any]          # what the runtime compiled (plug-in's executed())
    rule: dict[str, Any]              # describe_precision per layer kind vs what was compiled
    compile_seconds: float
    measured: dict[str, Any] | None = None
    options: dict[str, Any] | None = None

    def markdown(self) -> str:
        e, r = self.executed, self.rule
        lines = [f"# {self.runtime}: {Path(self.source).name}", "",
                 f"- runtime: {self.version}; artifacts: " + ", ".join(f"batch {b} `{p}`" for b, p in self.artifacts.items()),
                 f"- verified on {self.test_images} test images: top-1 agreement with PyTorch {100 * self.top1_agreement:.2f}%, "
                 f"max |logit difference| {self.max_abs_diff:.3g}, accuracy {100 * self.runtime_accuracy:.2f}% "
                 f"(PyTorch {100 * self.pytorch_accuracy:.2f}%)",
                 f"- compiled: {e.get('integer_convolutions')}/{e.get('convolutions')} convolutions in integer; "
                 f"precision rule expects {r['expected']}, runtime compiled {r['compiled']} "
                 f"({'agrees' if r['agrees'] else 'DISAGREES'})"]
        for f in e.get("inexact_fusions", []):
            lines.append(f"- not bit-exact: `{f['node']}` fused `{f['quantizer']}` ({f['why']})")
        if self.measured:
            m = self.measured
            for b in BATCHES:
                if f"batch{b}" in m:
                    t = m[f"batch{b}"]
                    lines.append(f"- measured batch {b}: median {t['median_ms']:.4g} ms (p10 {t['p10_ms']:.4g}, p90 {t['p90_ms']:.4g}, "
                                 f"{t['runs']} runs; quietest block {t['quietest_block_ms']:.4g} ms; {m['threads']} thread)")
            lines.append(f"- artifact size {m['file_bytes'] / 1024:.1f} KiB; peak memory {m['peak_memory_kb'] / 1024:.1f} MiB")
        lines.append(f"- build time {self.compile_seconds:.1f} s" + (f"; options {self.options}" if self.options else ""))
        return "\n".join([*lines, ""])


def artifact_path(onnx_path: Path, runtime: str, batch: int) -> Path:
    """``m.onnx`` -> ``m.<runtime>.b<batch>`` (the plug-in adds its own suffix)."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{runtime}.b{batch}")


def report_paths(onnx_path: Path, runtime: str) -> tuple[Path, Path]:
    onnx_path = Path(onnx_path)
    return (onnx_path.with_name(f"{onnx_path.name}.{runtime}.json"), onnx_path.with_name(f"{onnx_path.name}.{runtime}.md"))


def run_batched(sess: Any, x: np.ndarray, batch: int) -> np.ndarray:
    """Logits of every image of ``x`` through a fixed-batch session (the last batch zero-padded)."""
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
        outs.append(sess.run(None, {"input": np.ascontiguousarray(chunk)})[0][:n])
    return np.concatenate(outs)


def precision_rule(plugin: Any, genome: Any, executed: dict[str, Any]) -> dict[str, Any]:
    """The plug-in's ``describe_precision`` over the genome's convolutions, against the
    precisions the runtime compiled for its convolution nodes (counts of int8 / float)."""
    from flightco.hw.workload import workload

    expected = Counter(plugin.describe_precision(lw.w_bits, lw.a_bits, lw.op)
                       for lw in workload(genome) if lw.op in ("conv", "dwconv"))
    compiled = Counter(n["precision"] for n in executed.get("nodes", [])
                       if n["op"].lower() in ("conv", "convolution"))
    return {"expected": dict(expected), "compiled": dict(compiled), "agrees": expected == compiled}


def deploy(onnx_path: Path, runtime: str, x: np.ndarray, pt_logits: np.ndarray, labels: np.ndarray,
           genome: Any = None, *, threads: int = 1, measure: bool = True, trials: int | None = None,
           batches: tuple[int, ...] = BATCHES, write: bool = True,
           compile_options: dict[str, Any] | None = None) -> RuntimeReport:
    """Build ``runtime``'s artifacts of the verified ``onnx_path``, verify them on ``x`` (the
    preprocessed test images) against ``pt_logits``, read what compiled, measure, write reports.
    ``compile_options`` override the runtime entry's own (e.g. OpenVINO's ``exact``)."""
    from flightco.runtimes import get_runtime

    info, plugin = get_runtime(runtime)
    if "onnx-int" not in info.formats:
        raise ExportError(f"--runtime {runtime} does not read onnx-int files")
    options = {**dict(info.options), **(compile_options or {})}
    if trials is not None and options.get("tune"):
        options["trials"] = trials
    verify_batch = VERIFY_BATCH if VERIFY_BATCH in batches else max(batches)
    start = time.perf_counter()
    artifacts: dict[int, Path] = {}
    for b in sorted(set(batches) | {verify_batch}):
        try:
            artifacts[b] = plugin.compile(Path(onnx_path), artifact_path(onnx_path, runtime, b), b, threads, **options)
        except Exception as exc:  # a runtime's compiler raises its own types; one line naming the file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"{onnx_path}: {runtime} could not compile it for batch {b}: {first}") from None
    seconds = time.perf_counter() - start
    logits = run_batched(plugin.load(artifacts[verify_batch], threads), x, verify_batch)
    executed = plugin.executed(artifacts[verify_batch], threads)
    rule = precision_rule(plugin, genome, executed) if genome is not None else {"expected": {}, "compiled": {}, "agrees": True}
    measured = plugin.measure_artifacts({b: artifacts[b] for b in batches}, [1, *x.shape[1:]], threads) if measure else None
    report = RuntimeReport(
        runtime=runtime, version=plugin.version(), source=str(onnx_path),
        artifacts={str(b): str(p) for b, p in artifacts.items()}, test_images=int(len(x)),
        top1_agreement=float((logits.argmax(1) == pt_logits.argmax(1)).mean()),
        max_abs_diff=float(np.abs(logits - pt_logits).max()),
        runtime_accuracy=float((logits.argmax(1) == labels).mean()),
        pytorch_accuracy=float((pt_logits.argmax(1) == labels).mean()),
        executed=executed, rule=rule, compile_seconds=seconds, measured=measured, options=options or None)
    if write:
        from flightco.atomic import write_text

        json_path, md_path = report_paths(onnx_path, runtime)
        write_text(json_path, json.dumps(asdict(report), indent=2, default=str) + "\n")
        write_text(md_path, report.markdown())
    return report


def check_runtime_option(runtime: str, fmt: str) -> None:
    """Refuse, before anything is exported, an unknown or uninstalled runtime or a format it
    does not read."""
    from flightco.runtimes import get_runtime

    if runtime == "onnxruntime":
        return
    info, _ = get_runtime(runtime)
    if fmt not in info.formats:
        raise ExportError(f"--runtime {runtime} reads --format {' or '.join(info.formats)}, got --format {fmt}")
