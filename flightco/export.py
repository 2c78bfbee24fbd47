"""Export a trial's trained model to ONNX and verify the file in a runtime that executes it.

Two formats: ``qcdq`` (standard QuantizeLinear/Clip/DequantizeLinear ONNX, dynamic batch, for
onnxruntime and TensorRT) and ``qonnx`` (the QONNX dialect with ``Quant`` nodes carrying
arbitrary bit-widths, batch 1, the input of FINN's FPGA flow).

Verification is not optional: after writing the file, it is executed — QCDQ in an onnxruntime
session on all held-out test images, QONNX with the ``qonnx`` package's reference executor
(node by node, slow) on the first ``QONNX_VERIFY_IMAGES`` — and compared with the PyTorch model
(max abs difference of logits, top-1 agreement, accuracy of each). The figures are written next
to the file as ``<file>.json`` and ``<file>.md`` (``model.onnx.json``). Agreement below ``min_agreement`` is an error.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from flightco.errors import ExportError, RunError
from flightco.runs import load_study, stored_recipe, trial_dir
from flightco.space import Genome

WEIGHT_KINDS = ("final", "proxy", "reference")
FORMATS = ("qcdq", "qonnx")
OPSET = 13
QONNX_VERIFY_IMAGES = 100


@dataclass(frozen=True)
class ExportReport:
    file: str
    format: str
    trial: int
    weights: str
    bits: str
    genome: dict[str, Any]
    test_images: int
    pytorch_accuracy: float
    runtime_accuracy: float
    top1_agreement: float
    max_abs_diff: float
    runtime: str
    opset: int
    seconds: float
    metrics: dict[str, float]
    flight_terms: dict[str, list[int]] | None = None  # FLightNN kernels: filters using 1, 2, ... terms

    def markdown(self) -> str:
        return "\n".join([
            f"# Export of trial {self.trial} ({self.weights} weights)",
            "",
            f"- file: `{self.file}` ({self.format}, opset {self.opset}, "
            + ("dynamic batch axis)" if self.format == "onnx-qcdq" else "batch 1)"),
            f"- precision: {self.bits}",
            f"- verified on {self.test_images} held-out test images in {self.runtime}",
            f"- top-1 agreement with PyTorch: {100 * self.top1_agreement:.2f}%",
            f"- max |logit difference|: {self.max_abs_diff:.3g}",
            f"- accuracy: PyTorch {100 * self.pytorch_accuracy:.2f}%, exported file {100 * self.runtime_accuracy:.2f}%",
            "- predicted costs: " + ", ".join(f"{k} {v:.4g}" for k, v in self.metrics.items() if "." not in k),
            *([
                "- FLightNN weights, exported exactly as int8 x power-of-two scale; filters per term count:",
                *(f"  - `{k}`: " + ", ".join(f"{n} with {i + 1}" for i, n in enumerate(v)) for k, v in self.flight_terms.items()),
            ] if self.flight_terms else []),
            "",
        ])


def _resolve_weights(run_dir: Path, trial: Any, weights: str) -> tuple[Path, str]:
    source = trial.user_attrs.get("weights_trial", trial.number)
    candidates = {
        "final": trial_dir(run_dir, trial.number) / "final.pt",
        "reference": trial_dir(run_dir, trial.number) / "reference.pt",
        "proxy": trial_dir(run_dir, source) / "proxy.pt",
    }
    if weights == "auto":
        for kind in ("final", "proxy"):
            if candidates[kind].is_file():
                return candidates[kind], kind
        raise RunError(f"trial {trial.number}: no stored weights under {trial_dir(run_dir, source)}")
    if weights not in candidates:
        raise RunError(f"--weights must be one of auto, {', '.join(WEIGHT_KINDS)}, got {weights!r}")
    if not candidates[weights].is_file():
        raise RunError(f"trial {trial.number}: no {weights} weights ({candidates[weights]} not found)")
    return candidates[weights], weights


def export_trial(
    run_dir: Path, number: int, out: Path, *, weights: str = "auto", min_agreement: float = 0.995,
    max_images: int | None = None, fmt: str = "qcdq",
) -> ExportReport:
    """Rebuild trial ``number``'s model, export it to ``out`` as ``fmt``, verify, write the report."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    check_export_paths(Path(out), min_agreement)
    _, study = load_study(run_dir)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise RunError(f"trial {number} does not exist in {run_dir} (trials 0..{len(trials) - 1})")
    trial = trials[number]
    if trial.state != TrialState.COMPLETE:
        raise RunError(f"trial {number} is {trial.state.name.lower()}: only completed trials can be exported")
    if "proxy" not in trial.user_attrs:
        raise RunError(f"trial {number} was not trained ({trial.user_attrs.get('status', 'no weights')})")
    weights_path, kind = _resolve_weights(Path(run_dir), trial, weights)

    import numpy as np
    import onnxruntime as ort
    import torch

    from flightco.data import load_dataset
    from flightco.metrics import genome_metrics
    from flightco.nn.mobilenet import build_model
    from flightco.recipe import recipe_from_stored
    from flightco.hw.profile import load_profile
    from flightco.train import predict

    start = time.perf_counter()
    blob = torch.load(weights_path, map_location="cpu", weights_only=False)
    genome = Genome.from_dict(blob["genome"])
    model = build_model(genome)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    from flightco.search import mean_terms, realised_terms

    terms = realised_terms(model) or None

    recipe = recipe_from_stored(stored_recipe(study), files_dir=Path(run_dir) / ".recipe")
    ds = recipe.dataset
    data = load_dataset(ds.name, root=ds.root, test_fraction=ds.test_fraction, val_fraction=ds.val_fraction,
                        seed=recipe.search.seed, limit_train=ds.limit_train, options=ds.options)
    x, y = data.test.x, data.test.y
    if fmt == "qonnx":
        max_images = min(max_images or QONNX_VERIFY_IMAGES, QONNX_VERIFY_IMAGES)
    if max_images:
        x, y = x[:max_images], y[:max_images]

    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"--out: cannot create folder {out.parent} ({exc.strerror or exc})") from None
    if fmt == "qonnx":
        export_qonnx_file(model, x[:1], out)
        ort_logits = run_qonnx(out, x.numpy())
        runtime = f"qonnx {_version('qonnx')} (execute_onnx)"
    else:
        export_onnx(model, x[:1], out)
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        ort_logits = np.concatenate([sess.run(None, {name: x[i : i + 256].numpy()})[0] for i in range(0, len(x), 256)])
        runtime = f"onnxruntime {ort.__version__}"
    pt_logits = predict(model, x).numpy()
    labels = y.numpy()
    report = ExportReport(
        file=str(out), format="onnx-qcdq" if fmt == "qcdq" else "qonnx", trial=number, weights=kind, bits=genome.bits_summary(),
        genome=genome.to_dict(), test_images=int(len(x)),
        pytorch_accuracy=float((pt_logits.argmax(1) == labels).mean()),
        runtime_accuracy=float((ort_logits.argmax(1) == labels).mean()),
        top1_agreement=float((pt_logits.argmax(1) == ort_logits.argmax(1)).mean()),
        max_abs_diff=float(np.abs(pt_logits - ort_logits).max()),
        runtime=runtime, opset=OPSET, seconds=time.perf_counter() - start,
        metrics=genome_metrics(genome, [load_profile(p) for p in recipe.hardware_paths], mean_terms(terms)),
        flight_terms=terms,
    )
    from flightco.atomic import write_text

    json_path, md_path = report_paths(out)
    write_text(json_path, json.dumps(asdict(report), indent=2) + "\n")
    write_text(md_path, report.markdown())
    if report.top1_agreement < min_agreement:
        raise ExportError(
            f"{out}: {runtime} agrees with PyTorch on only {100 * report.top1_agreement:.2f}% of test images "
            f"(< {100 * min_agreement:.1f}%); report in {json_path}"
        )
    return report


