"""Across-stack study of a run (DLAS-style): do size, MACs, accuracy and latency agree across targets?

Candidates are the run's front plus a seeded sample of its other trained trials. Each is evaluated
at three precisions — the searched mixed precision, uniform W8A8 and float — by loading its trained
(proxy) weights into the model of that precision (activation quantizers recalibrated on training
images, BatchNorm left as trained) and scoring the test split; then it is costed on every target
of the stack: onnxruntime at each thread count and export format (untrained files of the same
graph: latency does not depend on weight values), any other runtime plug-in asked for (OpenVINO,
ExecuTorch, TVM untuned or tuned) at each thread count, and every hardware profile of the run (plus any
extra ones). Kendall's tau between the candidates' model size, MACs, accuracy and latency is
computed per target, and between the latency rankings of every pair of targets; candidates whose
latency rank moves between targets are listed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flightco.atomic import atomic_path, write_text
from flightco.cost_shape import kendall
from flightco.errors import RunError
from flightco.space import FLOAT_BITS, Genome
from flightco.stack_targets import BUILT_FORMAT, Knobs, OnnxRuntimeTarget, ProfileTarget, make_target

PRECISIONS = ("searched", "W8A8", "float")


def precision_variant(genome: Genome, precision: str) -> Genome:
    if precision == "searched":
        return genome
    return genome.with_uniform_bits(8 if precision == "W8A8" else FLOAT_BITS)


def candidates(study: Any, run_dir: Path, others: int, seed: int = 0) -> list[dict[str, Any]]:
    """Front members and ``others`` randomly chosen other trained trials with stored weights."""
    from optuna.trial import TrialState

    from flightco.runs import trial_dir
    from flightco.search import proxy_front

    front = {t.number for t in proxy_front(study)}
    trained = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
               if "proxy" in t.user_attrs and "genome" in t.user_attrs]

    def weights(t: Any) -> Path:
        return trial_dir(run_dir, t.user_attrs.get("weights_trial", t.number)) / "proxy.pt"

    trained = [t for t in trained if weights(t).is_file()]
    rest = [t for t in trained if t.number not in front]
    rng = np.random.default_rng(seed)
    picked = [rest[i] for i in sorted(rng.choice(len(rest), size=min(others, len(rest)), replace=False))] if rest else []
    chosen = [t for t in trained if t.number in front] + picked
    return [{"trial": t.number, "on_front": t.number in front, "genome": Genome.from_dict(t.user_attrs["genome"]),
             "weights": weights(t), "proxy_val_accuracy": t.user_attrs["proxy"].get("val_accuracy")} for t in chosen]


def variant_accuracy(genome: Genome, weights: Path, dataset: Any, precision: str, images: int,
                     calibration_batches: int = 4) -> float:
    """Test top-1 of the trained weights in the model of ``precision`` (see the module docstring)."""
    import torch
    import torch.nn as nn

    from flightco.nn.mobilenet import build_model
    from flightco.train import evaluate

    blob = torch.load(weights, map_location="cpu", weights_only=False)
    model = build_model(precision_variant(genome, precision), collect_stats_steps=calibration_batches)
    if precision == "searched":
        model.load_state_dict(blob["state_dict"])
    else:
        own = model.state_dict()
        keep = {k: v for k, v in blob["state_dict"].items()
                if k in own and own[k].shape == v.shape and "act_quant" not in k and "tensor_quant" not in k}
        model.load_state_dict(keep, strict=False)
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        x = dataset.train.x
        size = min(128, len(x))
        with torch.no_grad():  # wraps around a small training split: every batch is non-empty
            for i in range(calibration_batches + 1):
                start = (i * size) % max(1, len(x) - size + 1)
                model(x[start:start + size])
    model.eval()
    from flightco.data import Split

    test = Split(dataset.test.x[:images], dataset.test.y[:images])
    return evaluate(model, test)


def run_study(run_dir: Path, *, others: int = 4, threads: tuple[int, ...] = (1, 2), formats: tuple[str, ...] = (BUILT_FORMAT, "qcdq"),
              extra_profiles: tuple[Path, ...] = (), runtimes: tuple[str, ...] = (), images: int = 1000, seed: int = 0,
              repeats: int = 30, progress: Any = None) -> pd.DataFrame:
    """The across-stack table: one row per (candidate, precision, target). ``runtimes`` adds runtime
    plug-ins besides onnxruntime (``openvino``, ``executorch``, ``tvm``, ``tvm-tuned``), each timed
    on the deploy-form ONNX file at every thread count in ``threads``."""
    from flightco.metrics import genome_metrics
    from flightco.recipe import recipe_from_stored
    from flightco.runs import load_study, stored_recipe
    from flightco.search import load_context

    _, study = load_study(run_dir)
    recipe = recipe_from_stored(stored_recipe(study))
    ctx = load_context(recipe, run_dir)
    cands = candidates(study, run_dir, others, seed)
    if len(cands) < 2:
        raise RunError(f"{run_dir}: needs at least 2 trained trials with stored weights, found {len(cands)}")
    profiles = [ProfileTarget(p) for p in recipe.hardware_paths]
    names = {p.name for p in profiles}
    profiles += [t for t in (ProfileTarget(Path(p)) for p in extra_profiles) if t.name not in names]
    ort = OnnxRuntimeTarget(repeats=repeats)
    if "onnxruntime" in runtimes:
        raise RunError("--runtime onnxruntime: onnxruntime is always measured (set its settings with --threads/--formats)")
    others_rt = [make_target(runtime=r, threads=threads) for r in runtimes]  # refused before any work
    rt_knobs = [Knobs(threads=t) for t in threads]
    configs = [Knobs(threads=t, format=f) for f in formats for t in threads]
    rows: list[dict[str, Any]] = []
    steps = len(cands) * len(PRECISIONS)
    done = 0
    for c in cands:
        for prec in PRECISIONS:
            g = precision_variant(c["genome"], prec)
            m = genome_metrics(g, [])
            acc = variant_accuracy(c["genome"], c["weights"], ctx.dataset, prec, images)
            common = {"trial": c["trial"], "on_front": c["on_front"], "precision": prec, "bits": g.bits_summary(),
                      "accuracy": acc, "macs": m["macs"], "params": m["params"], "weight_kb": m["weight_kb"]}
            for p in profiles:
                cost = p.measure([(g, Knobs())], [True])[0]
                rows.append({**common, "target": p.name, "kind": "profile", **{k: cost[k] for k in p.metrics}})
            # qcdq goes through flightco export (Brevitas, seconds each): at the searched precision only
            knobs = [k for k in configs if k.format == BUILT_FORMAT or prec == "searched"]
            measured = ort.measure([(g, k) for k in knobs], [True] * len(knobs))
            for k, r in zip(knobs, measured):
                rows.append({**common, "target": f"onnxruntime/{k.format}/t{k.threads}", "kind": "runtime",
                             "latency_ms": r["latency_ms"], "spread": r["spread"], "memory_kb": r.get("memory_kb")})
            for rt in others_rt:
                for k, r in zip(rt_knobs, rt.measure([(g, k) for k in rt_knobs], [True] * len(rt_knobs))):
                    rows.append({**common, "target": f"{rt.name}/t{k.threads}", "kind": "runtime",
                                 "latency_ms": r["latency_ms"], "spread": r["spread"], "memory_kb": r.get("memory_kb")})
            done += 1
            if progress:
                progress(done, steps)
    return pd.DataFrame(rows)


def stack_configs(table: pd.DataFrame) -> pd.DataFrame:
    """Latency per candidate (rows) and stack configuration ``target | precision`` (columns)."""
    t = table.assign(config=table["target"] + " | " + table["precision"])
    return t.pivot_table(index="trial", columns="config", values="latency_ms", aggfunc="first")


def taus(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-target taus between size, MACs, accuracy and latency; tau of latency rankings between
    every pair of stack configurations). Configurations with fewer than 3 candidates are skipped."""
    per = []
    for (target, prec), g in table.groupby(["target", "precision"]):
        if len(g) < 3:
            continue
        row = {"target": target, "precision": prec, "candidates": len(g)}
        for a, b in (("weight_kb", "latency_ms"), ("macs", "latency_ms"), ("accuracy", "latency_ms"),
                     ("weight_kb", "accuracy"), ("macs", "accuracy"), ("weight_kb", "macs")):
            row[f"tau_{a}_{b}"] = kendall(g[a], g[b])
        per.append(row)
    lat = stack_configs(table).dropna(axis=1, thresh=3)
    cols = list(lat.columns)
    pair = pd.DataFrame(np.eye(len(cols)), index=cols, columns=cols)
    for i, a in enumerate(cols):
        for b in cols[i + 1:]:
            both = lat[[a, b]].dropna()
            pair.loc[a, b] = pair.loc[b, a] = kendall(both[a], both[b]) if len(both) >= 3 else np.nan
    return pd.DataFrame(per), pair


