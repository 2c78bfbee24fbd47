"""``flightco report RUN``: one folder a person can open — interactive HTML (plotly, self-contained),
the same figures as PNGs (matplotlib) and a markdown summary.

Figures: the Pareto front in 2-D (accuracy vs the first cost objective) and 3-D (accuracy x
latency x energy, memory as colour), the hypervolume of the front after each trial, a per-layer
bit-width map of the front's models, and predicted vs measured latency for every exported model
(``flightco export`` records its measurements in the run folder). Everything is read through the
run/study layer (:mod:`flightco.pareto`, :func:`flightco.export.measured_records`).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from flightco.atomic import atomic_path, write_text
from flightco.export import measured_records
from flightco.pareto import all_frame, front_frame
from flightco.space import FLOAT_BITS, Genome


def hypervolume_history(study: optuna.Study) -> pd.DataFrame:
    """Hypervolume of the feasible, trained trials' front after each trial (objectives turned
    into minimisation, normalised to [0, 1] by the observed range, reference point 1.1 in every
    objective), so runs of different scales read alike."""
    from optuna._hypervolume import compute_hypervolume

    trials = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
              if t.values is not None and "proxy" in t.user_attrs]
    if not trials:
        return pd.DataFrame(columns=["trial", "hypervolume"])
    signs = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
    vals = np.array([t.values for t in trials]) * signs
    lo, hi = vals.min(0), vals.max(0)
    norm = (vals - lo) / np.where(hi > lo, hi - lo, 1.0)
    ref = np.full(norm.shape[1], 1.1)
    rows = []
    for i, t in enumerate(trials):
        pts = norm[: i + 1]
        rows.append({"trial": t.number, "hypervolume": float(compute_hypervolume(pts, ref))})
    return pd.DataFrame(rows)


def bit_map(front: pd.DataFrame, study: optuna.Study) -> tuple[list[str], list[list[str]], np.ndarray, np.ndarray]:
    """Rows (trials), each row's layer names (architectures differ, so layer ``j`` of two rows
    need not be the same layer), weight bits and activation bits (32 = float; NaN past a
    shorter network's end)."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    rows, names, wbits, abits = [], [], [], []
    for n in front["trial"]:
        g = Genome.from_dict(trials[int(n)].user_attrs["genome"])
        ps = g.precisions()
        rows.append(f"#{int(n)}")
        names.append(_layer_names(g))
        wbits.append([p.w_bits for p in ps])
        abits.append([p.a_bits for p in ps])
    width = max((len(w) for w in wbits), default=0)
    pad = lambda m: np.array([r + [np.nan] * (width - len(r)) for r in m], float)  # noqa: E731
    return rows, names, pad(wbits), pad(abits)


def _layer_names(g: Genome) -> list[str]:
    names = ["stem"]
    for i, b in enumerate(g.blocks):
        names += ([f"b{i}.expand"] if b.expand is not None else []) + [f"b{i}.dw", f"b{i}.project"]
    return names + ["classifier"]


def predicted_vs_measured(run_dir: Path) -> pd.DataFrame:
    rows = []
    for (trial, fmt), r in measured_records(run_dir).items():
        m = (r.get("measured") or {}).get("batch1", {})
        for key, value in r.get("metrics", {}).items():
            if key.endswith(".latency_ms") and m:
                rows.append({"trial": trial, "format": fmt, "profile": key.split(".")[0], "predicted_ms": value,
                             "measured_ms": m["median_ms"]})
    return pd.DataFrame(rows, columns=["trial", "format", "profile", "predicted_ms", "measured_ms"])


def _pick(df: pd.DataFrame, *names: str) -> str | None:
    return next((n for n in names if n in df.columns and df[n].notna().any()), None)


def write_report(run_dir: Path, out: Path, study: optuna.Study) -> list[Path]:
    """Write ``index.html``, the PNGs and ``summary.md`` into ``out``; returns the files."""
    import plotly.graph_objects as go

    out.mkdir(parents=True, exist_ok=True)
    trained = all_frame(study)
    trained = trained[trained["accuracy"].notna()] if not trained.empty else trained
    front = front_frame(study)
    objectives = study.user_attrs.get("objectives", ["accuracy", "energy_mj"])
    cost = next((m for m in objectives if m != "accuracy"), "energy_mj")
    hv = hypervolume_history(study)
    rows, cols, wbits, abits = bit_map(front, study) if not front.empty else ([], [], np.zeros((0, 0)), np.zeros((0, 0)))
    pvm = predicted_vs_measured(Path(run_dir))
    lat, energy, mem = _pick(trained, "latency_ms"), _pick(trained, "energy_mj"), _pick(trained, "memory_kb")

    figs: list[tuple[str, Any]] = []
    f2 = go.Figure()
    f2.add_scatter(x=trained[cost], y=trained["accuracy"], mode="markers", name="trained trials",
                   marker={"color": "lightgray"}, text=trained["bits"])
    if not front.empty:
        fs = front.sort_values(cost)
        f2.add_scatter(x=fs[cost], y=fs["accuracy"], mode="lines+markers", name="Pareto front",
                       text=[f"#{t} {b}" for t, b in zip(fs["trial"], fs["bits"])])
    f2.update_layout(title=f"accuracy vs {cost}", xaxis={"title": cost, "type": "log"}, yaxis={"title": "accuracy (proxy, val)"})
    figs.append(("Pareto front (2-D)", f2))
    if lat and energy:
        f3 = go.Figure(go.Scatter3d(x=trained[lat], y=trained[energy], z=trained["accuracy"], mode="markers",
                                    marker={"color": trained[mem] if mem else None, "colorscale": "Viridis", "size": 5,
                                            "colorbar": {"title": "memory_kb"}},
                                    text=[f"#{t} {b}" for t, b in zip(trained["trial"], trained["bits"])]))
        f3.update_layout(title="accuracy x latency x energy (colour: memory)",
                         scene={"xaxis_title": "latency_ms", "yaxis_title": "energy_mj", "zaxis_title": "accuracy"})
        figs.append(("Pareto front (3-D)", f3))
    fh = go.Figure(go.Scatter(x=hv["trial"], y=hv["hypervolume"], mode="lines+markers"))
    fh.update_layout(title="hypervolume of the front after each trial (normalised objectives)",
                     xaxis={"title": "trial"}, yaxis={"title": "hypervolume"})
    figs.append(("Hypervolume", fh))
    if rows:
        text = [[("" if np.isnan(w) else f"{nm[j]}<br>W{'f' if w >= FLOAT_BITS else int(w)}A{'f' if a >= FLOAT_BITS else int(a)}")
                 for j, (w, a) in enumerate(zip(wr, ar))] for wr, ar, nm in zip(wbits, abits, cols)]
        fb = go.Figure(go.Heatmap(z=np.where(wbits >= FLOAT_BITS, 9, wbits), x=list(range(wbits.shape[1])), y=rows, text=text,
                                  texttemplate="%{text}", colorscale="Blues", colorbar={"title": "weight bits (9 = float)"}))
        fb.update_layout(title="per-layer precision of the front's models (input to output)", xaxis={"title": "layer (input to output)"})
        figs.append(("Bit-widths", fb))
    fp = go.Figure()
    for prof, g in pvm.groupby("profile"):
        fp.add_scatter(x=g["predicted_ms"], y=g["measured_ms"], mode="markers", name=str(prof),
                       text=[f"#{t} {f}" for t, f in zip(g["trial"], g["format"])])
    fp.update_layout(title="predicted vs measured batch-1 latency (exported models)",
                     xaxis={"title": "predicted ms (profile)", "type": "log"}, yaxis={"title": "measured ms (runtime)", "type": "log"})
    figs.append(("Predicted vs measured", fp))

    parts = [f"<h1>{html.escape(study.study_name)}</h1>",
             f"<p>{len(trained)} trained trials, {len(front)} on the front; objectives: {html.escape(', '.join(objectives))}.</p>"]
    for i, (title, fig) in enumerate(figs):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False))
    page = "<!DOCTYPE html><html><head><meta charset='utf-8'><title>flightco report</title></head><body>" + "".join(parts) + "</body></html>"
    files = [out / "index.html"]
    write_text(files[0], page)
    files += _pngs(out, trained, front, cost, lat, energy, mem, hv, rows, cols, wbits, abits, pvm)
    files.append(out / "summary.md")
    write_text(files[-1], _summary(study, trained, front, hv, pvm, cost))
    return files


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _pngs(out: Path, trained, front, cost, lat, energy, mem, hv, rows, cols, wbits, abits, pvm) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.scatter(trained[cost], trained["accuracy"], c="0.75", s=16, label="trained trials")
    if not front.empty:
        fs = front.sort_values(cost)
        ax.plot(fs[cost], fs["accuracy"], "o-", c="tab:blue", label="Pareto front")
        for t, x, y in zip(fs["trial"], fs[cost], fs["accuracy"]):
            ax.annotate(f"#{t}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log"), ax.set_xlabel(cost), ax.set_ylabel("accuracy (proxy, val)"), ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    files.append(_save(fig, out / "front_2d.png"))
    if lat and energy:
        fig = plt.figure(figsize=(6.5, 5))
        ax = fig.add_subplot(projection="3d")
        p = ax.scatter(trained[lat], trained[energy], trained["accuracy"], c=trained[mem] if mem else None, cmap="viridis")
        ax.set_xlabel("latency_ms"), ax.set_ylabel("energy_mj"), ax.set_zlabel("accuracy")
        if mem:
            fig.colorbar(p, ax=ax, shrink=0.6, label="memory_kb")
        files.append(_save(fig, out / "front_3d.png"))
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.plot(hv["trial"], hv["hypervolume"], "o-")
    ax.set_xlabel("trial"), ax.set_ylabel("hypervolume (normalised)"), ax.grid(alpha=0.3)
    files.append(_save(fig, out / "hypervolume.png"))
    if rows:
        fig, ax = plt.subplots(figsize=(max(6, 0.75 * wbits.shape[1]), 0.55 * len(rows) + 1.5))
        shown = np.where(wbits >= FLOAT_BITS, 9, wbits)
        ax.imshow(shown, cmap="Blues", vmin=0, vmax=11, aspect="auto")
        bits = lambda v: "f" if v >= FLOAT_BITS else str(int(v))  # noqa: E731
        for i in range(shown.shape[0]):
            for j in range(shown.shape[1]):
                if not np.isnan(wbits[i, j]):
                    ax.text(j, i, f"{cols[i][j]}\nW{bits(wbits[i, j])}A{bits(abits[i, j])}", ha="center", va="center", fontsize=6)
        ax.set_xticks(range(shown.shape[1])), ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xlabel("layer (input to output)")
        ax.set_title("per-layer precision of the front's models (colour: weight bits, f = float)")
        files.append(_save(fig, out / "bits.png"))
    fig, ax = plt.subplots(figsize=(5, 4))
    for prof, g in pvm.groupby("profile"):
        ax.scatter(g["predicted_ms"], g["measured_ms"], label=str(prof))
    if not pvm.empty:
        ax.set_xscale("log"), ax.set_yscale("log"), ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no exported models yet:\nflightco export RUN --all-front --out DIR", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("predicted ms (profile)"), ax.set_ylabel("measured ms (runtime, batch 1)")
    files.append(_save(fig, out / "predicted_vs_measured.png"))
    return files


