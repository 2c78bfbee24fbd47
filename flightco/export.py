"""Export a trial's trained model to ONNX, verify the file in the runtime that executes it, and
measure it there.

Formats:

- ``onnx-int`` (default): the deploy form (:mod:`flightco.nn.deploy`: BN folded, residual adds
  and pooling inputs quantized, int32 biases) with uint8 activations, so onnxruntime runs every
  quantized convolution, residual add and the classifier as integer kernels;
- ``tensorrt``: the same deploy model as signed int8 Q/DQ with zero point 0 for TensorRT's
  explicit quantization, linted on CPU (:mod:`flightco.runtimes.tensorrt`), engine built where
  TensorRT and a GPU exist;
- ``qcdq``: Brevitas's QCDQ of the trained model as trained (BN unfolded: onnxruntime runs its
  convolutions in float between Q/DQ nodes; FLightNN weights exact);
- ``qonnx``: ``Quant`` nodes at any bit-width, batch 1, the input of FINN's FPGA flow.

Verification is not optional: raw test pixels go through the preprocessing the file carries in
its metadata (mean/std of the training split), then through the file — onnxruntime on all test
images, QONNX's reference executor on 100 stratified ones — and are compared with the PyTorch
model the file computes (top-1 agreement, max |logit difference|, accuracies; for the deploy
forms also the trained model's accuracy before folding). onnxruntime files are then measured
(:mod:`flightco.runtimes.onnxruntime`: integer kernels from the optimized graph and profiler,
latency at batch 1 and 32, size, peak memory). Reports: ``<file>.json`` / ``<file>.md``, and a
copy under ``RUN/measured/`` for ``flightco pareto --measured`` and ``flightco report``.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
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
FORMATS = ("onnx-int", "qcdq", "tensorrt", "qonnx")
DEFAULT_FORMAT = "onnx-int"
OPSET = 13
QONNX_VERIFY_IMAGES = 100
CALIBRATION_IMAGES = 512  # training images that calibrate the deploy form's added quantizers
MEASURED_DIR = "measured"  # run-folder subfolder where exports record what they measured (pareto --measured)


W8_STORAGE = {
    True: "int8 (onnxruntime's fast u8 x s8 kernels; exact on x86 with AVX-512 VNNI or AVX-VNNI and on ARM64, "
          "may saturate on AVX2-only x86: re-export with --w8-type uint8 for such CPUs)",
    False: "uint8 with zero point 128 in dense convolutions (exact on every CPU; onnxruntime's u8 x u8 kernels, "
           "slower than int8 where VNNI exists); int8 in depthwise ones, whose kernels are exact everywhere",
}
"""The 8-bit weight container of an ``onnx-int`` file, as the metadata and the report state it."""


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
    preprocessing: dict[str, Any] | None = None       # what the file expects: (pixel / 255 - mean) / std
    trained_accuracy: float | None = None             # test accuracy of the trained (unfolded) model
    deploy_changes: dict[str, int] | None = None      # what the deploy passes changed
    kernels: dict[str, Any] | None = None             # onnxruntime: integer vs float execution
    measured: dict[str, Any] | None = None            # latency / size / memory in the runtime
    lint: list[str] | None = None                     # tensorrt: problems found (empty: none)
    engine: dict[str, Any] | str | None = None        # tensorrt engine figures, or why none was built
    file_metrics: dict[str, float] | None = None      # the run's profiles pricing the exported file's own graph
    deployed: dict[str, Any] | None = None            # --runtime R: R's artifacts, agreement, precision, latency
    w8_type: str | None = None                        # onnx-int: how 8-bit weights are stored, and where that is exact

    def markdown(self) -> str:
        lines = [
            f"# Export of trial {self.trial} ({self.weights} weights)",
            "",
            f"- file: `{self.file}` ({self.format}, opset {self.opset}, "
            + ("batch 1)" if self.format == "qonnx" else "dynamic batch axis)"),
            f"- precision: {self.bits}",
        ]
        if self.w8_type:
            lines.append(f"- 8-bit weights stored as {self.w8_type}")
        if self.preprocessing:
            p = self.preprocessing
            lines.append(f"- input: {p['layout']} float32, `(pixel / 255 - mean) / std` with mean {p['mean']}, std {p['std']} "
                         "(training split; also in the file's metadata)")
        lines += [
            f"- verified on {self.test_images} held-out test images (stratified, from raw pixels) in {self.runtime}",
            f"- top-1 agreement with PyTorch: {100 * self.top1_agreement:.2f}%",
            f"- max |logit difference|: {self.max_abs_diff:.3g}",
            f"- accuracy: PyTorch {100 * self.pytorch_accuracy:.2f}%, exported file {100 * self.runtime_accuracy:.2f}%"
            + (f" (trained model before BN folding: {100 * self.trained_accuracy:.2f}%)" if self.trained_accuracy is not None else ""),
        ]
        if self.kernels:
            k = self.kernels
            lines.append(f"- onnxruntime ran {k['integer_convolutions']}/{k['convolutions']} convolutions as QLinearConv; "
                         f"integer kernels {k['integer_nodes']}, float compute {k['float_nodes']}; "
                         f"{100 * k['integer_time_share']:.0f}% of kernel time (profiler, batch 1) in integer kernels")
            for n in k["not_integer"]:
                lines.append(f"  - float: `{n['node']}` ({n['op']}): {n['reason']}")
        if self.measured:
            m = self.measured
            for b in ("batch1", "batch32"):
                if b in m:
                    lines.append(f"- measured {b.replace('batch', 'batch ')}: median {m[b]['median_ms']:.4g} ms "
                                 f"(p10 {m[b]['p10_ms']:.4g}, p90 {m[b]['p90_ms']:.4g}, {m[b]['runs']} runs, {m['threads']} thread)")
            lines.append(f"- file size {m['file_bytes'] / 1024:.1f} KiB; session peak memory {m['peak_memory_kb'] / 1024:.1f} MiB")
        pred = {k: v for k, v in self.metrics.items() if "." in k and k.endswith("latency_ms")}
        if pred and self.measured and "batch1" in self.measured:
            lines.append("- predicted vs measured batch-1 latency: " + ", ".join(
                f"{k.split('.')[0]} {v:.4g} ms" for k, v in pred.items()) + f"; measured {self.measured['batch1']['median_ms']:.4g} ms")
        lines.append("- predicted costs: " + ", ".join(f"{k} {v:.4g}" for k, v in self.metrics.items() if "." not in k))
        if self.file_metrics:
            lines.append("- predicted costs of the exported graph itself (read back from the file): "
                         + ", ".join(f"{k} {v:.4g}" for k, v in self.file_metrics.items() if "." not in k))
        if self.lint is not None:
            lines.append("- TensorRT lint: " + ("passes (signed int8, zero point 0, per-channel weights on axis 0, Q/DQ on every conv input)"
                                              if not self.lint else f"{len(self.lint)} problems: " + "; ".join(self.lint[:5])))
        if self.engine is not None:
            lines.append(f"- TensorRT engine: {self.engine if isinstance(self.engine, str) else {k: v for k, v in self.engine.items() if k != 'layers_json'}}")
        if self.deployed:
            d = self.deployed
            lines.append(f"- deployed to {d['version']}: top-1 agreement {100 * d['top1_agreement']:.2f}%, "
                         f"{d['executed'].get('integer_convolutions')}/{d['executed'].get('convolutions')} convolutions in integer "
                         f"(see `{Path(self.file).name}.{d['runtime']}.md`)")
        if self.deploy_changes:
            lines.append("- deploy passes: " + ", ".join(f"{k} {v}" for k, v in self.deploy_changes.items()))
        if self.flight_terms:
            lines += ["- FLightNN weights, exported exactly as int8 x power-of-two scale; filters per term count:",
                      *(f"  - `{k}`: " + ", ".join(f"{n} with {i + 1}" for i, n in enumerate(v)) for k, v in self.flight_terms.items())]
        return "\n".join([*lines, ""])


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


def verification_indices(y: Any, limit: int | None, seed: int = 0) -> Any:
    """Test images to verify on: all of them, or ``limit`` drawn evenly from every class in a
    shuffled order (the test split is sorted by class, so its first images are all one digit)."""
    import numpy as np

    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    if limit is None or limit >= len(y):
        return order
    per_class = [order[y[order] == c] for c in np.unique(y)]
    picked = [idx[i] for i in range(max(map(len, per_class))) for idx in per_class if i < len(idx)][:limit]
    return np.array(rng.permutation(picked))


def preprocessing_of(data: Any) -> dict[str, Any]:
    return {"layout": "NCHW", "scale": 1 / 255, "mean": [round(v, 7) for v in data.mean],
            "std": [round(v, 7) for v in data.std], "resolution": data.resolution, "channels": data.in_channels}


def raw_pixels(x: Any, pre: dict[str, Any]) -> Any:
    """The uint8 NHWC images a normalised batch came from (exact: pixels are integers)."""
    import numpy as np

    mean = np.array(pre["mean"], np.float64).reshape(1, -1, 1, 1)
    std = np.array(pre["std"], np.float64).reshape(1, -1, 1, 1)
    pixels = np.rint((np.asarray(x, np.float64) * std + mean) * 255)
    return np.clip(pixels, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def preprocess(raw: Any, pre: dict[str, Any]) -> Any:
    """What a deployment does to its camera images before the model, from the file's metadata."""
    import numpy as np

    x = raw.astype(np.float32).transpose(0, 3, 1, 2) * np.float32(pre["scale"])
    mean = np.array(pre["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.array(pre["std"], np.float32).reshape(1, -1, 1, 1)
    return ((x - mean) / std).astype(np.float32)


def _write_metadata(path: Path, pre: dict[str, Any], info: dict[str, Any]) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in {"flightco.preprocessing": json.dumps(pre), **{f"flightco.{k}": str(v) for k, v in info.items()}}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))


