"""The outputs of a characterization, derived from its points table alone: scaling curves and
their slopes, detected cliffs and plateaus, ``findings.md`` with the measured ratios behind each
finding, ``space_hints.yaml`` and PNG plots."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flightco.atomic import atomic_path, write_text
from flightco.cost_shape import (
    NoiseRule,
    detect,
    dominated_choices,
    inversions,
    kendall,
    scaling,
    sweeps,
    target_spread,
    work_metric,
)
from flightco.space_hints import hints_yaml


def _csv(df: pd.DataFrame, path: Path) -> Path:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    write_text(path, buf.getvalue())
    return path


def _pct(r: float) -> str:
    return f"{r:.2f}x"


def knob_findings(table: pd.DataFrame, metric: str) -> list[str]:
    """Ratios of each runtime knob's settings to the default, per base network."""
    out = []
    kn = table[table["dimension"].str.startswith("runtime.")]
    for dim, g in kn.groupby("dimension"):
        parts = []
        for base, gb in g.groupby("base"):
            ref = gb[metric].min()
            parts.append(f"{base}: " + ", ".join(f"{r['value']} {r[metric] / ref:.2f}x"
                                                  for _, r in gb.sort_values(metric).iterrows()))
        out.append(f"**{dim}** ({metric} relative to the fastest setting): " + "; ".join(parts))
    return out


def write_outputs(table: pd.DataFrame, out: Path, *, target: Any, space_name: str, rule: NoiseRule = NoiseRule(),
                  plots: bool = True) -> list[Path]:
    """Write scaling.csv, events.csv, findings.md, space_hints.yaml and plots/ from ``table``."""
    metrics = tuple(m for m in ("latency_ms", "energy_mj", "memory_kb") if m in table and table[m].notna().any())
    files = []
    sc = scaling(table, metrics)
    files.append(_csv(sc, out / "scaling.csv"))
    events = pd.concat([detect(table, m, rule) for m in metrics], ignore_index=True)
    files.append(_csv(events, out / "events.csv"))
    hint_metrics = tuple(m for m in metrics if m != "memory_kb" or target.kind == "profile")
    hints = dominated_choices(table, hint_metrics, rule)
    hints_path = out / "space_hints.yaml"
    write_text(hints_path, hints_yaml(space_name, target.name, hints))
    files.append(hints_path)
    med = target_spread(table)
    lines = [f"# Characterization of space `{space_name}` on `{target.name}`", "",
             f"Target: {target.describe()}.", "",
             f"{len(table)} points measured ({(table['kind'] == 'sweep').sum()} sweep, "
             f"{(table['kind'] == 'random').sum()} random). Run-to-run spread (gap between two interleaved "
             f"passes): median {100 * med:.1f} %, p90 {100 * _q(table, 0.9):.1f} %. Noise rule: a ratio is "
             f"a finding only beyond max({100 * rule.floor:.0f} %, {rule.k:g} x spread).", ""]
    lines.append("## Findings")
    n = 0
    rnd = table[table["kind"] == "random"]
    for m in metrics:
        if len(rnd) >= 10 and rnd[m].notna().sum() >= 10:
            r = rnd.dropna(subset=[m])
            tm, tb, tp = kendall(r["macs"], r[m]), kendall(r["bytes"], r[m]), kendall(r["params"], r[m])
            inv, tot = inversions(r, m, "macs", rule, med)
            n += 1
            lines.append(f"{n}. **{m} vs MACs over {len(r)} random networks**: Kendall tau {tm:.2f} with MACs, "
                         f"{tb:.2f} with bytes, {tp:.2f} with parameters; of {tot} pairs whose MACs differ by "
                         f">= 1.2x, {inv} ({100 * inv / max(tot, 1):.1f} %) have the smaller network measurably "
                         f"costlier.")
    noisy = sc[sc["median_spread"].fillna(0) > rule.max_hint_threshold] if len(sc) else sc
    for m in metrics:
        s = sc[(sc["metric"] == m) & (sc["median_spread"].fillna(0) <= rule.max_hint_threshold)] if len(sc) else sc
        if not len(s):
            continue
        agg = s.groupby("dimension").agg(slope=("slope_vs_work", "median"), cost=("cost_ratio_max_min", "median"),
                                         work=("work_ratio_max_min", "median")).reset_index()
        # flat = a low fitted slope AND a cost range that stays below the square root of the work
        # range: a non-monotonic sweep can fit a low slope while its cost still spans as much as work
        flat = agg[(agg["slope"] < 0.5) & (agg["cost"] <= agg["work"] ** 0.5)].sort_values("slope")
        steep = agg[agg["slope"] > 1.2].sort_values("slope", ascending=False)
        for _, r in flat.iterrows():
            n += 1
            lines.append(f"{n}. **{r['dimension']}: {m} nearly flat in {work_metric(r['dimension'])}** — "
                         f"{_pct(r['work'])} the work for {_pct(r['cost'])} the cost (median over bases; "
                         f"log-log slope {r['slope']:.2f}).")
        for _, r in steep.iterrows():
            n += 1
            lines.append(f"{n}. **{r['dimension']}: {m} grows faster than {work_metric(r['dimension'])}** — "
                         f"{_pct(r['work'])} the work for {_pct(r['cost'])} the cost (slope {r['slope']:.2f}).")
    if len(events):
        grouped = events.groupby(["event", "dimension", "metric", "from", "to"], sort=False).agg(
            bases=("base", lambda b: ", ".join(sorted(b))), work=("work_ratio", "median"),
            cost=("cost_ratio", "median"), threshold=("threshold", "max")).reset_index()
        for _, e in grouped.iterrows():
            n += 1
            what = ("more work yet cheaper (non-monotonic)" if e["event"] == "cliff"
                    else "more work at the same cost (plateau)")
            lines.append(f"{n}. **{e['event']}: {e['dimension']} {e['from']} -> {e['to']}** ({e['metric']}, bases "
                         f"{e['bases']}): {what}: work {_pct(e['work'])}, cost {_pct(e['cost'])} (medians; "
                         f"threshold up to {100 * e['threshold']:.0f} %).")
    if target.kind == "runtime":
        for text in knob_findings(table, "latency_ms"):
            n += 1
            lines.append(f"{n}. {text}")
    if n == 0:
        lines.append("No finding passed the noise rule.")
    if len(noisy):
        lines += ["", f"Left out as too noisy to read a slope from (median spread above "
                  f"{100 * rule.max_hint_threshold:.0f} %): " + ", ".join(
                      sorted({f"{r['dimension']} ({r['base']})" for _, r in noisy.iterrows()}))]
    lines += ["", "## Space hints (`space_hints.yaml`)", ""]
    lines += [f"- remove {h['field']} = {h['value']}: dominated by {h['dominated_by']}; {h['evidence']}"
              for h in hints] or ["- none: no choice is dominated on this target"]
    lines += ["", "Files: `points.csv` (every measured point), `scaling.csv` (per-dimension ranges and log-log "
              "slopes vs MACs/bit-operations and vs bytes), `events.csv` (cliffs and plateaus), `plots/*.png`."]
    write_text(out / "findings.md", "\n".join(lines) + "\n")
    files.append(out / "findings.md")
    if plots:
        files += write_plots(table, out / "plots", metrics)
    return files


