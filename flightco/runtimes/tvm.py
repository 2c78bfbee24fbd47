"""Apache TVM (Relax, LLVM CPU target) as a runtime, untuned and MetaSchedule-tuned.

The ``onnx-int`` file is imported with Relax's ONNX frontend for a fixed batch and compiled to a
shared library (``relax.build``), either as it comes (``tvm``: TVM's default CPU schedules) or
after MetaSchedule tuning under a bounded trial budget (``tvm-tuned``:
``relax.pipeline.static_shape_tuning_pipeline``; the tuning database is kept in
``<artifact>.tuning/`` and reused when the same budget is asked again).

What runs is read from the lowered module: every fused PrimFunc holding a convolution or
matmul is listed with the dtypes of the buffers it multiplies. Measured here (TVM 0.27): the
frontend turns each QuantizeLinear/DequantizeLinear into ``R.quantize``/``R.dequantize``, and
each fused ``conv2d`` multiplies float32 buffers (its input already dequantized by the
previous function's ``quantize_dequantize`` tail, its weight dequantized once): TVM executes
the int8 network as float convolutions with the quantization rounding emulated, whatever the
bit-widths. ``apache-tvm-ffi`` 0.1.15.post2 segfaults in ``ToJSONGraph`` (every MetaSchedule
workload) with apache-tvm 0.27.0.post1; the ``tvm`` extra pins ``<0.1.15``. MetaSchedule's
default XGBoost cost model needs ``xgboost``, which TVM does not install: flightco tunes with the
random cost model (evolutionary search, every candidate measured).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from flightco.runtimes import missing_package, with_ext

IMPORTS = ("tvm", "tvm.relax")  # imported before the memory baseline of a measurement
FORMATS = ("onnx-int",)
EXTRA = "tvm"
DEFAULT_TRIALS = 64


def available() -> tuple[bool, str]:
    ok, why = missing_package("tvm", EXTRA)
    if ok:
        ok, why = missing_package("tvm.relax.frontend.onnx", EXTRA)
    return ok, why


def version() -> str:
    import tvm

    return f"tvm {tvm.__version__} (Relax, llvm)"


def target(threads: int = 1) -> Any:
    import tvm

    spec: dict[str, Any] = {"kind": "llvm", "num-cores": threads}
    cpu = getattr(tvm.target.codegen, "llvm_get_system_cpu", lambda: "")()
    if cpu and cpu != "generic":
        spec["mcpu"] = cpu
    return tvm.target.Target(spec)


def _import(onnx_path: Path, batch: int) -> Any:
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    model = onnx.load(str(onnx_path))
    inp = model.graph.input[0]
    shape = [batch, *[d.dim_value for d in inp.type.tensor_type.shape.dim[1:]]]
    return from_onnx(model, shape_dict={inp.name: shape}, keep_params_in_input=False)


def _tune(mod: Any, tgt: Any, work_dir: Path, trials: int, timeout_s: float = 600.0) -> Any:
    """MetaSchedule-tune ``mod`` with ``trials`` measured candidates in all (spread evenly over its
    tasks; functions without a record keep TVM's default schedule) and apply the database. A
    database already in ``work_dir`` for the same budget is applied without tuning again. The
    steps are those of ``relax.pipeline.static_shape_tuning_pipeline``, with the builder and
    runner timeouts raised: on a loaded 2-core machine one candidate's build took over the
    default 30 s and every candidate failed as a build error."""
    import tvm
    import tvm.s_tir.meta_schedule as ms
    from tvm.relax import transform

    stamp = work_dir / "flightco_budget.json"
    done = stamp.is_file() and json.loads(stamp.read_text()).get("trials") == trials \
        and (work_dir / "database_tuning_record.json").is_file()
    work_dir.mkdir(parents=True, exist_ok=True)
    mod = _zero(mod, tgt)
    tasks = max(1, len(ms.relax_integration.extract_tasks(mod, tgt)))
    per_task = max(1, -(-trials // tasks))
    if not done:
        ms.relax_integration.tune_relax(
            mod, {}, tgt, work_dir=str(work_dir), max_trials_global=trials, max_trials_per_task=per_task,
            num_trials_per_iter=min(per_task, 16),
            builder=ms.builder.LocalBuilder(max_workers=1, timeout_sec=timeout_s),
            runner=ms.runner.LocalRunner(timeout_sec=timeout_s,
                                         evaluator_config=ms.runner.EvaluatorConfig(number=5, repeat=1, min_repeat_ms=0)),
            cost_model="random",  # the default "xgb" needs xgboost (not a TVM dependency): it failed after 40 min here
            seed=0)
        stamp.write_text(json.dumps({"trials": trials, "tasks": tasks, "trials_per_task": per_task}))
    with tgt:
        return transform.MetaScheduleApplyDatabase(str(work_dir))(mod)


def _zero(mod: Any, tgt: Any) -> Any:
    import tvm
    from tvm import relax
    from tvm.relax import transform

    with tgt:
        return tvm.transform.Sequential([transform.DecomposeOpsForInference(), transform.CanonicalizeBindings(),
                                         relax.pipeline.zero_pipeline()])(mod)


def _primfuncs(mod: Any):
    import tvm

    for gv, f in mod.functions_items():
        if isinstance(f, tvm.tirx.PrimFunc):
            yield gv.name_hint, f


def _input_dtypes(f: Any) -> list[str]:
    """Dtypes of a PrimFunc's first two buffer parameters, read from its TVMScript signature
    (``T.Buffer((...), "float32")``; the Python object exposes no buffer map in TVM 0.27)."""
    import re

    signature = f.script().split("def main(", 1)[-1].split("):", 1)[0]
    return re.findall(r'T\.Buffer\(\((?:[^()]|\([^()]*\))*\),\s*"(\w+)"', signature)[:2]


def lowered_precision(mod: Any) -> dict[str, Any]:
    """Per fused PrimFunc holding a convolution or matmul: the dtypes of its two multiplied
    inputs (activation, weight), so 'float' means TVM computes that layer in float."""
    nodes = []
    for name, f in _primfuncs(mod):
        if "conv2d" not in name and "matmul" not in name and "dense" not in name:
            continue
        dtypes = _input_dtypes(f)
        integer = bool(dtypes) and all(d.startswith(("int", "uint")) for d in dtypes)
        nodes.append({"node": name, "op": "conv" if "conv2d" in name else "linear", "input_dtypes": dtypes,
                      "precision": "unknown" if len(dtypes) < 2 else
                      "int8" if integer and all("8" in d for d in dtypes) else ("integer" if integer else "float")})
    convs = [n for n in nodes if n["op"] == "conv"]
    return {"convolutions": len(convs), "integer_convolutions": sum(n["precision"] != "float" for n in convs), "nodes": nodes}


def compile(onnx_path: Path, artifact: Path, batch: int, threads: int = 1, tune: bool = False,
            trials: int = DEFAULT_TRIALS, **_: Any) -> Path:
    """A shared library of the file for ``batch`` images (tuned with ``trials`` MetaSchedule
    trials when ``tune``), and ``<artifact>.lowered.json`` saying what its kernels compute in."""
    import tvm
    from tvm import relax

    from flightco.atomic import atomic_path

    tgt = target(threads)
    mod = _import(onnx_path, batch)
    artifact = with_ext(artifact, ".so")
    report = lowered_precision(_zero(mod, tgt))
    if tune:
        mod = _tune(mod, tgt, artifact.with_name(artifact.name + ".tuning"), trials)
        ex = tvm.compile(mod, target=tgt)
    else:
        ex = relax.build(mod, target=tgt)
    with atomic_path(artifact) as tmp:
        ex.export_library(str(Path(tmp).with_suffix(".so")))
        Path(tmp).with_suffix(".so").replace(tmp)
    report.update({"tuned": tune, "trials": trials if tune else 0, "target": str(tgt.export() if hasattr(tgt, "export") else tgt)})
    artifact.with_name(artifact.name + ".lowered.json").write_text(json.dumps(report, indent=1, default=str))
    return artifact


class Session:
    """A Relax VirtualMachine over the compiled library with onnxruntime's ``run`` call."""

    def __init__(self, artifact: Path, threads: int = 1) -> None:
        import tvm
        from tvm import relax

        self.device = tvm.cpu()
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(artifact)), self.device)
        self.main = self.vm["main"]
        self._tensor = tvm.runtime.tensor

    def run(self, _names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = self._tensor(np.ascontiguousarray(next(iter(feeds.values()))), self.device)
        return [self.main(x).numpy()]


def load(artifact: Path, threads: int = 1) -> Session:
    return Session(artifact, threads)


def executed(artifact: Path, threads: int = 1) -> dict[str, Any]:
    """The lowered-module report written beside the library at compile time (:func:`lowered_precision`)."""
    return json.loads(Path(artifact).with_name(Path(artifact).name + ".lowered.json").read_text())


def describe_precision(w_bits: int, a_bits: int, op: str = "conv") -> str:
    """What TVM (Relax ONNX frontend, LLVM CPU) runs a layer of ``onnx-int`` as: always float."""
    return "float"


def measure_artifacts(artifacts: dict[int, Path], input_shape: list[int], threads: int = 1, seconds: float = 0.5) -> dict[str, Any]:
    from flightco.runtimes.timing import measure_in_child

    return measure_in_child(__name__, artifacts, input_shape, threads, seconds)
