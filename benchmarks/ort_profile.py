"""Benchmark: how well a learned onnxruntime profile predicts this machine, and how fast.

Prints (all measured in this run, onnxruntime CPU provider, batch 1, one thread by default):
  1. a learned profile fitted on 10% of a per-layer table, evaluated on the other 90%;
  2. the learned profile fitted on the whole table, predicting whole random networks end to end
     (nn-Meter's figure: share of networks within ±10%);
  3. the time to predict one network's costs vs the time to measure it.

Usage: python benchmarks/ort_profile.py [--layers 200] [--networks 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from flightco.hw.accuracy import accuracy_report
from flightco.hw.learned import LearnedProfile, TableProfileSpec, profile_yaml
from flightco.hw.measure import (
    measure_elementwise_ns,
    measure_layers,
    measure_network,
    measure_session_overhead_ms,
    sample_genomes,
    sample_layers,
)
from flightco.hw.workload import workload
from flightco.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def learned(rows, ns, overhead) -> LearnedProfile:
    data = profile_yaml("ort-bench", "learned", rows, {"name": "onnxruntime"}, [8], 32, ns, overhead)
    return LearnedProfile(TableProfileSpec.model_validate(data), "benchmark")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=200)
    ap.add_argument("--networks", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "mobilenet.yaml"))
    args = ap.parse_args()
    space = SearchSpace.load(args.space)
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, {args.threads} thread(s), batch 1")
    t0 = time.perf_counter()
    rows = list(measure_layers(sample_layers(space, args.layers, seed=0), args.threads))
    ns = measure_elementwise_ns(args.threads)
    overhead = measure_session_overhead_ms(args.threads)
    print(f"measured {len(rows)} layers in {time.perf_counter() - t0:.0f} s; add: {ns:.3g} ns/element; "
          f"session overhead {overhead * 1e3:.1f} us")

    rng = np.random.default_rng(0)
    order = rng.permutation(len(rows))
    k = max(6, len(rows) // 10)
    small = learned([rows[i] for i in order[:k]], ns, overhead)
    rest = [rows[i] for i in order[k:]]
    pred = np.array([c.latency_ms for c in small.independent_layer_costs([r.layer for r in rest])])
    true = np.array([r.values["latency_ms"] for r in rest])
    r = accuracy_report(pred, true)
    print(f"[1] fitted on {k} layers (10%), predicting the other {len(rest)}: MAPE {r['mape']:.1f}%, "
          f"RMSPE {r['rmspe']:.1f}%, within ±10%: {100 * r['acc10']:.1f}%, Spearman {r['spearman']:.3f}")

    full = learned(rows, ns, overhead)
    genomes = sample_genomes(space, args.networks, seed=1)
    pred, true, measure_s = [], [], []
    for g in genomes:
        pred.append(full.cost(workload(g)).latency_ms)
        t = time.perf_counter()
        true.append(measure_network(g, args.threads))
        measure_s.append(time.perf_counter() - t)
    r = accuracy_report(np.array(pred), np.array(true))
    print(f"[2] whole networks ({len(genomes)}), measured {np.median(true):.3f} ms median: MAPE {r['mape']:.1f}%, "
          f"RMSPE {r['rmspe']:.1f}%, within ±10%: {100 * r['acc10']:.1f}%, Spearman {r['spearman']:.3f}")

    reps = 200
    t = time.perf_counter()
    for i in range(reps):
        full.cost(workload(genomes[i % len(genomes)]))
    per = (time.perf_counter() - t) / reps
    print(f"[3] predicting one network: {per * 1e6:.0f} us; measuring it (export + timing): "
          f"{np.median(measure_s):.2f} s median -> {np.median(measure_s) / per:.0f}x faster")


if __name__ == "__main__":
    main()
