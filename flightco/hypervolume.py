"""Hypervolume of a run's front over time, against a fixed reference point per recipe.

The hypervolume (the objective-space area a front dominates, bounded by a reference point) is the
standard single figure for comparing multi-objective searches: runs, strategies, budgets. It only
compares across runs when the reference point is fixed, so flightco derives it from the recipe,
never from what a run happened to find:

* ``search.hypervolume_reference`` in the recipe, when given (metric -> value), else
* accuracy: 0 (no candidate is worse than guessing nothing right);
* a cost objective: its bound, when the recipe constrains that metric (feasible trials never
  exceed it), else the cost of the space's largest network (the widest, deepest choice of every
  option at the widest bit-width the space offers) on the recipe's primary profile.

Trials are ordered by completion time; the history gives, after each finished trial, the
hypervolume of the feasible Pareto front of all trials finished so far (Optuna's own
hypervolume code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState


def reference_point(recipe: Any, largest_costs: Mapping[str, float] | None = None) -> dict[str, float]:
    """The recipe's fixed reference point, metric -> value (see the module docstring)."""
    given = dict(getattr(recipe.search, "hypervolume_reference", None) or {})
    bounds = {c.metric: c.bound for c in recipe.constraints if c.op in ("<=", "<")}
    out: dict[str, float] = {}
    for o in recipe.objectives:
        if o.metric in given:
            out[o.metric] = float(given[o.metric])
        elif o.metric == "accuracy":
            out[o.metric] = 0.0
        elif o.metric in bounds:
            out[o.metric] = float(bounds[o.metric])
        elif largest_costs and o.metric in largest_costs:
            out[o.metric] = float(largest_costs[o.metric])
        else:
            raise ValueError(f"no reference point for objective {o.metric!r}: set search.hypervolume_reference")
    return out


def largest_network_costs(ctx: Any) -> dict[str, float]:
    """Metrics of the space's largest network: the last (largest) choice of every option."""
    from flightco.metrics import genome_metrics
    from flightco.search import make_genome

    class Largest:
        def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
            ints = [c for c in choices if isinstance(c, int)]
            return max(ints) if ints else choices[-1]

    return genome_metrics(make_genome(Largest(), ctx), ctx.profiles)


def _loss_matrix(values: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.asarray(values, dtype=float) * signs


def hypervolume(values: Sequence[Sequence[float]], directions: Sequence[str], ref: Sequence[float]) -> float:
    """Hypervolume of points (objective values as the study stores them) against ``ref``."""
    from optuna._hypervolume import compute_hypervolume

    if not len(values):
        return 0.0
    loss = _loss_matrix(values, directions)
    r = _loss_matrix([ref], directions)[0]
    inside = loss[np.all(loss < r, axis=1)]
    return float(compute_hypervolume(inside, r)) if len(inside) else 0.0


def hypervolume_history(study: optuna.Study, ref: Mapping[str, float]) -> pd.DataFrame:
    """One row per finished trial in completion order: trial, seconds since the first trial started,
    and the hypervolume of the trained, feasible trials finished so far."""
    metrics = study.user_attrs.get("objectives", [])
    directions = [d.name.lower() for d in study.directions]
    r = [ref[m] for m in metrics]
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
              if t.datetime_complete is not None]
    trials.sort(key=lambda t: t.datetime_complete)
    if not trials:
        return pd.DataFrame(columns=["trial", "seconds", "hypervolume"])
    start = min(t.datetime_start for t in trials if t.datetime_start is not None)
    rows, points = [], []
    for t in trials:
        if t.state == TrialState.COMPLETE and "proxy" in t.user_attrs:
            points.append(list(t.values))
        rows.append({"trial": t.number, "seconds": (t.datetime_complete - start).total_seconds(),
                     "hypervolume": hypervolume(points, directions, r)})
    return pd.DataFrame(rows)


def write_history(hist: pd.DataFrame, path: Any, title: str) -> Any:
    """Write a hypervolume history as CSV, or as a step plot over search time (PNG)."""
    from pathlib import Path

    from flightco.errors import RunError

    path = Path(path)
    if path.suffix.lower() not in (".csv", ".png"):
        raise RunError(f"--hv-history: {path} must end in .csv or .png")
    if path.suffix.lower() == ".csv":
        from flightco.atomic import write_text

        write_text(path, hist.to_csv(index=False))
        return path
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flightco.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.step(hist["seconds"], hist["hypervolume"], where="post", c="tab:blue")
    ax.scatter(hist["seconds"], hist["hypervolume"], s=8, c="tab:blue")
    ax.set_xlabel("search time (s)")
    ax.set_ylabel("hypervolume")
    ax.set_title(f"{title}: hypervolume of the front over time")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
