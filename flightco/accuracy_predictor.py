"""Predict a subnet's score on the supernet from its choices (Once-for-All's and APQ's accuracy predictor).

Scoring a subnet on the supernet costs seconds (extraction, recalibration, fine-tuning, a
validation pass); a regressor fitted on the subnets already scored answers in microseconds. The
search uses it to look at thousands of candidates per second and measure only the ones it
predicts on the front (:mod:`flightco.predictor_search`). Because a score does not depend on the
hardware, a predictor fitted on one target's search serves every other target of the same
supernet.

A subnet is described by its Optuna parameters (the space's stable dotted names, so every choice
of every block slot is one feature; a block slot the subnet does not use is 0) plus a few
aggregates that a tree needs many splits to rebuild: log MACs and parameters, and the MAC-weighted
and smallest weight and activation bit-widths. The regressor is scikit-learn's gradient boosting
behind a DictVectorizer, an ordinary sklearn Pipeline (fit/predict/clone/cross-validation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

WEIGHTED_OPS = ("conv", "dwconv", "linear")


def subnet_features(params: Mapping[str, Any], genome: Any) -> dict[str, float]:
    """The predictor's input for one subnet: numeric parameters plus size and precision aggregates."""
    from flightco.hw.workload import workload
    from flightco.space import FLOAT_BITS

    out: dict[str, float] = {}
    for name, value in params.items():
        if isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)):
            out[name] = float(value)
        elif value == "float":  # a float layer: 32-bit weights and activations
            out[name] = float(FLOAT_BITS)
        else:  # any other categorical choice: one column per value
            out[f"{name}={value}"] = 1.0
    layers = [layer for layer in workload(genome) if layer.op in WEIGHTED_OPS]
    macs = [max(layer.macs, 1) for layer in layers]
    w = [min(layer.w_bits, FLOAT_BITS) for layer in layers]
    a = [min(layer.a_bits, FLOAT_BITS) for layer in layers]
    total = float(sum(macs))
    out.update({
        "log_macs": math.log(total),
        "log_params": math.log(max(sum(layer.params for layer in layers), 1)),
        "mac_weighted_w_bits": sum(m * b for m, b in zip(macs, w)) / total,
        "mac_weighted_a_bits": sum(m * b for m, b in zip(macs, a)) / total,
        "min_w_bits": float(min(w)),
        "min_a_bits": float(min(a)),
        "layers": float(len(layers)),
    })
    return out


def make_predictor(seed: int = 0) -> Any:
    """An unfitted sklearn Pipeline: feature dicts -> predicted score."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.pipeline import make_pipeline

    return make_pipeline(DictVectorizer(sparse=False),
                         GradientBoostingRegressor(n_estimators=300, learning_rate=0.05, max_depth=3, subsample=0.8,
                                                   random_state=seed))


def cross_validated_tau(features: Sequence[Mapping[str, float]], scores: Sequence[float], seed: int = 0,
                        folds: int = 5) -> float:
    """Kendall tau between held-out predictions (k-fold) and the measured scores: how well the
    predictor ranks subnets it has not seen, reported with every fit."""
    from scipy.stats import kendalltau
    from sklearn.model_selection import KFold, cross_val_predict

    folds = min(folds, len(scores))
    predicted = cross_val_predict(make_predictor(seed), list(features), list(scores),
                                  cv=KFold(folds, shuffle=True, random_state=seed))
    return float(kendalltau(predicted, scores).statistic)
