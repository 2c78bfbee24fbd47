"""Benchmark: a learned profile fitted on 10% of a measurement table, on unseen rows and on
unseen *shapes* (every bit-width of a held-out shape is held out together), over a few seeds.

    python benchmarks/learned_splits.py TABLE.csv [--base hw_profiles/bitfusion.yaml] [--seeds 3]

TABLE is a `flightco profile measure` CSV (or any table with the same columns). Headline (last
line): mean share of unseen-shape rows within ±10% of their measured latency.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table")
    ap.add_argument("--base", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--fraction", type=float, default=0.1)
    args = ap.parse_args()

    import yaml

    from flightco.hw.accuracy import accuracy_report, format_report
    from flightco.hw.learned import LearnedProfile, TableProfileSpec, profile_yaml
    from flightco.hw.table import read_table

    rows = read_table(args.table)
    base = yaml.safe_load(Path(args.base).read_text()) if args.base else None
    bits = base["supported_bits"] if base else [8]
    shape = [r.layer[1:9] for r in rows]  # op, cin, cout, h, w, k, stride, groups
    shapes = sorted(set(shape))
    print(f"{args.table}: {len(rows)} rows, {len(shapes)} distinct shapes; base: {args.base or 'none'}")
    unseen = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        for split in ("rows", "shapes"):
            if split == "rows":
                train = list(rng.permutation(len(rows))[: max(6, int(args.fraction * len(rows)))])
                for op in {r.layer.op for r in rows} - {rows[i].layer.op for i in train}:
                    train.append(next(i for i, r in enumerate(rows) if r.layer.op == op))
                train = np.array(train)
            else:
                held = {shapes[i] for i in rng.permutation(len(shapes))[: max(3, int(args.fraction * len(shapes)))]}
                for op in {s[0] for s in shapes} - {s[0] for s in held}:  # every op needs a model
                    held.add(next(s for s in shapes if s[0] == op))
                train = np.array([i for i, s in enumerate(shape) if s in held])
            test = np.setdiff1d(np.arange(len(rows)), train)
            data = profile_yaml("split", "learned", [rows[i] for i in train], {"name": "table"}, bits, 32, 1.0, base=base)
            prof = LearnedProfile(TableProfileSpec.model_validate(data), "benchmark")
            pred = np.array([c.latency_ms for c in prof.independent_layer_costs([rows[i].layer for i in test])])
            true = np.array([rows[i].values["latency_ms"] for i in test])
            r = accuracy_report(pred, true)
            if split == "shapes":
                unseen.append(r["acc10"])
            print(f"seed {seed}, fit on {len(train)} rows (10% of {split}), latency of the other {len(test)}: {format_report(r)}")
    print(f"learned_unseen_shapes_acc10={np.mean(unseen):.3f}")


if __name__ == "__main__":
    main()
