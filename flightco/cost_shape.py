"""Where cost is not what MACs say: cliffs, plateaus, scaling, and the space hints they imply.

All of it is derived from a characterization table (:mod:`flightco.characterize`), one target
at a time, so it can be re-derived from a saved table without measuring again.

The noise rule. Two costs differ only if their ratio departs from 1 by more than
``max(floor, k * spread)``, where ``spread`` is the larger of the two points' measured run-to-run
spreads (the gap between two interleaved passes) and, for runtimes, never below the target's
median spread: a gap the measurement itself produces cannot be a finding. Profiles are
deterministic (spread 0), so only the floor applies.

* a **cliff** (non-monotonic): along one dimension around one base, a choice with *less* work
  (MACs; bit-operations for bit-width dimensions) costs more than one with more work;
* a **plateau** (flat in work): work grows by at least ``min_work_step`` while the cost does not
  change (3-bit costing what 4-bit costs; a channel count off the vector width costing what the
  next aligned one costs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

BITS_PREFIX = "precision."
CAPACITY_DIMS = ("channels", "depth", "expansion", "kernel", "w_bits", "a_bits", "first_last_bits")
"""Dimensions along which a larger choice never has less capacity: a larger choice that costs no
more than a smaller one dominates it (same or lower cost, at least the accuracy)."""


@dataclass(frozen=True)
class NoiseRule:
    """``k`` x spread (never below ``floor``) is the smallest cost change taken as real. A plateau
    also needs the threshold below half the work change (else flat and proportional cannot be told
    apart), and a hint needs it below ``max_hint_threshold`` (noisy evidence removes nothing)."""

    k: float = 3.0
    floor: float = 0.03
    min_work_step: float = 0.10
    max_hint_threshold: float = 0.10

    def threshold(self, spread_a: float, spread_b: float, target_spread: float = 0.0) -> float:
        s = max(_num(spread_a), _num(spread_b), _num(target_spread))
        return max(self.floor, self.k * s)


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return f if math.isfinite(f) else 0.0


def work_metric(dimension: str) -> str:
    return "bops" if dimension.startswith(BITS_PREFIX) else "macs"


def _value_key(v: Any) -> float:
    return 32.0 if str(v) == "float" else float(v)


def sweeps(table: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """(base, dimension) -> its sweep points sorted by value (knob sweeps excluded)."""
    out = {}
    sw = table[(table["kind"] == "sweep") & ~table["dimension"].isin(["base"])
               & ~table["dimension"].str.startswith("runtime.")]
    for (base, dim), g in sw.groupby(["base", "dimension"], sort=True):
        g = g.assign(_v=g["value"].map(_value_key)).sort_values("_v")
        if len(g) >= 2:
            out[(base, dim)] = g
    return out


def target_spread(table: pd.DataFrame) -> float:
    s = pd.to_numeric(table.get("spread", pd.Series(dtype=float)), errors="coerce").dropna()
    return float(s.median()) if len(s) else 0.0


def detect(table: pd.DataFrame, metric: str = "latency_ms", rule: NoiseRule = NoiseRule()) -> pd.DataFrame:
    """Cliffs and plateaus of ``metric`` along every sweep (see the module docstring)."""
    rows = []
    med = target_spread(table)
    for (base, dim), g in sweeps(table).items():
        if metric not in g or g[metric].isna().all():
            continue
        wm = work_metric(dim)
        recs = g.to_dict("records")
        for i, a in enumerate(recs):
            for j in range(i + 1, len(recs)):
                b = recs[j]
                ca, cb = _num(a[metric]), _num(b[metric])
                wa, wb = _num(a[wm]), _num(b[wm])
                if ca <= 0 or cb <= 0 or wa <= 0 or wb <= 0:
                    continue
                t = rule.threshold(a.get("spread"), b.get("spread"), med)
                base_row = {"base": base, "dimension": dim, "metric": metric, "work": wm, "from": a["value"],
                            "to": b["value"], "work_ratio": wb / wa, "cost_ratio": cb / ca, "threshold": t}
                if wb > wa * 1.01 and cb < ca * (1 - t):
                    rows.append({**base_row, "event": "cliff"})
                elif (j == i + 1 and wb >= wa * (1 + rule.min_work_step) and abs(cb / ca - 1) <= t
                      and t < (wb / wa - 1) / 2):
                    rows.append({**base_row, "event": "plateau"})
    cols = ["event", "base", "dimension", "metric", "work", "from", "to", "work_ratio", "cost_ratio", "threshold"]
    return pd.DataFrame(rows, columns=cols)


def elasticity(g: pd.DataFrame, metric: str, work: str) -> float:
    """Slope of log(cost) against log(work) along one sweep: 1 = cost follows work, 0 = flat."""
    x = np.log(pd.to_numeric(g[work], errors="coerce").to_numpy(float))
    y = np.log(pd.to_numeric(g[metric], errors="coerce").to_numpy(float))
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) < 1e-9:
        return float("nan")
    return float(np.polyfit(x[ok], y[ok], 1)[0])


def scaling(table: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Per (dimension, base, metric): the cost range, the work range and their log-log slope
    against MACs (bit-operations for bit-widths) and against bytes."""
    rows = []
    for (base, dim), g in sweeps(table).items():
        for m in metrics:
            if m not in g or g[m].isna().all():
                continue
            c = pd.to_numeric(g[m], errors="coerce")
            rows.append({"dimension": dim, "base": base, "metric": m, "points": len(g),
                         "median_spread": float(pd.to_numeric(g.get("spread"), errors="coerce").median())
                         if "spread" in g else 0.0,
                         "cost_ratio_max_min": float(c.max() / c.min()) if c.min() > 0 else float("nan"),
                         "work_ratio_max_min": float(g[work_metric(dim)].max() / g[work_metric(dim)].min()),
                         "slope_vs_work": elasticity(g, m, work_metric(dim)),
                         "slope_vs_bytes": elasticity(g, m, "bytes")})
    return pd.DataFrame(rows)


