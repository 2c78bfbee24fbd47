"""Runtimes as plug-ins: each knows the export format it runs, how to open and time a session,
read its memory, and which precision it really executes.

One home for timing exported files, above ``hw/`` and ``nn/``: ``flightco export`` (measured
after export), ``flightco profile measure`` and ``benchmarks/deploy.py`` all go through a plug-in
here. The repeat-and-keep-the-quietest-block timing rule itself is
:func:`flightco.measure.time_session`, used by every runtime here.

The plug-in interface (module-level names of every module in :data:`RUNTIMES`; onnxruntime's
satisfies it too):

- ``available() -> (bool, reason)``: whether the package imports here (reason names the extra);
- ``FORMATS``: the ``flightco export --format`` forms it reads (the first is the one it is given);
- ``compile(onnx_path, artifact, batch, threads, **options) -> Path``: build the runtime's own
  artifact from a verified flightco ONNX file for a fixed batch size (``.pte``, ``.so``, IR or the
  ONNX itself);
- ``load(artifact, threads) -> Session``: an object with onnxruntime's ``run(None, {name: x})
  -> [logits]`` call, so :func:`flightco.measure.time_session` and verification take any runtime;
- ``measure_artifacts({batch: artifact}, input_shape, threads, seconds) -> dict``: latency
  (median, p10, p90 and the quietest-block median) per batch size, file size and peak memory,
  measured in a fresh process (:func:`flightco.runtimes.timing.measure_in_child`; onnxruntime's
  own ``measure_file`` for its one dynamic-batch file);
- ``executed(artifact) -> dict``: what the runtime compiled, read from the runtime itself
  (per compute node: its precision and the evidence), and ``describe_precision(w_bits, a_bits,
  op) -> "int8" | "float" | ...``: the rule that :func:`executed` is checked against in the tests;
- ``version() -> str``.

A runtime whose package is missing raises :class:`RuntimeMissing` naming its pip extra.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from flightco.errors import FlightcoError


class RuntimeMissing(FlightcoError):
    """A runtime's optional package is not installed."""


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    formats: tuple[str, ...]  # export formats (``flightco export --format``) this runtime executes
    module: str               # the plug-in module (imported lazily: runtimes are optional packages)
    extra: str = ""           # pip extra that installs it (``pip install -e ".[openvino]"``); "" = default install
    options: tuple[tuple[str, object], ...] = ()  # compile options this entry fixes (tvm-tuned: tuning on)


RUNTIMES: dict[str, RuntimeInfo] = {
    "onnxruntime": RuntimeInfo("onnxruntime", ("onnx-int", "qcdq", "tensorrt"), "flightco.runtimes.onnxruntime"),
    "tensorrt": RuntimeInfo("tensorrt", ("tensorrt",), "flightco.runtimes.tensorrt", "tensorrt"),
    "openvino": RuntimeInfo("openvino", ("onnx-int",), "flightco.runtimes.openvino", "openvino"),
    "executorch": RuntimeInfo("executorch", ("onnx-int",), "flightco.runtimes.executorch", "executorch"),
    "tvm": RuntimeInfo("tvm", ("onnx-int",), "flightco.runtimes.tvm", "tvm"),
    "tvm-tuned": RuntimeInfo("tvm-tuned", ("onnx-int",), "flightco.runtimes.tvm", "tvm", (("tune", True),)),
}
MEASURABLE = ("onnxruntime", "openvino", "executorch", "tvm", "tvm-tuned")  # CPU runtimes (no GPU needed)


def runtime_for(fmt: str) -> RuntimeInfo:
    """The runtime that measures files of export format ``fmt`` on this machine's default path."""
    for info in RUNTIMES.values():
        if fmt in info.formats:
            return info
    raise KeyError(fmt)


def get_runtime(name: str, option: str = "--runtime") -> tuple[RuntimeInfo, ModuleType]:
    """The registry entry and plug-in module of runtime ``name``; a one-line error for an unknown
    name or a runtime whose package is not installed (naming the pip extra)."""
    if name not in RUNTIMES:
        raise FlightcoError(f"{option} must be one of {', '.join(MEASURABLE)}, got {name!r}")
    info = RUNTIMES[name]
    module = importlib.import_module(info.module)
    ok, why = module.available()
    if not ok:
        raise RuntimeMissing(f"{option} {name}: {why}")
    return info, module


def missing_package(package: str, extra: str) -> tuple[bool, str]:
    """``available()`` for a runtime needing ``package``: (True, "") or why not, naming the extra."""
    try:
        importlib.import_module(package)
    except Exception as exc:  # ImportError, or a broken native library
        return False, (f"{package} is not installed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                       f"install it with: pip install -e \".[{extra}]\"")
    return True, ""


def with_ext(path, ext: str):
    """``path`` ending in ``ext`` (appended, never replacing: ``m.tvm.b1`` -> ``m.tvm.b1.so``)."""
    from pathlib import Path

    path = Path(path)
    return path if path.name.endswith(ext) else path.with_name(path.name + ext)
