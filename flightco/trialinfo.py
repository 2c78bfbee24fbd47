"""One trial in full, as plain data: what ``flightco show RUN --trial N`` prints (or emits as JSON).

Everything comes from the study (the Genome, metrics, status and final figures stored on the
trial) and the run folder (which weight files exist), so it needs neither torch nor training.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna

from flightco.errors import RunError
from flightco.hw.workload import workload
from flightco.runs import trial_dir
from flightco.space import FLOAT_BITS, Genome

WEIGHTLESS_OPS = ("add", "pool")
"""Kernels without weights: only their activation bits mean anything."""


def _finite(v: Any) -> Any:
    return v if not isinstance(v, float) or math.isfinite(v) else None


def _bits(b: int) -> int | str:
    return "float" if b >= FLOAT_BITS else b


def describe_trial(study: optuna.Study, run_dir: Path, number: int) -> dict[str, Any]:
    """Architecture, per-kernel precision, costs per profile, status, accuracies and weight files."""
    from flightco.front import finals_of

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise RunError(f"--trial: trial {number} does not exist in {run_dir} "
                       f"(trials {min(trials, default=0)}..{max(trials, default=-1)})")
    t = trials[number]
    if "genome" not in t.user_attrs:
        raise RunError(f"--trial: trial {number} has no network yet ({t.state.name.lower()})")
    genome = Genome.from_dict(t.user_attrs["genome"])
    metrics = t.user_attrs.get("metrics", {})
    layers = []
    for lw in workload(genome):
        weightless = lw.op in WEIGHTLESS_OPS
        layers.append({
            "kernel": lw.name, "op": lw.op, "shape": f"{lw.cin}->{lw.cout} {lw.h}x{lw.w} k{lw.k}/{lw.stride}",
            "w_bits": "-" if weightless else (f"pow2 <= {lw.w_terms:g} terms" if lw.w_terms else _bits(lw.w_bits)),
            "a_bits": _bits(lw.a_bits), "macs": 0 if weightless else int(lw.macs),
        })
    costs: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if "." in key:
            profile, metric = key.split(".", 1)
            costs.setdefault(profile, {})[metric] = _finite(value)
    final = finals_of(study).get(number, {})
    weights = {}
    source = t.user_attrs.get("weights_trial", number)
    for label, path in (("final", trial_dir(run_dir, number) / "final.pt"),
                        ("reference", trial_dir(run_dir, number) / "reference.pt"),
                        ("proxy", trial_dir(run_dir, source) / "proxy.pt")):
        if path.is_file():
            weights[label] = str(path)
    proxy = t.user_attrs.get("proxy") or {}
    objectives = study.user_attrs.get("objectives", [])
    values = dict(zip(objectives, map(_finite, t.values))) if t.values else {}
    return {
        "study": study.study_name,
        "trial": number,
        "state": t.state.name.lower(),
        "status": t.user_attrs.get("status", t.state.name.lower()),
        "bits": t.user_attrs.get("bits", genome.bits_summary()),
        "objectives": values,
        "accuracy": {
            "proxy_val": _finite(proxy.get("val_accuracy")),
            "final_test": _finite(final.get("final", {}).get("test_accuracy")),
            "reference_test": _finite(final.get("reference", {}).get("test_accuracy")),
            "reference_bits": final.get("reference", {}).get("bits"),
        },
        "architecture": genome.to_dict(),
        "layers": layers,
        "model": {k: _finite(metrics[k]) for k in ("macs", "params", "weight_kb") if k in metrics},
        "costs": costs,
        "weights": weights,
    }
