"""Benchmark: block-based profiles learned from 20 or 50 whole networks vs the per-layer route.

Uses the tables ``benchmarks/block_tables.py`` measured on this machine (onnxruntime CPU, batch
1, one thread; cached under ``outputs/block_models/``; ``--remeasure`` measures them again):
random networks of the default and FLightNN spaces (latency and peak memory), a per-layer table,
and a few well-known architectures read back from their ONNX files.

For each of ``--splits`` random splits and N in (20, 50): fit a block profile on N networks and
predict every other space network (and the architectures). The per-layer route gets the *same
measuring time* (export + timing seconds recorded per network and per layer): half of the N
networks for `profile calibrate`'s scale and offset, the rest of the time for single layers
(`profile measure` -> `fit` learned profile); its memory is the weights + peak activations
formula, raw and with the same kind of scale + offset fitted on its calibration networks.

Prints Spearman, share within ±10 % and MAPE per route (mean and min-max over splits), the
coverage of the block model's 95 % intervals, per-architecture errors, prediction speed, and
last the headline ``block50_latency_acc10=``.

Usage: python benchmarks/block_models.py [--splits 5] [--remeasure] [--dir outputs/block_models]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from flightco.hw.accuracy import accuracy_report
from flightco.hw.block import BlockProfile, fit_block_profile
from flightco.hw.learned import LearnedProfile, TableProfileSpec, fit_network_calibration, fit_network_correction, profile_yaml
from flightco.hw.network_table import read_network_table
from flightco.hw.table import read_table, table_kernels

ROOT = Path(__file__).resolve().parents[1]


def load(dirpath: Path):
    nets = []
    for path in sorted(dirpath.glob("networks*.jsonl")):
        nets += read_network_table(path)
    archs = read_network_table(dirpath / "archs.jsonl") if (dirpath / "archs.jsonl").is_file() else []
    layers_path = dirpath / "layers.csv"
    layers, layer_s, meta = [], [], {}
    if layers_path.is_file():
        layers = read_table(layers_path)
        with open(layers_path, newline="") as fh:
            raw = list(csv.DictReader(fh))
        layer_s = [float(r["measure_s"]) for r in raw]
        meta = raw[0]
    return nets, archs, layers, np.array(layer_s), meta


def cost_s(r) -> float:
    return float(r.notes.get("export_s", 0.0)) + float(r.notes.get("measure_s", 0.0))


def learned_profile(rows, meta, scale=1.0, offset=0.0, per_kernel=0.0) -> LearnedProfile:
    data = profile_yaml("layers", "learned", rows, {"name": "onnxruntime"}, [8], 32,
                        float(meta.get("elementwise_ns_per_element", 1.0)), float(meta.get("session_overhead_ms", 0.0)))
    data.update(network_scale=scale, network_offset_ms=offset, network_per_kernel_ms=per_kernel)
    return LearnedProfile(TableProfileSpec.model_validate(data), "benchmark")


def report(pred, true) -> dict:
    return accuracy_report(np.asarray(pred, float), np.asarray(true, float))


def fmt(runs: list[dict]) -> str:
    def stat(key, scale=1.0, digits=1):
        v = np.array([r[key] for r in runs], float) * scale
        return f"{v.mean():.{digits}f} [{v.min():.{digits}f}-{v.max():.{digits}f}]"

    return (f"Spearman {stat('spearman', digits=3)}, within ±10%: {stat('acc10', 100)}%, "
            f"MAPE {stat('mape')}%")


def block_vs_layers(nets, archs, layers, layer_s, meta, n_train: int, splits: int):
    out = {k: [] for k in ("block_lat", "block_mem", "layer_lat", "layer_mem_raw", "layer_mem_cal", "coverage_lat",
                           "coverage_mem")}
    details = []
    for s in range(splits):
        rng = np.random.default_rng(100 + s)
        order = rng.permutation(len(nets))
        train = [nets[i] for i in order[:n_train]]
        test = [nets[i] for i in order[n_train:]]
        prof = BlockProfile.from_yaml(fit_block_profile(train, "block", bootstrap=30, seed=s), "benchmark")
        preds = {m: [prof.predict_metric(list(r.layers), m) for r in test] for m in ("latency_ms", "memory_kb")}
        for m, key, cov in (("latency_ms", "block_lat", "coverage_lat"), ("memory_kb", "block_mem", "coverage_mem")):
            p = np.array([v for v, _ in preds[m]])
            sd = np.array([e for _, e in preds[m]])
            t = np.array([r.values[m] for r in test])
            out[key].append(report(p, t))
            out[cov].append(float(np.mean(np.abs(p - t) <= 1.96 * sd)))
        # the per-layer route, same measuring seconds
        budget = sum(cost_s(r) for r in train)
        if not layers:  # no per-layer table measured (yet)
            nan = {"n": 0, "mape": float("nan"), "rmspe": float("nan"), "acc10": float("nan"), "spearman": float("nan")}
            for key in ("layer_lat", "layer_mem_raw", "layer_mem_cal"):
                out[key].append(nan)
            details.append({"budget_s": budget, "layers": 0, "calib": 0, "block": prof, "layer_route": None})
            continue
        calib = train[: n_train // 2]
        layer_budget = budget - sum(cost_s(r) for r in calib)
        k = int(np.searchsorted(np.cumsum(layer_s), layer_budget, side="right")) if len(layer_s) else 0
        k = max(k, 3)
        rows = layers[:k]
        base = learned_profile(rows, meta)
        oh = base.spec.session_overhead_ms
        kern = np.array([base.cost(list(r.layers)).latency_ms - oh for r in calib])
        counts = np.array([table_kernels(r.layers) for r in calib])  # as `profile calibrate`
        scale, per_kernel, offset = fit_network_correction(kern, counts, np.array([r.values["latency_ms"] for r in calib]) - oh)
        cal = learned_profile(rows, meta, scale, offset, per_kernel)
        t_lat = np.array([r.values["latency_ms"] for r in test])
        out["layer_lat"].append(report([cal.cost(list(r.layers)).latency_ms for r in test], t_lat))
        mem_raw = np.array([cal.cost(list(r.layers)).memory_kb for r in test])
        t_mem = np.array([r.values["memory_kb"] for r in test])
        out["layer_mem_raw"].append(report(mem_raw, t_mem))
        c_raw = np.array([cal.cost(list(r.layers)).memory_kb for r in calib])
        ms, mo = fit_network_calibration(c_raw, np.array([r.values["memory_kb"] for r in calib]))
        out["layer_mem_cal"].append(report(ms * mem_raw + mo, t_mem))
        details.append({"budget_s": budget, "layers": k, "calib": len(calib), "block": prof, "layer_route": cal})
    return out, details


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=ROOT / "outputs" / "block_models")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--remeasure", action="store_true", help="measure the tables again (about an hour on 2 loaded cores)")
    args = ap.parse_args()
    if args.remeasure or not (args.dir / "networks-default.jsonl").is_file():
        for f in args.dir.glob("*.jsonl"):
            f.unlink()
        (args.dir / "layers.csv").unlink(missing_ok=True)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "block_tables.py"), "--dir", str(args.dir)], check=True)
    nets, archs, layers, layer_s, meta = load(args.dir)
    nets = [r for r in nets if {"latency_ms", "memory_kb"} <= set(r.values)]
    by_space = {s: sum(1 for r in nets if r.notes.get("space") == s) for s in ("default", "flightnn")}
    lat = np.array([r.values["latency_ms"] for r in nets])
    mem = np.array([r.values["memory_kb"] for r in nets])
    print(f"tables: {len(nets)} networks ({by_space['default']} default, {by_space['flightnn']} FLightNN space), "
          f"{len(archs)} architectures, {len(layers)} single layers; onnxruntime CPU, batch 1, "
          f"{nets[0].notes.get('threads', 1)} thread; latency {np.median(lat):.3f} ms median "
          f"[{lat.min():.3f}-{lat.max():.3f}], peak memory {np.median(mem):.0f} KB median [{mem.min():.0f}-{mem.max():.0f}]")
    print(f"measuring one network (export + 3 timing passes + memory): {np.median([cost_s(r) for r in nets]):.1f} s median; "
          f"one layer: {np.median(layer_s) if len(layer_s) else float('nan'):.1f} s median (loaded machine)")
    results = {}
    for n in (20, 50):
        out, details = block_vs_layers(nets, archs, layers, layer_s, meta, n, args.splits)
        results[n] = (out, details)
        d = details[0]
        print(f"\n== fitted on {n} networks, predicting the other {len(nets) - n} ({args.splits} random splits; "
              f"mean [min-max]) ==")
        print(f"  block latency:           {fmt(out['block_lat'])}; 95% interval coverage "
              f"{100 * np.mean(out['coverage_lat']):.0f}%")
        print(f"  per-layer route latency: {fmt(out['layer_lat'])}  (same measuring time {d['budget_s']:.0f} s: "
              f"{d['calib']} calibration networks + {d['layers']} layers)")
        print(f"  block memory:            {fmt(out['block_mem'])}; 95% interval coverage "
              f"{100 * np.mean(out['coverage_mem']):.0f}%")
        print(f"  weights+peak-activation formula, raw:        {fmt(out['layer_mem_raw'])}")
        print(f"  same formula, scale+offset on {d['calib']} networks: {fmt(out['layer_mem_cal'])}")
    if archs:
        prof = results[50][1][0]["block"]
        layer_route = results[50][1][0]["layer_route"]
        print("\n== architectures read from their float ONNX files (block profile of split 0, N=50) ==")
        for r in archs:
            lp, lsd = prof.predict_metric(list(r.layers), "latency_ms")
            mp, msd = prof.predict_metric(list(r.layers), "memory_kb")
            lr = layer_route.cost(list(r.layers)).latency_ms if layer_route is not None else float("nan")
            print(f"  {r.name:22s} {len(r.layers):3d} kernels: latency {r.values['latency_ms']:.3f} ms measured, "
                  f"block {lp:.3f} ± {lsd:.3f} ({100 * (lp / r.values['latency_ms'] - 1):+.0f}%), per-layer route "
                  f"{lr:.3f} ({100 * (lr / r.values['latency_ms'] - 1):+.0f}%); memory {r.values['memory_kb']:.0f} KB, "
                  f"block {mp:.0f} ({100 * (mp / r.values['memory_kb'] - 1):+.0f}%)")
    prof = results[50][1][0]["block"]
    reps = 3
    t = time.perf_counter()
    for _ in range(reps):
        for r in nets:
            prof.cost(list(r.layers))
    per = (time.perf_counter() - t) / (reps * len(nets))
    measure = float(np.median([cost_s(r) for r in nets]))
    print(f"\npredicting one network with the block profile: {per * 1e6:.0f} us; measuring it: {measure:.1f} s "
          f"-> {measure / per:.0f}x faster")
    for n in (20, 50):
        print(f"block{n}_latency_acc10={np.mean([r['acc10'] for r in results[n][0]['block_lat']]):.3f}")
    print(f"block50_memory_acc10={np.mean([r['acc10'] for r in results[50][0]['block_mem']]):.3f}")
    print(f"layers50_latency_acc10={np.mean([r['acc10'] for r in results[50][0]['layer_lat']]):.3f}")
    print(f"block50_latency_acc10={np.mean([r['acc10'] for r in results[50][0]['block_lat']]):.3f}")


if __name__ == "__main__":
    main()
