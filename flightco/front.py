"""A stored study's Pareto front and final results, as the run layer reads them.

`pareto`, `show`, `export` and the report read fronts and finalists here, so they never import
the search loop (`search.py` and its training code) just to look at finished results.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial

FINAL_PREFIX = "final:"  # study user attribute ``final:<trial>`` = that trial's final-training record


def proxy_front(study: optuna.Study) -> list[FrozenTrial]:
    """Optuna's Pareto front (feasible trials only), restricted to trained trials."""
    return [t for t in study.best_trials if "proxy" in t.user_attrs]


def final_key(number: int) -> str:
    return f"{FINAL_PREFIX}{number}"


def finals_of(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Trial number -> its final-training record (test accuracy, weights, epochs), every session's."""
    return {int(k[len(FINAL_PREFIX):]): v for k, v in study.user_attrs.items() if k.startswith(FINAL_PREFIX)}


def mean_terms(histograms: dict[str, list[int]] | None) -> dict[str, float]:
    """Mean power-of-two terms per weight of each FLightNN kernel, from its filter histogram
    (empty without FLightNN kernels: every layer keeps its declared precision)."""
    histograms = histograms or {}
    return {name: sum((i + 1) * n for i, n in enumerate(c)) / max(1, sum(c)) for name, c in histograms.items()}
