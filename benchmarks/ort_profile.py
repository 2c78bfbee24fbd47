"""Benchmark: how well a learned onnxruntime profile predicts this machine, and how fast.

Prints (all measured in this run, onnxruntime CPU provider, batch 1, one thread by default):
  1. a learned profile fitted on 10% of a per-layer table, evaluated on the other 90%;
  2. the learned profile fitted on the whole table, predicting whole random networks end to end
     (nn-Meter's figure: share of networks within ±10%);
  3. the time to predict one network's costs vs the time to measure it.

Usage: python benchmarks/ort_profile.py [--layers 200] [--networks 50] [--threads 1]
       [--background-load 2 [--load-duty 0.5]] [--statistic lowest] [--wait-quiet 5]

``--background-load N`` runs the whole benchmark beside N torch training processes
(benchmarks/background_load.py), a busy machine that can be repeated; every figure then says
how many cores other work kept busy while it was timed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from flightco.hw.accuracy import accuracy_report
from flightco.hw.learned import LearnedProfile, TableProfileSpec, fit_network_calibration, fit_network_correction, profile_yaml
from flightco.hw.table import table_kernels
from flightco.measure import (
    measure_elementwise_ns,
    measure_layers,
    measure_networks,
    measure_session_overhead_ms,
    sample_genomes,
    sample_layers,
)
from flightco.hw.workload import workload
from flightco.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _load() -> str:
    from flightco.measure import LAST_BACKGROUND

    if "mean_cores" not in LAST_BACKGROUND:
        return "other processes' load unknown"
    b = LAST_BACKGROUND
    return (f"other processes kept {b['mean_cores']:.2f} of {b['cores']:.0f} cores busy "
            f"({b['kept_cores']:.2f} where the kept timings were taken; {100 * b['busy_share']:.0f}% of stretches "
            f"rejected as busy spells; {b['rounds']:.0f} passes)")


def learned(rows, ns, overhead, scale=1.0, offset=0.0, per_kernel=0.0) -> LearnedProfile:
    data = profile_yaml("ort-bench", "learned", rows, {"name": "onnxruntime"}, [8], 32, ns, overhead)
    data.update(network_scale=scale, network_offset_ms=offset, network_per_kernel_ms=per_kernel)
    return LearnedProfile(TableProfileSpec.model_validate(data), "benchmark")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=200)
    ap.add_argument("--networks", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calibration-networks", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing passes over the networks")
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "mobilenet.yaml"))
    ap.add_argument("--save-table", default=None, help="also write the measured layer table (CSV) here")
    ap.add_argument("--background-load", type=int, default=0, help="torch training processes to run beside it")
    ap.add_argument("--load-threads", type=int, default=2, help="threads per background process")
    ap.add_argument("--load-duty", type=float, default=1.0, help="share of each 2 s the background trains")
    ap.add_argument("--statistic", default="block-median", choices=["block-median", "lowest"],
                    help="how one timing pass reduces its runs (flightco.measure.STATISTICS)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, help="seconds each pass may wait for a quiet machine")
    ap.add_argument("--save-networks", default=None, help="also write every timed network (JSON lines) here")
    ap.add_argument("--table-shares", type=lambda t: [float(x) for x in t.split(",") if x], default=[],
                    help="also price the networks with profiles learned from these shares of the layer table "
                         "(e.g. 0.5), to see what a larger table buys")
    args = ap.parse_args()
    if args.background_load:
        from background_load import background_load

        with background_load(args.background_load, args.load_threads, args.load_duty):
            print(f"background: {args.background_load} torch training process(es), {args.load_threads} thread(s), "
                  f"duty {args.load_duty:g}")
            run(args)
    else:
        run(args)


def run(args) -> None:
    space = SearchSpace.load(args.space)
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, {args.threads} thread(s), batch 1")
    t0 = time.perf_counter()
    timing = dict(statistic=args.statistic, wait_quiet_s=args.wait_quiet)
    rows = list(measure_layers(sample_layers(space, args.layers, seed=0), args.threads, warmup=20, repeats=100, **timing))
    layer_load = _load()
    ns = measure_elementwise_ns(args.threads)
    overhead = measure_session_overhead_ms(args.threads)
    if args.save_table:
        from flightco.hw.table import write_table

        write_table(args.save_table, rows, {"runtime": "onnxruntime", "threads": args.threads,  # as `profile measure`
                                            "elementwise_ns_per_element": f"{ns:.4g}", "session_overhead_ms": f"{overhead:.4g}"})
    print(f"measured {len(rows)} layers in {time.perf_counter() - t0:.0f} s; add: {ns:.3g} ns/element; "
          f"session overhead {overhead * 1e3:.1f} us; {layer_load}; statistic {args.statistic}")

    rng = np.random.default_rng(0)
    order = rng.permutation(len(rows))
    k = max(6, len(rows) // 10)
    small = learned([rows[i] for i in order[:k]], ns, overhead)
    rest = [rows[i] for i in order[k:]]
    pred = np.array([c.latency_ms for c in small.independent_layer_costs([r.layer for r in rest])])
    true = np.array([r.values["latency_ms"] for r in rest])
    r = accuracy_report(pred, true)
    print(f"[1] fitted on {k} layers (10%), predicting the other {len(rest)}: MAPE {r['mape']:.1f}%, "
          f"RMSPE {r['rmspe']:.1f}%, within ±10%: {100 * r['acc10']:.1f}%, Spearman {'n/a' if r['spearman'] is None else format(r['spearman'], '.3f')}")

    full = learned(rows, ns, overhead)
    genomes = sample_genomes(space, args.networks, seed=1)
    # network-level correction from a few *other* networks (seed 2), as `flightco profile calibrate`;
    # both sets are timed together in interleaved passes, so that a slow spell of this shared
    # machine cannot fall on one set only
    calib = sample_genomes(space, args.calibration_networks, seed=2)
    t = time.perf_counter()
    both = measure_networks(calib + genomes, args.threads, rounds=args.rounds, **timing)
    network_load = _load()
    measure_s = (time.perf_counter() - t) / len(both)
    measured, true = np.array(both[:len(calib)]) - overhead, both[len(calib):]
    if args.save_networks:  # every timed network, so that other network-level models can be tried offline
        import json

        with open(args.save_networks, "w") as f:
            for label, seed, group in (("calibration", 2, calib), ("validation", 1, genomes)):
                for i, g in enumerate(group):
                    ms = both[i] if label == "calibration" else both[len(calib) + i]
                    f.write(json.dumps({"set": label, "seed": seed, "index": i, "latency_ms": ms,
                                        "genome": g.to_dict()}) + "\n")
    kernels = np.array([full.cost(workload(g)).latency_ms - overhead for g in calib])
    counts = np.array([table_kernels(workload(g)) for g in calib])
    scale, per_kernel, offset = fit_network_correction(kernels, counts, measured)  # as `flightco profile calibrate`
    calibrated = learned(rows, ns, overhead, scale, offset, per_kernel)
    print(f"    network calibration on {len(calib)} other networks: {scale:.3f} x kernels {per_kernel * 1e3:+.2f} us "
          f"per conv/linear kernel {offset * 1e3:+.1f} us")
    raw = [full.cost(workload(g)).latency_ms for g in genomes]
    pred = [calibrated.cost(workload(g)).latency_ms for g in genomes]
    r = accuracy_report(np.array(raw), np.array(true))
    print(f"[2a] whole networks, sum of kernels ({len(genomes)}), measured {np.median(true):.3f} ms median: MAPE {r['mape']:.1f}%, "
          f"RMSPE {r['rmspe']:.1f}%, within ±10%: {100 * r['acc10']:.1f}%, Spearman {'n/a' if r['spearman'] is None else format(r['spearman'], '.3f')}")
    from flightco.hw.accuracy import global_scale

    only = global_scale(np.array(kernels), np.array(measured))
    scaled = [only * (r_ - overhead) + overhead for r_ in raw]
    r = accuracy_report(np.array(scaled), np.array(true))
    print(f"[2c] whole networks, scale-only calibration ({only:.3f}): MAPE {r['mape']:.1f}%, RMSPE {r['rmspe']:.1f}%, "
          f"within ±10%: {100 * r['acc10']:.1f}%, Spearman {'n/a' if r['spearman'] is None else format(r['spearman'], '.3f')}")
    from flightco.hw.accuracy import share_interval

    s2, o2 = fit_network_calibration(kernels, measured)  # the correction without its per-kernel term
    two = learned(rows, ns, overhead, s2, o2)
    r = accuracy_report(np.array([two.cost(workload(g)).latency_ms for g in genomes]), np.array(true))
    lo, hi = share_interval(r["acc10"], r["n"])
    print(f"[2f] whole networks, scale + offset only ({s2:.3f} x kernels {o2 * 1e3:+.1f} us): MAPE {r['mape']:.1f}%, "
          f"within ±10%: {100 * r['acc10']:.1f}% (95% interval {100 * lo:.0f}-{100 * hi:.0f}%)")
    r = accuracy_report(np.array(pred), np.array(true))
    lo, hi = share_interval(r["acc10"], r["n"])
    print(f"[2b] whole networks, calibrated ({len(genomes)}), measured {np.median(true):.3f} ms median: MAPE {r['mape']:.1f}%, "
          f"RMSPE {r['rmspe']:.1f}%, within ±10%: {100 * r['acc10']:.1f}% (95% interval {100 * lo:.0f}-{100 * hi:.0f}%), "
          f"Spearman {'n/a' if r['spearman'] is None else format(r['spearman'], '.3f')}")

    # does a larger layer table buy whole-network accuracy? the same networks, the same calibration
    # networks, priced by profiles learned from random halves of the table (one run: one machine state)
    for share in args.table_shares:
        n = max(6, int(round(share * len(rows))))
        half = [rows[i] for i in order[:n]]
        part = learned(half, ns, overhead)
        kern = np.array([part.cost(workload(g)).latency_ms - overhead for g in calib])
        s_, k_, o_ = fit_network_correction(kern, counts, measured)
        part = learned(half, ns, overhead, s_, o_, k_)
        r = accuracy_report(np.array([part.cost(workload(g)).latency_ms for g in genomes]), np.array(true))
        lo, hi = share_interval(r["acc10"], r["n"])
        print(f"[2e] whole networks, calibrated, layer table cut to {n} of {len(rows)} layers: MAPE {r['mape']:.1f}%, "
              f"within ±10%: {100 * r['acc10']:.1f}% (95% interval {100 * lo:.0f}-{100 * hi:.0f}%)")

    from flightco.measure import LAST_SPREAD

    print(f"[2d] the measurement itself: second-quietest vs quietest timing pass of each network, median "
          f"{LAST_SPREAD.get('median_pct', float('nan')):.2f}%, max {LAST_SPREAD.get('max_pct', float('nan')):.2f}%; "
          f"{int(LAST_SPREAD.get('unsettled', 0))} network(s) never settled within 3%; {network_load}")

    fresh = sample_genomes(space, 100, seed=3)
    cold_profile = learned(rows, ns, overhead, scale, offset)
    t = time.perf_counter()
    for g in fresh:
        cold_profile.cost(workload(g))
    cold = (time.perf_counter() - t) / len(fresh)
    reps = 2000
    t = time.perf_counter()
    for i in range(reps):
        cold_profile.cost(workload(fresh[i % len(fresh)]))
    warm = (time.perf_counter() - t) / reps
    print(f"[3] predicting one network: {cold * 1e6:.0f} us for a network with new kernels, {warm * 1e6:.0f} us once its "
          f"kernels were seen; measuring it (export + {args.rounds} timing passes): {measure_s:.2f} s per network "
          f"-> {measure_s / warm:.0f}x / {measure_s / cold:.0f}x faster")


if __name__ == "__main__":
    main()