def rank_flips(table: pd.DataFrame, min_shift: int = 2) -> pd.DataFrame:
    """Candidates whose latency rank (1 = fastest) differs by at least ``min_shift`` places between
    two stack configurations, with where they rank best and worst."""
    ranks = stack_configs(table).rank(axis=0, method="min")
    rows = []
    for trial, r in ranks.iterrows():
        r = r.dropna()
        if len(r) and r.max() - r.min() >= min_shift:
            rows.append({"trial": trial, "best_rank": int(r.min()), "best_on": r.idxmin(),
                         "worst_rank": int(r.max()), "worst_on": r.idxmax(), "shift": int(r.max() - r.min())})
    return pd.DataFrame(rows, columns=["trial", "best_rank", "best_on", "worst_rank", "worst_on", "shift"])


def write_outputs(table: pd.DataFrame, out: Path) -> dict[str, Any]:
    """across_stack.csv (+ .parquet when pyarrow is there), taus.csv, tau_pairs.csv, rank_flips.csv,
    heatmaps; returns the headline figures."""
    out.mkdir(parents=True, exist_ok=True)

    def csv(df: pd.DataFrame, name: str, index: bool = False) -> None:
        buf = io.StringIO()
        df.to_csv(buf, index=index)
        write_text(out / name, buf.getvalue())

    csv(table, "across_stack.csv")
    try:
        with atomic_path(out / "across_stack.parquet") as tmp:
            table.to_parquet(tmp, index=False)
    except ImportError:
        pass
    per, pair = taus(table)
    csv(per, "taus.csv")
    csv(pair, "tau_pairs.csv", index=True)
    flips = rank_flips(table)
    csv(flips, "rank_flips.csv")
    _heatmaps(table, pair, out)
    off = pair.where(~np.eye(len(pair), dtype=bool)).stack()
    lo = off.idxmin() if len(off) else (None, None)
    return {"candidates": int(table["trial"].nunique()), "configs": len(pair),
            "rank_tau_min": float(off.min()) if len(off) else float("nan"), "rank_tau_min_pair": lo,
            "flips": len(flips)}


def _heatmaps(table: pd.DataFrame, pair: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, data, title, cmap, vmin, vmax in (
        ("tau_heatmap.png", pair, "Kendall tau of latency rankings between stack configurations", "RdBu", -1, 1),
        ("rank_heatmap.png", stack_configs(table).rank(axis=0, method="min"),
         "latency rank of each candidate (1 = fastest) per stack configuration", "viridis", None, None),
    ):
        fig, ax = plt.subplots(figsize=(1.2 + 0.42 * data.shape[1], 1.6 + 0.32 * data.shape[0] + 2.2), dpi=90)
        im = ax.imshow(data.to_numpy(float), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(data.shape[1]), [str(c) for c in data.columns], rotation=90, fontsize=6)
        ax.set_yticks(range(data.shape[0]), [str(i) for i in data.index], fontsize=6)
        for (i, j), v in np.ndenumerate(data.to_numpy(float)):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}" if vmin is not None else f"{v:.0f}", ha="center", va="center", fontsize=5)
        fig.colorbar(im, ax=ax, fraction=0.04)
        ax.set_title(title, fontsize=8)
        fig.subplots_adjust(bottom=0.35, left=0.3)
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