def read_preprocessing(path: Path) -> dict[str, Any]:
    """The preprocessing a flightco export carries in its ONNX metadata."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if "flightco.preprocessing" not in props:
        raise ExportError(f"{path}: no flightco.preprocessing metadata (not exported by flightco?)")
    return json.loads(props["flightco.preprocessing"])


def _file_opset(path: Path) -> int:
    import onnx

    return max((o.version for o in onnx.load(str(path), load_external_data=False).opset_import if o.domain in ("", "ai.onnx")),
               default=0)


def _run_onnxruntime(path: Path, x: Any, reference: bool = False) -> Any:
    import numpy as np

    from flightco.runtimes.onnxruntime import session

    sess = session(path, threads=2, reference=reference)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 256]})[0] for i in range(0, len(x), 256)])


def export_trial(
    run_dir: Path, number: int, out: Path, *, weights: str = "auto", min_agreement: float = 0.995,
    max_images: int | None = None, fmt: str = DEFAULT_FORMAT, measure: bool = True, threads: int = 1,
    deploy_to: str = "onnxruntime", trials: int | None = None, runtime_options: dict | None = None,
    w8_type: str = "auto", float_stem: bool = False,
) -> ExportReport:
    """Rebuild trial ``number``'s model, export it to ``out`` as ``fmt``, verify it from raw test
    images, measure it in its runtime, and write ``<out>.json`` / ``<out>.md``. ``runtime_options``
    override ``deploy_to``'s compile options (a benchmark's variant: then the run's own
    ``measured/`` records are left as they are). ``w8_type`` (onnx-int): how 8-bit weights are
    stored, and ``float_stem``, see :func:`export_onnx_int`."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    from flightco.runtime_export import check_runtime_option
    from flightco.runtimes.onnxruntime import W8_TYPES, signed_8bit_weights

    if w8_type not in W8_TYPES:
        raise ExportError(f"--w8-type must be one of {', '.join(W8_TYPES)}, got {w8_type!r}")
    if float_stem and fmt != "onnx-int":
        raise ExportError(f"--float-stem applies to --format onnx-int only, got --format {fmt}")

    check_runtime_option(deploy_to, fmt)
    out = Path(out)
    check_export_paths(out, min_agreement)
    _, study = load_study(run_dir)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}  # not `trials`: that is tvm-tuned's budget
    if number not in by_number:
        raise RunError(f"trial {number} does not exist in {run_dir} (trials 0..{len(by_number) - 1})")
    trial = by_number[number]
    if trial.state != TrialState.COMPLETE:
        raise RunError(f"trial {number} is {trial.state.name.lower()}: only completed trials can be exported")
    if "proxy" not in trial.user_attrs:
        raise RunError(f"trial {number} was not trained ({trial.user_attrs.get('status', 'no weights')})")
    weights_path, kind = _resolve_weights(Path(run_dir), trial, weights)

    import numpy as np
    import torch

    from flightco.atomic import atomic_path, write_text
    from flightco.data import load_dataset
    from flightco.hw.profile import load_profile
    from flightco.metrics import genome_metrics
    from flightco.nn.mobilenet import build_model
    from flightco.recipe import recipe_from_stored
    from flightco.front import mean_terms
    from flightco.search import realised_terms
    from flightco.train import predict

    start = time.perf_counter()
    blob = torch.load(weights_path, map_location="cpu", weights_only=False)
    genome = Genome.from_dict(blob["genome"])
    model = build_model(genome)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    terms = realised_terms(model) or None

    recipe = recipe_from_stored(stored_recipe(study), files_dir=Path(run_dir) / ".recipe")
    ds = recipe.dataset
    data = load_dataset(ds.name, root=ds.root, test_fraction=ds.test_fraction, val_fraction=ds.val_fraction,
                        seed=recipe.search.seed, limit_train=ds.limit_train, options=ds.options)
    if fmt == "qonnx":
        max_images = min(max_images or QONNX_VERIFY_IMAGES, QONNX_VERIFY_IMAGES)
    idx = torch.from_numpy(verification_indices(data.test.y.numpy(), max_images))
    x, y = data.test.x[idx], data.test.y[idx]
    pre = preprocessing_of(data)
    x_file = preprocess(raw_pixels(x.numpy(), pre), pre)  # what the file sees: raw pixels, preprocessed

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"--out: cannot create folder {out.parent} ({exc.strerror or exc})") from None
    trained_accuracy = None
    changes: dict[str, int] | None = None
    lint = engine = kernels = measured = None
    storage = W8_STORAGE[signed_8bit_weights(w8_type)] if fmt == "onnx-int" else None
    with atomic_path(out) as tmp:
        if fmt in ("onnx-int", "tensorrt"):
            trained_accuracy = float((predict(model, data.test.x).argmax(1) == data.test.y).float().mean())
        calib = data.train.x[torch.from_numpy(verification_indices(data.train.y.numpy(), CALIBRATION_IMAGES, seed=1))]
        model, changes = write_format(model, x[:1], tmp, fmt, calib, w8_type, float_stem)
        info = {"format": fmt, "trial": number, "bits": genome.bits_summary()}
        if storage:  # a file with int8 8-bit weights is exact only on CPUs whose kernels do not saturate
            info["w8_type"] = storage
        _write_metadata(tmp, pre, info)
        if fmt == "qonnx":
            ort_logits = run_qonnx(tmp, x_file)
            runtime = f"qonnx {_version('qonnx')} (execute_onnx)"
        else:
            import onnxruntime as ort

            # the TensorRT form is checked for parity as written (TensorRT's int8 does not saturate;
            # onnxruntime's AVX2 int8 kernels do, on 8-bit weights in int8 form)
            ort_logits = _run_onnxruntime(tmp, x_file, reference=fmt == "tensorrt")
            runtime = f"onnxruntime {ort.__version__}" + (" (basic optimizations: Q/DQ as written)" if fmt == "tensorrt" else "")
        opset = _file_opset(tmp)
    if fmt != "qonnx":
        from dataclasses import asdict as _asdict

        from flightco.runtimes.onnxruntime import kernel_report, measure_file

        kernels = _asdict(kernel_report(out, threads, example=x_file[:1]))
        if measure:
            measured = measure_file(out, [1, *x.shape[1:]], threads=threads)
    if fmt == "tensorrt":
        from flightco.runtimes import tensorrt as trt_rt

        lint = trt_rt.lint(out)
        ok, why = trt_rt.available()
        engine = trt_rt.build_and_time(out, [1, *x.shape[1:]]) if ok and not lint else (why if not ok else "not built: lint failed")
    pt_logits = predict(model, x).numpy()
    labels = y.numpy()
    deployed = None
    if deploy_to != "onnxruntime" and (ort_logits.argmax(1) == pt_logits.argmax(1)).mean() >= min_agreement:
        from flightco.runtime_export import deploy

        deployed = asdict(deploy(out, deploy_to, x_file, pt_logits, labels, genome, threads=threads, measure=measure,
                                 trials=trials, compile_options=runtime_options))
    profiles = [load_profile(p) for p in recipe.hardware_paths]
    report = ExportReport(
        file=str(out), format=fmt, trial=number, weights=kind, bits=genome.bits_summary(),
        genome=genome.to_dict(), test_images=int(len(x)),
        pytorch_accuracy=float((pt_logits.argmax(1) == labels).mean()),
        runtime_accuracy=float((ort_logits.argmax(1) == labels).mean()),
        top1_agreement=float((pt_logits.argmax(1) == ort_logits.argmax(1)).mean()),
        max_abs_diff=float(np.abs(pt_logits - ort_logits).max()),
        runtime=runtime, opset=opset, seconds=time.perf_counter() - start,
        metrics=genome_metrics(genome, profiles, mean_terms(terms)),
        file_metrics=_file_metrics(out, profiles),
        flight_terms=terms, preprocessing=pre, trained_accuracy=trained_accuracy, deploy_changes=changes,
        kernels=kernels, measured=measured, lint=lint, engine=engine, deployed=deployed,
        w8_type=storage,
    )
    text = json.dumps(asdict(report), indent=2) + "\n"
    json_path, md_path = report_paths(out)
    write_text(json_path, text)
    write_text(md_path, report.markdown())
    if measured is not None and runtime_options is None:
        record = Path(run_dir) / MEASURED_DIR / f"{number:04d}-{fmt}.json"
        record.parent.mkdir(exist_ok=True)
        write_text(record, text)
    if deployed is not None and deployed.get("measured") and runtime_options is None:  # per runtime, beside (not among) onnxruntime's records
        record = Path(run_dir) / MEASURED_DIR / deploy_to / f"{number:04d}-{fmt}.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        write_text(record, json.dumps(deployed, indent=2, default=str) + "\n")
    if report.top1_agreement < min_agreement:
        raise ExportError(
            f"{out}: {runtime} agrees with PyTorch on only {100 * report.top1_agreement:.2f}% of test images "
            f"(< {100 * min_agreement:.1f}%); report in {json_path}"
        )
    if deployed is not None and deployed["top1_agreement"] < min_agreement:
        raise ExportError(f"{out}: {deploy_to} agrees with PyTorch on only {100 * deployed['top1_agreement']:.2f}% of test images "
                          f"(< {100 * min_agreement:.1f}%); report in {out}.{deploy_to}.json")
    if fmt == "tensorrt" and lint:
        raise ExportError(f"{out}: not TensorRT-ready: {lint[0]} ({len(lint)} problems; report in {out}.json)")
    return report


