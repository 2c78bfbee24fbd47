"""Runtimes as plug-ins: each knows the export format it runs, how to open and time a session,
read its memory, and which precision it really executes.

One home for timing exported files, above ``hw/`` and ``nn/``: ``flightco export`` (measured
after export), ``flightco profile measure`` and ``benchmarks/deploy.py`` all go through
:mod:`flightco.runtimes.onnxruntime`. The repeat-and-keep-the-quietest-block timing rule itself
is :func:`flightco.measure.time_session`, used by every runtime here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    formats: tuple[str, ...]  # export formats (``flightco export --format``) this runtime executes
    module: str               # the plug-in module (imported lazily: runtimes are optional packages)


RUNTIMES: dict[str, RuntimeInfo] = {
    "onnxruntime": RuntimeInfo("onnxruntime", ("onnx-int", "qcdq", "tensorrt"), "flightco.runtimes.onnxruntime"),
    "tensorrt": RuntimeInfo("tensorrt", ("tensorrt",), "flightco.runtimes.tensorrt"),
}


def runtime_for(fmt: str) -> RuntimeInfo:
    """The runtime that measures files of export format ``fmt`` on this machine's default path."""
    for info in RUNTIMES.values():
        if fmt in info.formats:
            return info
    raise KeyError(fmt)