def kendall(a: Any, b: Any) -> float:
    """Kendall's tau-b (ties counted as scipy does), in numpy: importing scipy.stats takes longer
    than ranking a thousand networks."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2:
        return float("nan")
    iu = np.triu_indices(len(x), 1)
    dx = np.sign(x[:, None] - x[None, :])[iu]
    dy = np.sign(y[:, None] - y[None, :])[iu]
    den = np.sqrt(float(np.count_nonzero(dx)) * float(np.count_nonzero(dy)))
    return float((dx * dy).sum() / den) if den else float("nan")


def inversions(random: pd.DataFrame, metric: str, work: str, rule: NoiseRule, target_spread_: float,
               min_ratio: float = 1.2) -> tuple[int, int]:
    """Among random pairs whose ``work`` differs by at least ``min_ratio``, how many have the
    *smaller* network measurably slower (beyond the noise rule): (inverted, pairs compared)."""
    d = random[[metric, work, "spread"]].apply(pd.to_numeric, errors="coerce").dropna(subset=[metric, work])
    c, w = d[metric].to_numpy(float), d[work].to_numpy(float)
    s = d["spread"].fillna(0).to_numpy(float)
    inv = tot = 0
    for i in range(len(d)):
        big = w > w[i] * min_ratio
        if not big.any():
            continue
        t = np.maximum(rule.floor, rule.k * np.maximum(np.maximum(s[i], s[big]), target_spread_))
        tot += int(big.sum())
        inv += int((c[big] < c[i] * (1 - t)).sum())
    return inv, tot


# ---- space hints --------------------------------------------------------------------------------

def dominated_choices(table: pd.DataFrame, metrics: tuple[str, ...], rule: NoiseRule = NoiseRule()
                      ) -> list[dict[str, Any]]:
    """Choices of the space that a larger choice of the same dimension dominates on this target:
    on every base network swept, the larger choice costs no more (within the noise rule) on every
    metric. Only the space's own choices (not ``~fine`` visits) and capacity dimensions."""
    med = target_spread(table)
    by_dim: dict[str, dict[str, pd.DataFrame]] = {}
    for (base, dim), g in sweeps(table).items():
        if "~" in dim or dim.split(".")[-1] not in CAPACITY_DIMS:
            continue
        by_dim.setdefault(dim, {})[base] = g
    hints = []
    for dim, per_base in by_dim.items():
        values = sorted({v for g in per_base.values() for v in g["value"]}, key=_value_key)
        for x in values:
            for y in reversed([v for v in values if _value_key(v) > _value_key(x)]):
                evidence, ok = [], True
                for base, g in per_base.items():
                    rx, ry = g[g["value"] == x], g[g["value"] == y]
                    if not len(rx) or not len(ry):
                        ok = False
                        break
                    rx, ry = rx.iloc[0], ry.iloc[0]
                    t = rule.threshold(rx.get("spread"), ry.get("spread"), med)
                    if t > rule.max_hint_threshold:
                        ok = False
                        break
                    for m in metrics:
                        cx, cy = _num(rx.get(m)), _num(ry.get(m))
                        if cx <= 0 or cy <= 0:
                            continue
                        if cy > cx * (1 + t):
                            ok = False
                            break
                        evidence.append((m, cy / cx, base))
                    if not ok:
                        break
                if ok and evidence:
                    worst = {m: max(r for mm, r, _ in evidence if mm == m) for m, _, _ in evidence}
                    bases = sorted({b for _, _, b in evidence})
                    text = ", ".join(f"{m} at most {r:.3f}x" for m, r in worst.items())
                    hints.append({"field": dim, "value": x, "dominated_by": y,
                                  "evidence": f"{y} costs {text} what {x} costs on bases {', '.join(bases)} "
                                              f"(noise threshold {100 * rule.threshold(0, 0, med):.0f} %)"})
                    break
    return hints