def _file_metrics(path: Path, profiles: list[Any]) -> dict[str, float] | None:
    """The run's profiles pricing the workload read back from the exported graph itself
    (:func:`flightco.hw.onnx_workload.workload_from_onnx`): what was deployed, not what was
    searched (the deploy form adds 8-bit quantizers on residual adds and the pooling input)."""
    from flightco.hw.onnx_workload import workload_from_onnx

    try:
        layers = workload_from_onnx(path)
    except Exception:  # an exotic graph the reader does not know: the report says so with null
        return None
    out: dict[str, float] = {}
    for i, prof in enumerate(profiles):
        for key, value in prof.cost(layers).as_dict().items():
            out[f"{prof.name}.{key}"] = value
            if i == 0:
                out[key] = value
    return out


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


def write_format(model: Any, example: Any, path: Path, fmt: str, calibration: Any,
                 w8_type: str = "auto", float_stem: bool = False) -> tuple[Any, dict[str, int] | None]:
    """Write ``model`` to ``path`` as ``fmt``; returns the model the file computes (the folded,
    bias-snapped deploy form for onnx-int / tensorrt, else ``model``) and what the passes changed."""
    if fmt in ("onnx-int", "tensorrt"):
        from flightco.nn.deploy import fold_for_deploy, snap_biases
        from flightco.onnx_passes import bias_scales

        model = fold_for_deploy(model, calibration, signed_activations=fmt == "tensorrt")
        snap_biases(model, bias_scales(_brevitas_qcdq(model, example, path)))
        if fmt == "onnx-int":
            return model, export_onnx_int(model, example, path, w8_type, float_stem)
        return model, export_tensorrt(model, example, path)
    if fmt == "qonnx":
        export_qonnx_file(model, example, path)
    else:
        export_onnx(model, example, path)
    return model, None


