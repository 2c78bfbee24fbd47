"""How well does the supernet's accuracy predictor rank subnets it has not seen?

Reads the archives of scored subnets that supernet searches leave beside their checkpoints
(``<run>/supernet/<key>.scores.jsonl``; ``benchmarks/search_speed.py`` prints where its runs
are). Every score in them was measured (extraction, recalibration, fine-tuning, validation), so
they are the reference the predictor is judged against.

1. Learning curve on ``--fit``: the predictor is fitted on the first n subnets in the order the
   search scored them and ranks the rest (later NSGA-II generations, the subnets it is used to
   choose among), as in a search. Beside it, two baselines: a ridge regression on the same
   features, and "bigger is better" (log MACs alone), the ranking any size proxy gives.
2. With ``--test``: fitted on all of ``--fit`` (e.g. the first hardware target's search) and
   scored on ``--test`` (a second target's search of the same supernet, another region of the
   space): Kendall tau, mean absolute error and bias.

The last line is ``predictor_kendall_tau=<tau>``: on ``--test`` when given, else at the largest
n of the learning curve.

    python benchmarks/accuracy_predictor.py --fit A.scores.jsonl [--test B.scores.jsonl]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _records(path: Path) -> list:
    from flightco.subnet_archive import read

    out = [r for r in read(path) if r.accuracy is not None]
    if not out:
        raise SystemExit(f"{path}: no scored subnets (records with a search score) in it")
    settings = {r.settings for r in out}
    if len(settings) > 1:
        raise SystemExit(f"{path}: subnets scored with {len(settings)} different settings; keep one archive per setting")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", type=Path, required=True, help="archive to learn from (learning curve on it)")
    ap.add_argument("--test", type=Path, help="archive of another search of the same supernet to score on")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from scipy.stats import kendalltau
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from flightco.accuracy_predictor import make_predictor, subnet_features
    from flightco.space import Genome

    def data(path: Path) -> tuple[list[dict], np.ndarray]:
        records = _records(path)
        return ([subnet_features(r.params, Genome.from_dict(r.genome)) for r in records],
                np.array([r.accuracy for r in records]))

    models = {
        "predictor (gradient boosting)": lambda: make_predictor(args.seed),
        "ridge, same features": lambda: make_pipeline(DictVectorizer(sparse=False), StandardScaler(),
                                                      RidgeCV(alphas=np.logspace(-2, 3, 12))),
    }

    def taus(x_fit, y_fit, x_test, y_test) -> dict[str, float]:
        out = {name: float(kendalltau(make().fit(x_fit, y_fit).predict(x_test), y_test).statistic)
               for name, make in models.items()}
        out["bigger is better (log MACs)"] = float(kendalltau([f["log_macs"] for f in x_test], y_test).statistic)
        return out

    x, y = data(args.fit)
    print(f"{args.fit}: {len(y)} scored subnets, scores {y.min():.3f}-{y.max():.3f}")
    print("learning curve: fitted on the first n, Kendall tau on the rest")
    headline = float("nan")
    for n in (8, 16, 24, 32, 48, 64, 96, 128):
        if len(y) - n < 10:
            break
        row = taus(x[:n], y[:n], x[n:], y[n:])
        headline = row["predictor (gradient boosting)"]
        print(f"  n={n:3d} (tested on {len(y) - n:3d}): " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    if args.test is not None:
        xt, yt = data(args.test)
        predicted = make_predictor(args.seed).fit(x, y).predict(xt)
        row = taus(x, y, xt, yt)
        headline = row["predictor (gradient boosting)"]
        print(f"{args.test}: {len(yt)} scored subnets, scores {yt.min():.3f}-{yt.max():.3f}")
        print("fitted on all of --fit, scored on --test: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items())
              + f"; predictor MAE {np.abs(predicted - yt).mean():.3f}, bias {np.mean(predicted - yt):+.3f}")
    print(f"predictor_kendall_tau={headline:.3f}")


if __name__ == "__main__":
    main()
