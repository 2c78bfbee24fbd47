"""How well a profile predicts measurements: the figures nn-Meter and NeuralPower report."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr


def accuracy_report(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float | None]:
    """``n``, mean absolute % error, root-mean-square % error, share within ±10% (nn-Meter's
    accuracy figure) and Spearman rank correlation (does the profile order things right?).
    Spearman is None when it is undefined (fewer than two rows, or constant values): JSON has no NaN."""
    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    rel = (p - m) / m
    rho = float(spearmanr(p, m).statistic) if len(m) > 1 and np.ptp(m) > 0 and np.ptp(p) > 0 else None
    return {
        "n": int(len(m)),
        "mape": float(np.mean(np.abs(rel)) * 100),
        "rmspe": float(np.sqrt(np.mean(rel**2)) * 100),
        "acc10": float(np.mean(np.abs(rel) <= 0.10)),
        "spearman": rho,
    }


def share_interval(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95 % by default) of a share such as ``acc10`` measured on ``n``
    items: 47 of 50 networks within ±10 % is 94 %, but only "84-98 %" can be claimed from 50."""
    if n <= 0:
        return 0.0, 1.0
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def global_scale(predicted: np.ndarray, measured: np.ndarray) -> float:
    """The one factor that best maps predictions onto measurements in relative terms (geometric
    mean of ratios): calibrates analytic profiles whose units are nominal."""
    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    ok = (p > 0) & (m > 0)
    return float(np.exp(np.mean(np.log(m[ok] / p[ok])))) if ok.any() else 1.0


def format_report(r: dict) -> str:
    """One line of a report's figures (Spearman shown as n/a when undefined)."""
    rho = "n/a" if r.get("spearman") is None else f"{r['spearman']:.3f}"
    return (f"n={r['n']}  MAPE {r['mape']:.1f}%  RMSPE {r['rmspe']:.1f}%  within ±10%: {100 * r['acc10']:.1f}%  "
            f"Spearman {rho}")


def calibrated_report(predicted: np.ndarray, measured: np.ndarray, calibrate: bool) -> dict[str, float] | None:
    """:func:`accuracy_report` of one metric, after one global scale when ``calibrate`` (kept as
    ``scale``); ``None`` when the profile does not model the metric (some prediction is not > 0).
    Shared by ``profile eval`` on layer tables and on network tables."""
    p = np.asarray(predicted, dtype=float)
    if not np.all(p > 0):
        return None
    scale = global_scale(p, measured) if calibrate else 1.0
    report = accuracy_report(p * scale, measured)
    if calibrate:
        report["scale"] = scale
    return report