def export_float(genome: Genome, path: Path) -> None:
    """The same network with every layer in float (plain torch layers, BN for onnxruntime to
    fold), exported with the same opset and dynamic batch: the baseline integer kernels must beat."""
    import torch

    from flightco.nn.mobilenet import build_model
    from flightco.space import FLOAT_BITS

    torch.manual_seed(0)
    model = build_model(genome.with_uniform_bits(FLOAT_BITS)).eval()
    x = torch.randn(1, genome.in_channels, genome.resolution, genome.resolution)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=OPSET, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})


def measured_records(run_dir: Path) -> dict[tuple[int, str], dict[str, Any]]:
    """What exports of this run measured, by (trial, format): the reports under ``measured/``."""
    folder = Path(run_dir) / MEASURED_DIR
    records = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            r = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        records[(int(r["trial"]), r["format"])] = r
    return records


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _brevitas_export(export_fn: Any, label: str, model: Any, path: Path, **kwargs: Any) -> None:
    """Run one Brevitas exporter on ``model`` in eval mode, FLightNN weights baked exactly; any
    failure becomes one line naming the file."""
    model.eval()
    check_flight_exact(model)
    try:
        with warnings.catch_warnings(), _quiet_fds():
            warnings.simplefilter("ignore")
            export_fn(model, **kwargs)
    except Exception as exc:  # torch.onnx raises many types; report one line
        raise ExportError(f"{path}: {label} export failed: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    finally:
        for stray in (Path(f"{path}.data"), Path(path).with_suffix(".onnx.data")):
            if stray.is_file():  # torch.onnx's external-data file: flightco's models fit in one file
                stray.unlink()


@contextmanager
def _quiet_fds() -> Any:
    """Silence stdout/stderr at the file-descriptor level while an exporter runs: torch.onnx and
    ONNX's version converter print progress and caught tracebacks from C++ on success."""
    import os
    import sys
    import tempfile

    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1), os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


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


