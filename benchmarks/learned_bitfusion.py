"""Benchmark: learned profiles fitted on 10% of a BitFusion-like per-layer table, on unseen rows
and on unseen *shapes*, with and without the analytic BitFusion model as features.

The table: conv/dwconv shapes of MobileNet-like networks (MobileNetV2 blocks at several widths
and resolutions, plus layers sampled from search_spaces/mobilenet.yaml) x W/A in {4,6,8}^2,
priced by the re-derived simulator model (hw_profiles/bitfusion.yaml) and then distorted the
way a different simulator would differ: a smooth shape-dependent bias per op (up to ±25%) and
3% log-normal noise per row. The learned profile never sees the distortion's form.

    python benchmarks/learned_bitfusion.py [--shapes 400] [--seed 0] [--splits 5]

Headline (last line): share of held-out-shape rows within ±10% with the analytic base, mean over
the splits.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def mobilenet_shapes(width: float, res: int) -> list[tuple]:
    c = max(8, int(32 * width))
    shapes = [("conv", 3, c, res, 3, 2, 1)]
    h = (res + 1) // 2
    for t, co, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                        (6, 320, 1, 1)]:
        co = max(8, int(co * width))
        for i in range(n):
            st, hid = (s if i == 0 else 1), c * t
            if t != 1:
                shapes.append(("conv", c, hid, h, 1, 1, 1))
            shapes.append(("dwconv", hid, hid, h, 3, st, hid))
            h = (h + 2 - 3) // st + 1
            shapes.append(("conv", hid, co, h, 1, 1, 1))
            c = co
    return shapes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--splits", type=int, default=5)
    args = ap.parse_args()

    import yaml

    from flightco.hw.accuracy import accuracy_report
    from flightco.hw.learned import LearnedProfile, TableProfileSpec, profile_yaml
    from flightco.hw.profile import load_profile
    from flightco.hw.table import MeasuredLayer
    from flightco.hw.workload import LayerWorkload
    from flightco.measure import sample_layers
    from flightco.space import SearchSpace

    rng = np.random.default_rng(args.seed)
    bf = load_profile(ROOT / "hw_profiles" / "bitfusion.yaml")
    base_data = yaml.safe_load((ROOT / "hw_profiles" / "bitfusion.yaml").read_text())
    shapes = set()
    for width in (0.35, 0.5, 0.75, 1.0, 1.4):
        for res in (96, 128, 160, 224):
            shapes.update(mobilenet_shapes(width, res))
    space = SearchSpace.load(ROOT / "search_spaces" / "mobilenet.yaml")
    for lw in sample_layers(space, 200, args.seed):
        shapes.add((lw.op, lw.cin, lw.cout, lw.h, lw.k, lw.stride, lw.groups))
    shapes = sorted(shapes)
    idx = rng.permutation(len(shapes))[: args.shapes]
    shapes = [shapes[i] for i in idx]

    t0 = time.perf_counter()
    rows, shape_of = [], []
    for si, (op, cin, cout, h, k, s, g) in enumerate(shapes):
        for w in (4, 6, 8):
            for a in (4, 6, 8):
                lw = LayerWorkload("r", op, cin, cout, h, h, k, s, g, w, a, a)
                c = bf.layer_cost(lw)
                bias = 0.25 * math.tanh(0.5 * (math.log(lw.macs) - 14)) * (1 if op == "dwconv" else -1)
                noise = rng.normal(0, 0.03, 2)
                rows.append(MeasuredLayer(lw, {"latency_ms": c.latency_ms * math.exp(bias + noise[0]),
                                               "energy_mj": c.energy_mj * math.exp(0.5 * bias + noise[1])}))
                shape_of.append(si)
    print(f"table: {len(shapes)} shapes x 9 bit pairs = {len(rows)} rows, priced in {time.perf_counter() - t0:.0f} s")
    shape_of = np.array(shape_of)

    def fit(train, base):
        data = profile_yaml("bf-learned", "learned", train, {"name": "bitfusion-model"}, [2, 4, 8, 16], 16, 1.0,
                            base=base_data if base else None)
        return LearnedProfile(TableProfileSpec.model_validate(data), "benchmark")

    headline = []
    for split in ("rows", "shapes"):
        for base in (False, True):
            per_metric: dict[str, list[dict]] = {"latency_ms": [], "energy_mj": []}
            for k in range(args.splits):  # several random splits: one split alone moves by +-2 points
                split_rng = np.random.default_rng(1000 * args.seed + k)
                if split == "rows":
                    train_i = split_rng.permutation(len(rows))[: len(rows) // 10]
                else:  # every bit-width of a held-out shape is held out together
                    held = split_rng.permutation(len(shapes))[: max(2, len(shapes) // 10)]
                    train_i = np.flatnonzero(np.isin(shape_of, held))
                test_i = np.setdiff1d(np.arange(len(rows)), train_i)
                prof = fit([rows[i] for i in train_i], base)
                costs = prof.independent_layer_costs([rows[i].layer for i in test_i])
                for metric in per_metric:
                    pred = np.array([getattr(c, metric) for c in costs])
                    true = np.array([rows[i].values[metric] for i in test_i])
                    per_metric[metric].append(accuracy_report(pred, true))
            out = []
            for metric, reports in per_metric.items():
                acc = [100 * r["acc10"] for r in reports]
                mape = [r["mape"] for r in reports]
                out.append(f"{metric} within ±10% {np.mean(acc):.1f}% [{min(acc):.1f}-{max(acc):.1f}], "
                           f"MAPE {np.mean(mape):.1f}%")
                if split == "shapes" and base and metric == "latency_ms":
                    headline = [r["acc10"] for r in reports]
            label = "with analytic base" if base else "sizes/bits only  "
            print(f"fit on {len(train_i)} rows (10% of {split}), eval on {len(test_i)}, mean [min-max] of "
                  f"{args.splits} splits: {label}: " + "; ".join(out))
    print(f"learned_bitfusion_unseen_shapes_acc10={np.mean(headline):.3f}")


if __name__ == "__main__":
    main()
