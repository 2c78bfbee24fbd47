"""Python API mirroring the command line, for notebooks and scripts.

    import flightco
    study = flightco.optimize("recipes/mobilenet_energy.yaml", trials=8, out="outputs/api")
    front = flightco.pareto("outputs/api")                      # pandas DataFrame, best first
    report = flightco.export("outputs/api", int(front.trial[0]), "onnx-int", out="model.onnx")
    costs = flightco.price(report.genome, "hw_profiles/bitfusion.yaml")

Each function does what its CLI command does (same run folders, same checks, same errors:
:class:`flightco.errors.FlightcoError` subclasses), without printing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna


def optimize(recipe: str | Path, *, trials: int | None = None, out: str | Path | None = None, seed: int | None = None,
             finalists: int | None = None, storage: str | None = None, study: str | None = None,
             timeout_s: float | None = None) -> optuna.Study:
    """Run (or resume) the recipe's search and train its finalists, like ``flightco optimize``;
    returns the Optuna study (objective names set, trial user attributes readable)."""
    from contextlib import nullcontext

    import torch

    from flightco.recipe import load_recipe
    from flightco.runs import exclusive_run_lock
    from flightco.search import QuietReporter, load_context, run_finalists
    from flightco.study import create_or_resume_study, recover_orphaned_trials, run_trials

    r = load_recipe(Path(recipe))
    search = r.search.model_copy(update={k: v for k, v in {"trials": trials, "seed": seed, "timeout_s": timeout_s}.items()
                                         if v is not None})
    r = r.model_copy(update={"search": search, **({"output": str(out)} if out is not None else {})})
    run_dir = r.output_dir()
    journal = not (storage or r.storage)
    torch.set_num_threads(r.threads)
    with exclusive_run_lock(run_dir) if journal else nullcontext():
        ctx = load_context(r, run_dir)
        opt_study, _ = create_or_resume_study(r, run_dir, storage, study, budget=r.search.trials)
        reporter = QuietReporter()
        if journal:
            recover_orphaned_trials(opt_study, reporter)
        run_trials(opt_study, ctx, reporter, budget=r.search.trials, timeout_s=r.search.timeout_s)
        run_finalists(opt_study, ctx, reporter, r.training.finalists if finalists is None else finalists)
    return opt_study


def pareto(run: str | Path, *, all_trials: bool = False, measured: bool = False) -> Any:
    """The run's Pareto front (or every finished trial) as a pandas DataFrame, like
    ``flightco pareto``; ``measured=True`` adds what exports measured."""
    from flightco.pareto import all_frame, front_frame
    from flightco.runs import load_study

    _, s = load_study(Path(run))
    df = all_frame(s) if all_trials else front_frame(s)
    if measured:
        from flightco.export import with_measured

        df = with_measured(df, Path(run))
    return df


def export(run: str | Path, trial: int, format: str = "onnx-int", *, out: str | Path | None = None,
           weights: str = "auto", measure: bool = True, min_agreement: float = 0.995,
           float_stem: bool = False) -> Any:
    """Export, verify and measure one trial, like ``flightco export``; returns the
    :class:`flightco.export.ExportReport` (also written as ``<out>.json`` / ``<out>.md``).
    ``out`` defaults to ``<run>/exports/trial_NNNN.<format>.onnx``; ``float_stem`` as
    ``--float-stem``."""
    from flightco.export import export_trial

    if out is None:
        out = Path(run) / "exports" / f"trial_{trial:04d}.{format}.onnx"
    return export_trial(Path(run), trial, Path(out), weights=weights, min_agreement=min_agreement, fmt=format,
                        measure=measure, float_stem=float_stem)


def price(genome: Any, profile: str | Path | Any) -> dict[str, float]:
    """Costs of a Genome (or its dict, as stored on a trial) on a hardware profile (a path or a
    loaded profile): ``latency_ms``, ``energy_mj``, ``memory_kb`` ... Torch-free, microseconds."""
    from flightco.hw.profile import load_profile
    from flightco.hw.workload import workload
    from flightco.space import Genome

    g = genome if isinstance(genome, Genome) else Genome.from_dict(dict(genome))
    prof = load_profile(Path(profile)) if isinstance(profile, (str, Path)) else profile
    return prof.cost(workload(g)).as_dict()


def make_module_callable(module_name: str, function: str) -> None:
    """``flightco.export`` and ``flightco.pareto`` are both modules and API functions: importing a
    submodule sets the package attribute to the module, so the module itself forwards calls to
    the API function (``flightco.export(run, 7)`` works whatever was imported first)."""
    import sys
    import types

    def __call__(self: types.ModuleType, *args: Any, **kwargs: Any) -> Any:
        from flightco import api

        return getattr(api, function)(*args, **kwargs)

    module = sys.modules[module_name]
    module.__class__ = type(f"_Callable_{function}", (types.ModuleType,), {"__call__": __call__})