def _brevitas_qcdq(model: Any, example: Any, path: Path) -> Any:
    """Brevitas's QCDQ export (dynamic batch, fixed opset), loaded back as an ONNX model."""
    from brevitas.export import export_onnx_qcdq
    import onnx

    _brevitas_export(
        export_onnx_qcdq, "ONNX", model, path, args=example, export_path=str(path), dynamo=False,
        opset_version=OPSET, input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, keep_initializers_as_inputs=False,
    )
    return onnx.load(str(path))


def export_onnx_int(model: Any, example: Any, path: Path, w8_type: str = "auto",
                    float_stem: bool = False) -> dict[str, int]:
    """``onnx-int``: the QDQ form onnxruntime runs as integer kernels. ``model`` must be the
    deploy form (:func:`flightco.nn.deploy.fold_for_deploy`: BN folded, every conv input and
    output quantized). Weight clips are folded into int8 initializers, biases become int32,
    signed activations become uint8 with zero point 128; 8-bit weights stay int8 where the CPU's
    u8 x s8 kernels are exact (``w8_type`` ``auto``: VNNI or ARM64, see
    :func:`flightco.runtimes.onnxruntime.int8_weights_exact`) and become uint8 with zero point 128
    elsewhere (``uint8``: AVX2's kernel saturates on int8 ones; a file for such a target);
    depthwise convolutions are padded, exactly, to the channel multiple of onnxruntime's fast
    depthwise kernel (:mod:`flightco.onnx_channel_pad`); float-weight layers are guarded so
    onnxruntime does not quantize them itself. ``float_stem`` runs the stem as a float conv on the
    quantized input (:func:`flightco.onnx_passes.float_stem`: faster with one input channel);
    otherwise a strided stem on 1 or 3 channels reads a ``SpaceToDepth`` of the input as a
    stride-1 integer conv (:mod:`flightco.onnx_stem`: exact, onnxruntime's fast kernel).
    Returns how many nodes each pass changed."""
    import onnx

    from flightco.onnx_channel_pad import pad_depthwise_channels
    from flightco.onnx_passes import (
        activations_to_uint8,
        fold_constant_clips,
        guard_float_weights,
        quantize_bias_int32,
        wide_weights_to_uint8,
    )
    from flightco.onnx_passes import float_stem as run_stem_in_float
    from flightco.onnx_stem import space_to_depth_stem
    from flightco.runtimes.onnxruntime import signed_8bit_weights

    unsigned_8bit = not signed_8bit_weights(w8_type)
    graph = _brevitas_qcdq(model, example, path)
    changes = {"weight_clips_folded": fold_constant_clips(graph), "int32_biases": quantize_bias_int32(graph),
               "activations_to_uint8": activations_to_uint8(graph)}
    if float_stem:
        changes["stem_in_float"] = run_stem_in_float(graph)
    changes |= {"float_layers_guarded": guard_float_weights(graph),
               "8bit_weights_to_uint8": wide_weights_to_uint8(graph) if unsigned_8bit else 0,
               "depthwise_channels_padded": pad_depthwise_channels(graph),
               "stem_space_to_depth": space_to_depth_stem(graph)}
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    return changes