def report_paths(out: Path) -> tuple[Path, Path]:
    """The reports beside an exported file: ``<file>.json`` and ``<file>.md`` (``model.onnx.json``),
    the full file name plus a suffix, so they can never be mistaken for (or replace) another file."""
    out = Path(out)
    return out.with_name(out.name + ".json"), out.with_name(out.name + ".md")


def check_export_paths(out: Path, min_agreement: float) -> None:
    """Refuse, before anything is read or written, an output that cannot be written or that would
    replace a run folder's own files (the file or either report), and a meaningless threshold."""
    from flightco.outputs import check_writable_file

    if not 0.0 <= min_agreement <= 1.0:
        raise ExportError(f"--min-agreement must be a fraction between 0 and 1 (e.g. 0.995), got {min_agreement:g}")
    check_writable_file(out, "--out")
    for path in report_paths(out):
        check_writable_file(path, "--out (its report)")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _brevitas_export(export_fn: Any, label: str, model: Any, path: Path, **kwargs: Any) -> None:
    """Run one Brevitas exporter on ``model`` in eval mode, FLightNN weights baked exactly; any
    failure becomes one line naming the file."""
    model.eval()
    check_flight_exact(model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_fn(model, **kwargs)
    except Exception as exc:  # torch.onnx raises many types; report one line
        raise ExportError(f"{path}: {label} export failed: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None


def export_qonnx_file(model: Any, example: Any, path: Path) -> None:
    """QONNX export (batch 1, as FINN takes it) through Brevitas, tidied by QONNX's own cleanup."""
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    _brevitas_export(export_qonnx, "QONNX", model, path, args=example[:1], export_path=str(path),
                     input_names=["input"], output_names=["logits"], opset_version=OPSET)
    cleanup_model(ModelWrapper(str(path))).save(str(path))


def run_qonnx(path: Path, x: Any) -> Any:
    """Logits of a batch-1 QONNX file for every image of ``x``, by QONNX's reference executor."""
    import numpy as np
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    model = ModelWrapper(str(path))
    name, out = model.graph.input[0].name, model.graph.output[0].name
    return np.concatenate([execute_onnx(model, {name: x[i : i + 1]})[out] for i in range(len(x))])


def check_flight_exact(model: Any) -> None:
    """Bake FLightNN weights into their projections and check each layer is exactly int8 times a
    power-of-two scale, so the QCDQ weights that Brevitas writes are the trained values."""
    import torch

    from flightco.nn.flight import bake_weights, flight_quantizers

    bake_weights(model)
    for name, _ in flight_quantizers(model):
        q = model.get_submodule(name).quant_weight()
        ints = (q.value / q.scale).detach()
        scale = float(q.scale)
        exact = (torch.equal(ints, ints.round()) and float(ints.abs().max().detach()) <= 127
                 and scale == 2.0 ** round(math.log2(scale)))
        if not exact:
            raise ExportError(f"FLightNN layer {name}: weights are not int8 x power-of-two scale (cannot export exactly)")


def export_onnx(model: Any, example: Any, path: Path) -> None:
    """The one ONNX QCDQ export path: eval mode, fixed opset, dynamic batch axis, sub-8-bit clips
    moved after dequantization and float-weight layers guarded from onnxruntime's own weight
    quantization (see :mod:`flightco.onnx_passes` for why), FLightNN weights baked exactly."""
    from brevitas.export import export_onnx_qcdq

    _brevitas_export(
        export_onnx_qcdq, "ONNX", model, path, args=example, export_path=str(path), dynamo=False,
        opset_version=OPSET, input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, keep_initializers_as_inputs=False,
    )
    import onnx

    from flightco.onnx_passes import clip_after_dequantize, guard_float_weights

    graph = onnx.load(str(path))
    clip_after_dequantize(graph)
    guard_float_weights(graph)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
