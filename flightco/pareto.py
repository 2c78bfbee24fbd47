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

from flightco.search import finals_of, proxy_front

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


def plot_front(study: optuna.Study, path: Path, cost_metric: str | None = None) -> Path:
    """Scatter every trained trial (grey), the proxy front (blue) and finalists' final test
    accuracy (stars) with their uniform-precision twins (crosses) against one cost metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = study.user_attrs.get("objectives", [])
    cost_metric = cost_metric or next((m for m in objectives if m != "accuracy"), "energy_mj")
    all_df = all_frame(study)
    all_df = all_df[all_df["accuracy"].notna()] if not all_df.empty else all_df
    front = front_frame(study)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    if not all_df.empty:
        ax.scatter(all_df[cost_metric], all_df["accuracy"], c="0.7", s=18, label="trials (proxy, val)")
    if not front.empty:
        f = front.sort_values(cost_metric)
        ax.plot(f[cost_metric], f["accuracy"], "o-", c="tab:blue", ms=5, label="Pareto front (proxy, val)")
    for comp in reference_comparison(study):
        key = cost_metric
        final = finals_of(study)[comp["trial"]]
        ax.scatter(final["final"]["metrics"][key], comp["final_test_accuracy"], marker="*", s=140, c="tab:red",
                   zorder=5, label="finalist (final, test)")
        ax.scatter(final["reference"]["metrics"][key], comp["reference_test_accuracy"], marker="x", s=60,
                   c="black", zorder=5, label=f"{comp['reference_bits']} twin (final, test)")
        ax.plot([final["final"]["metrics"][key], final["reference"]["metrics"][key]],
                [comp["final_test_accuracy"], comp["reference_test_accuracy"]], ":", c="0.4", lw=1)
        ax.annotate(f"#{comp['trial']}", (final["final"]["metrics"][key], comp["final_test_accuracy"]),
                    textcoords="offset points", xytext=(6, -10), fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel(cost_metric)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{study.study_name}: accuracy vs {cost_metric}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


from flightco.api import make_module_callable  # noqa: E402  (flightco.pareto(run) is the API function)

make_module_callable(__name__, "pareto")
