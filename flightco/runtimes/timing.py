"""Timing and memory of a runtime's artifacts in a fresh process, one rule for every runtime.

A fresh child process runs only the runtime (no torch model, no exporter in memory), so its
peak resident set (``VmHWM``) after the runs minus before loading is the runtime's own peak
memory. Latency follows onnxruntime's ``measure_file``: about ``seconds`` of runs for the
median/p10/p90 spread, then :func:`flightco.measure.time_session` (the quietest of several block
medians) on the same session.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def spread(times_ms: list[float]) -> dict[str, float]:
    q = np.percentile(times_ms, [10, 50, 90])
    return {"median_ms": float(q[1]), "p10_ms": float(q[0]), "p90_ms": float(q[2]), "runs": len(times_ms)}


def time_runs(sess: Any, x: np.ndarray, seconds: float) -> dict[str, float]:
    """Median/p10/p90 of about ``seconds`` of runs and the quietest-block median of ``sess``."""
    from flightco.measure import time_session

    feeds = {"input": x}
    for _ in range(3):
        sess.run(None, feeds)
    t0 = time.perf_counter()
    sess.run(None, feeds)
    one = max(time.perf_counter() - t0, 1e-6)
    repeats = int(min(200, max(9, seconds / one)))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return {**spread(times), "quietest_block_ms": time_session(sess, feeds, 2, max(9, repeats // 2))}


def _measure_here(module: str, artifacts: dict[str, str], shape: list[int], threads: int, seconds: float) -> dict[str, Any]:
    plugin = importlib.import_module(module)
    for package in getattr(plugin, "IMPORTS", ()):  # the runtime's libraries are not its session's memory
        importlib.import_module(package)
    base = _status_kb("VmRSS")
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"threads": threads, "file_bytes": {}}
    for b, path in artifacts.items():
        sess = plugin.load(Path(path), threads)
        x = rng.standard_normal([int(b), *shape[1:]]).astype(np.float32)
        out[f"batch{b}"] = time_runs(sess, x, seconds)
        out["file_bytes"][b] = _size(Path(path))
    out["peak_memory_kb"] = max(0, _status_kb("VmHWM") - base)
    return out


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    size = path.stat().st_size
    weights = path.with_suffix(".bin")  # OpenVINO IR keeps its weights beside the .xml
    return size + (weights.stat().st_size if path.suffix == ".xml" and weights.is_file() else 0)


def measure_in_child(module: str, artifacts: dict[int, Path], input_shape: list[int], threads: int = 1,
                     seconds: float = 0.5, timeout_s: float = 600) -> dict[str, Any]:
    """Latency per batch size (one artifact each: runtimes compile for a fixed batch), file sizes
    and peak memory of ``module``'s artifacts, measured in a fresh Python process."""
    arg = json.dumps({"module": module, "artifacts": {str(b): str(p) for b, p in artifacts.items()},
                      "shape": list(input_shape), "threads": threads, "seconds": seconds})
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TVM_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "flightco.runtimes.timing", arg], capture_output=True, text=True,
                          env=env, timeout=timeout_s)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"measuring {', '.join(map(str, artifacts.values()))} failed: {last}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    sizes = result["file_bytes"]
    result["file_bytes"] = max(sizes.values()) if sizes else 0
    result["file_bytes_per_batch"] = sizes
    return result


if __name__ == "__main__":  # the child process of measure_in_child
    a = json.loads(sys.argv[1])
    print(json.dumps(_measure_here(a["module"], a["artifacts"], a["shape"], a["threads"], a["seconds"])))
