"""Benchmark: FLightNN power-of-two weights against float and fixed point, on one architecture.

Trains one fixed MobileNet-style architecture of the default space (the middle choice of every
option) on the default dataset (mnist5k: 4,000 training images, 1,000 held-out test images)
with the default recipe's final budget (10 epochs, batch 64, lr 3e-3), once per precision and
seed, and prices each trained model under the analytic profiles (FLightNN layers at the terms
training kept). Prints a table and which rows are Pareto-optimal in (accuracy, energy).

Usage: python benchmarks/flightnn.py [--seeds 2] [--epochs 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from flightco.data import Split, load_dataset
from flightco.hw.profile import load_profile
from flightco.metrics import genome_metrics
from flightco.nn.mobilenet import build_model
from flightco.front import mean_terms
from flightco.search import realised_terms
from flightco.space import FLOAT_BITS, Genome, Precision, SearchSpace, sample_genome
from flightco.train import TrainConfig, evaluate, train_qat

ROOT = Path(__file__).resolve().parents[1]


class Middle:
    """A trial-like object that picks the middle choice of every architectural option."""

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        return choices[len(choices) // 2]


def inner(genome: Genome, p: Precision) -> Genome:
    """``genome`` with every block layer at ``p`` and the stem and classifier at W8A8."""
    edge = Precision(8, 8)
    blocks = tuple(replace(b, expand=p if b.expand else None, dw=p, project=p) for b in genome.blocks)
    return replace(genome, stem=edge, classifier=edge, blocks=blocks)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=float, default=10)
    args = ap.parse_args()

    space = SearchSpace.load(ROOT / "search_spaces" / "mobilenet.yaml")
    base = sample_genome(Middle(), space, in_channels=1, resolution=28, num_classes=10)
    variants = {
        "float": base.with_uniform_bits(FLOAT_BITS),
        "W8A8": inner(base, Precision(8, 8)),
        "W4A4": inner(base, Precision(4, 4)),
        "W2A4": inner(base, Precision(2, 4)),
        "FLightNN k<=2 A4 (lambda 0)": inner(base, Precision(8, 4, 2, 0.0)),
        "FLightNN k<=2 A4 (lambda 0.02)": inner(base, Precision(8, 4, 2, 0.02)),
        "FLightNN k=1 A4": inner(base, Precision(8, 4, 1, 0.0)),
    }
    profiles = [load_profile(ROOT / "hw_profiles" / f) for f in ("bitfusion.yaml", "eyeriss.yaml")]
    ds = load_dataset("mnist5k", seed=0)
    train = Split(torch.cat([ds.train.x, ds.val.x]), torch.cat([ds.train.y, ds.val.y]))
    print(f"architecture: stem {base.stem_channels}, blocks "
          + ", ".join(f"{b.out_channels}c x{b.expansion} k{b.kernel}" for b in base.blocks)
          + f"; {len(train)} training / {len(ds.test)} test images; {args.epochs:g} epochs; {args.seeds} seed(s)")

    rows = []
    for label, genome in variants.items():
        accs, terms_used, costs = [], [], []
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = build_model(genome)
            train_qat(model, train, TrainConfig(epochs=args.epochs, batch_size=64, lr=3e-3, seed=seed))
            accs.append(evaluate(model, ds.test))
            hist = realised_terms(model)
            means = mean_terms(hist) if hist else None
            if means:
                terms_used.append(sum(means.values()) / len(means))
            costs.append(genome_metrics(genome, profiles, means))
        m = {k: statistics.mean(c[k] for c in costs) for k in costs[0]}
        rows.append({
            "precision": label, "acc": statistics.mean(accs), "acc_min": min(accs), "acc_max": max(accs),
            "terms": statistics.mean(terms_used) if terms_used else None,
            "bf_energy_nj": m["bitfusion-45nm.energy_mj"] * 1e6, "bf_latency_us": m["bitfusion-45nm.latency_ms"] * 1e3,
            "bf_memory_kb": m["bitfusion-45nm.memory_kb"], "ey_energy_nj": m["eyeriss-like.energy_mj"] * 1e6,
            "seconds": (time.perf_counter() - t0) / args.seeds,
        })
        r = rows[-1]
        print(f"  trained {label}: test accuracy {100 * r['acc']:.2f}% ({r['seconds']:.0f} s per model)", flush=True)

    def dominated(r: dict, key: str) -> bool:
        return any(o is not r and o["acc"] >= r["acc"] and o[key] <= r[key] and (o["acc"] > r["acc"] or o[key] < r[key])
                   for o in rows)

    print()
    print("| precision (blocks; stem and classifier W8A8) | test accuracy (min-max) | terms / weight | "
          "BitFusion energy nJ | BitFusion latency µs | BitFusion memory KB | Eyeriss energy nJ | "
          "front (BitFusion) | front (Eyeriss) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        terms = f"{r['terms']:.2f}" if r["terms"] is not None else "—"
        print(f"| {r['precision']} | {100 * r['acc']:.2f} % ({100 * r['acc_min']:.1f}-{100 * r['acc_max']:.1f}) | {terms} | "
              f"{r['bf_energy_nj']:.0f} | {r['bf_latency_us']:.2f} | {r['bf_memory_kb']:.1f} | {r['ey_energy_nj']:.0f} | "
              f"{'yes' if not dominated(r, 'bf_energy_nj') else 'no'} | {'yes' if not dominated(r, 'ey_energy_nj') else 'no'} |")


if __name__ == "__main__":
    main()