def export_tensorrt(model: Any, example: Any, path: Path) -> dict[str, int]:
    """``tensorrt``: TensorRT's explicit-quantization form from the same deploy model: signed
    int8 Q/DQ with zero point 0, per-channel weights on axis 0, int32 biases, sub-8-bit ranges as
    a float Clip before the Q (no integer op between Q and DQ). ``model`` must come from
    ``fold_for_deploy(..., signed_activations=True)`` (8-bit ReLU outputs at 7 bits of magnitude)
    for every activation to fit int8 exactly; otherwise their step is doubled here. Checked by
    :func:`flightco.runtimes.tensorrt.lint`."""
    import onnx

    from flightco.onnx_passes import (
        clip_before_quantize,
        fold_constant_clips,
        guard_float_weights,
        quantize_bias_int32,
        unsigned_to_signed,
    )

    graph = _brevitas_qcdq(model, example, path)
    changes = {"weight_clips_folded": fold_constant_clips(graph), "int32_biases": quantize_bias_int32(graph)}
    exact, doubled = unsigned_to_signed(graph)
    changes.update({"unsigned_to_int8_exact": exact, "unsigned_8bit_to_int8_step_doubled": doubled,
                    "clips_before_quantize": clip_before_quantize(graph), "float_layers_guarded": guard_float_weights(graph)})
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    return changes