def _q(table: pd.DataFrame, q: float) -> float:
    s = pd.to_numeric(table.get("spread", pd.Series(dtype=float)), errors="coerce").dropna()
    return float(s.quantile(q)) if len(s) else 0.0


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_plots(table: pd.DataFrame, folder: Path, metrics: tuple[str, ...]) -> list[Path]:
    """Per metric: scaling curves of every dimension against MACs and bytes; random networks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    sw = sweeps(table)
    dims = sorted({d for _, d in sw})
    bases = sorted({b for b, _ in sw})
    for m in metrics:
        for against in ("work", "bytes"):
            # one panel per base network, every dimension a line of cost/cost_min against
            # work/work_min (log-log): a line along the diagonal scales with the work, a flat one does not
            fig, axes = plt.subplots(1, max(1, len(bases)), figsize=(4.6 * max(1, len(bases)), 4.2), dpi=80,
                                     squeeze=False)
            for ax, base in zip(axes[0], bases):
                top = 1.0
                for dim in dims:
                    g = sw.get((base, dim))
                    if g is None or not g[m].notna().any():
                        continue
                    x_col = work_metric(dim) if against == "work" else "bytes"
                    x = g[x_col] / g[x_col].min()
                    y = g[m] / g[m].min()
                    top = max(top, float(x.max()))
                    ax.plot(x, y, marker="o", ms=2.5, lw=1, label=dim)
                ax.plot([1, top], [1, top], "k:", lw=0.8)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_title(f"{base} base", fontsize=9)
                ax.set_xlabel(("MACs (bit-ops for bit-widths)" if against == "work" else "bytes") + " / smallest",
                              fontsize=8)
                ax.set_ylabel(f"{m} / smallest", fontsize=8)
                ax.tick_params(labelsize=7)
            axes[0][-1].legend(fontsize=5.5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            fig.suptitle(f"{m} along each dimension vs {'work' if against == 'work' else 'bytes'} (dotted: proportional)",
                         fontsize=10)
            fig.subplots_adjust(right=0.82, wspace=0.3)
            files.append(_save(fig, folder / f"{m}_vs_{against}.png"))
        rnd = table[table["kind"] == "random"].dropna(subset=[m])
        if len(rnd):
            fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), dpi=90)
            for ax, x in zip(axes, ("macs", "bytes")):
                ax.scatter(rnd[x], rnd[m], s=4, alpha=0.5)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xlabel(x)
                ax.set_ylabel(m)
            fig.suptitle(f"{len(rnd)} random networks: {m}")
            files.append(_save(fig, folder / f"random_{m}.png"))
    return files