def _summary(study, trained, front, hv, pvm, cost) -> str:
    lines = [f"# {study.study_name}", "",
             f"{len(trained)} trained trials; {len(front)} on the Pareto front; final hypervolume "
             f"{hv['hypervolume'].iloc[-1]:.3f} (normalised)." if len(hv) else "no trained trials yet.", "",
             "| trial | accuracy | " + cost + " | latency_ms | memory_kb | bits |", "|---|---|---|---|---|---|"]
    for _, r in front.iterrows():
        lines.append(f"| {r['trial']} | {100 * r['accuracy']:.2f}% | {r.get(cost, float('nan')):.4g} | "
                     f"{r.get('latency_ms', float('nan')):.4g} | {r.get('memory_kb', float('nan')):.4g} | {r['bits']} |")
    if not pvm.empty:
        lines += ["", "Predicted vs measured batch-1 latency of exported models:", "",
                  "| trial | format | profile | predicted ms | measured ms |", "|---|---|---|---|---|"]
        lines += [f"| {r.trial} | {r.format} | {r.profile} | {r.predicted_ms:.4g} | {r.measured_ms:.4g} |" for r in pvm.itertuples()]
    lines += ["", "Figures: `index.html` (interactive), `front_2d.png`, `front_3d.png`, `hypervolume.png`, `bits.png`, "
              "`predicted_vs_measured.png`.", ""]
    return "\n".join(lines)