def with_measured(df: Any, run_dir: Path) -> Any:
    """``df`` (a pareto frame) with what exports measured: per trial its newest export's format,
    batch-1 and batch-32 median latency, file size, integer convolutions and accuracy in the
    runtime (rows without an export keep empty cells)."""
    import pandas as pd

    rows = {}
    for (trial, fmt), r in measured_records(run_dir).items():
        m, k = r.get("measured") or {}, r.get("kernels") or {}
        if trial in rows and fmt != DEFAULT_FORMAT:
            continue
        rows[trial] = {"trial": trial, "format": fmt,
                       "measured_b1_ms": m.get("batch1", {}).get("median_ms"),
                       "measured_b32_ms": m.get("batch32", {}).get("median_ms"),
                       "measured_kb": m.get("file_bytes", 0) / 1024 if m else None,
                       "integer_convs": f"{k.get('integer_convolutions')}/{k.get('convolutions')}" if k else None,
                       "runtime_accuracy": r.get("runtime_accuracy")}
    if not rows:
        return df.assign(format=None, measured_b1_ms=None, measured_b32_ms=None)
    return df.merge(pd.DataFrame(rows.values()), on="trial", how="left")


from flightco.api import make_module_callable  # noqa: E402  (flightco.export(...) is the API function)

make_module_callable(__name__, "export")
