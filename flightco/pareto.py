"""Pareto-front inspection: tables (pandas), CSV and plots.

Accuracy columns are labelled by what they are: ``accuracy`` is the proxy score on the
validation split that the search optimised; ``final_test_accuracy`` is the held-out test
score after the finalists' full training; ``reference_test_accuracy`` is that of the
finalist's uniform-precision twin. Nothing is mixed up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from flightco.front import finals_of, proxy_front

BASE_COLUMNS = ["trial", "accuracy", "final_test_accuracy", "energy_mj", "latency_ms", "memory_kb",
                "macs", "params", "weight_kb", "bits", "status"]


def _row(t: FrozenTrial, finals: dict[int, dict[str, Any]]) -> dict[str, Any]:
    metrics = t.user_attrs.get("metrics", {})
    proxy = t.user_attrs.get("proxy")
    row: dict[str, Any] = {
        "trial": t.number,
        "accuracy": proxy["val_accuracy"] if proxy else None,
        "final_test_accuracy": finals.get(t.number, {}).get("final", {}).get("test_accuracy"),
    }
    row.update(metrics)
    row["bits"] = t.user_attrs.get("bits", "")
    if proxy:
        row["accuracy_source"] = proxy.get("source", "proxy training")
    row["status"] = t.user_attrs.get("status", t.state.name.lower())
    ref = finals.get(t.number, {}).get("reference")
    if ref:
        row["reference_bits"] = ref["bits"]
        row["reference_test_accuracy"] = ref["test_accuracy"]
        row["reference_energy_mj"] = ref["metrics"].get("energy_mj")
    return row


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=BASE_COLUMNS)
    first = [c for c in BASE_COLUMNS if c in df.columns]
    rest = [c for c in df.columns if c not in first]
    return df[first + rest]


def front_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial on the (proxy) Pareto front, sorted by accuracy, best first."""
    finals = finals_of(study)
    df = _frame([_row(t, finals) for t in proxy_front(study)])
    return df.sort_values("accuracy", ascending=False, ignore_index=True) if not df.empty else df


def all_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per finished trial (complete or pruned), by trial number."""
    finals = finals_of(study)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return _frame([_row(t, finals) for t in trials])


def reference_comparison(study: optuna.Study) -> list[dict[str, Any]]:
    """For each finalist: its final accuracy and energy against its uniform-precision twin."""
    out = []
    for number, entry in sorted(finals_of(study).items()):
        final, ref = entry.get("final"), entry.get("reference")
        if not final or not ref:
            continue
        e, e_ref = final["metrics"].get("energy_mj"), ref["metrics"].get("energy_mj")
        out.append({
            "trial": number,
            "bits": final["bits"],
            "final_test_accuracy": final["test_accuracy"],
            "reference_bits": ref["bits"],
            "reference_test_accuracy": ref["test_accuracy"],
            "accuracy_delta_points": 100 * (final["test_accuracy"] - ref["test_accuracy"]),
            "energy_mj": e,
            "reference_energy_mj": e_ref,
            "energy_ratio": (e / e_ref) if e and e_ref else None,
            "latency_ratio": _ratio(final["metrics"], ref["metrics"], "latency_ms"),
            "memory_ratio": _ratio(final["metrics"], ref["metrics"], "memory_kb"),
        })
    return out


def _ratio(a: dict[str, float], b: dict[str, float], key: str) -> float | None:
    return a[key] / b[key] if a.get(key) and b.get(key) else None


INTEGER_COLUMNS = ("trial", "macs", "params")


def machine_frame(df: pd.DataFrame, digits: int = 6) -> pd.DataFrame:
    """The table for programs (CSV/JSON): integer counts as integers, floats rounded to ``digits``
    significant digits (no ``0.30000000000000004`` noise), missing values empty."""
    import math

    out = df.copy()
    for c in out.columns:
        if c in INTEGER_COLUMNS:
            out[c] = out[c].astype("Int64")
        elif pd.api.types.is_float_dtype(out[c]):
            out[c] = [None if v is None or not math.isfinite(v) else float(f"{v:.{digits}g}") for v in out[c]]
    return out


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of :func:`machine_frame` as plain JSON-ready dicts (missing values: ``None``)."""
    out = []
    for row in machine_frame(df).to_dict(orient="records"):
        out.append({k: (None if v is None or (not isinstance(v, str) and pd.isna(v))
                        else v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    return out


def plot_front(study: optuna.Study, path: Path, cost_metric: str | None = None) -> Path:
    """Two panels against one cost metric (log axis). Left, the search: every trained trial
    (grey), the proxy Pareto front as a staircase with trial numbers, infeasible (untrained)
    trials as red crosses along the bottom at their cost. Right, the finalists' final test
    accuracy (stars) with their uniform-precision twins (crosses). Proxy and final accuracies
    are different measurements (validation after a short training vs test after the full one),
    so they get separate axes; the legend sits below the panels, off the points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flightco.atomic import atomic_path

    objectives = study.user_attrs.get("objectives", [])
    cost_metric = cost_metric or next((m for m in objectives if m != "accuracy"), "energy_mj")
    minimize_cost = True
    if cost_metric in objectives:
        minimize_cost = study.directions[objectives.index(cost_metric)].name == "MINIMIZE"
    all_df = all_frame(study)
    trained = all_df[all_df["accuracy"].notna()] if not all_df.empty else all_df
    infeasible = (all_df[all_df["status"].astype(str).str.startswith("infeasible")]
                  if not all_df.empty and cost_metric in all_df.columns else all_df.iloc[0:0])
    front = front_frame(study)
    comps = reference_comparison(study)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.8), dpi=120, sharex=True)
    if not trained.empty:
        ax.scatter(trained[cost_metric], trained["accuracy"], c="0.7", s=18, label="trained trial (proxy, validation)")
    if not front.empty:
        f = front.sort_values(cost_metric, ascending=minimize_cost)
        ax.step(f[cost_metric], f["accuracy"], where="post", c="tab:blue", lw=1.2)
        ax.scatter(f[cost_metric], f["accuracy"], c="tab:blue", s=28, zorder=4, label="Pareto front (proxy, validation)")
        for _, r in f.iterrows():
            ax.annotate(f"#{int(r['trial'])}", (r[cost_metric], r["accuracy"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, color="tab:blue")
    if not infeasible.empty:
        low = trained["accuracy"].min() if not trained.empty else 0.0
        ax.scatter(infeasible[cost_metric], [low] * len(infeasible), marker="x", c="tab:red", s=22, zorder=3,
                   label="infeasible, not trained (at its cost)")
    finals = finals_of(study)
    for comp in comps:
        final = finals[comp["trial"]]
        xf, xr = final["final"]["metrics"][cost_metric], final["reference"]["metrics"][cost_metric]
        ax2.scatter(xf, comp["final_test_accuracy"], marker="*", s=140, c="tab:red", zorder=5,
                    label="finalist (final training, test)")
        ax2.scatter(xr, comp["reference_test_accuracy"], marker="x", s=60, c="black", zorder=5,
                    label=f"{comp['reference_bits']} twin (final training, test)")
        ax2.plot([xf, xr], [comp["final_test_accuracy"], comp["reference_test_accuracy"]], ":", c="0.4", lw=1)
        ax2.annotate(f"#{comp['trial']}", (xf, comp["final_test_accuracy"]), textcoords="offset points",
                     xytext=(6, -10), fontsize=8)
    if not comps:
        ax2.text(0.5, 0.5, "no finalists trained yet", ha="center", va="center", transform=ax2.transAxes, color="0.4")
    for a, ylabel, title in ((ax, "proxy accuracy (validation)", "search"),
                             (ax2, "final accuracy (test)", "finalists")):
        if a.has_data():
            a.set_xscale("log")
        a.set_xlabel(cost_metric)
        a.set_ylabel(ylabel)
        a.set_title(f"{study.study_name}: {title}", fontsize=10)
        a.grid(True, alpha=0.3)
    handles, labels = [], []
    for a in (ax, ax2):
        for h, lab in zip(*a.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(handles)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png")
    plt.close(fig)
    return path


from flightco.api import make_module_callable  # noqa: E402  (flightco.pareto(run) is the API function)

make_module_callable(__name__, "pareto")
