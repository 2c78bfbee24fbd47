"""Benchmark: what the exported front of a run really costs in onnxruntime (CPU, measured).

For every model on the run's Pareto front (default: the default recipe's run) it exports the
onnx-int file (``flightco export --format onnx-int``: verified against PyTorch, integer kernels
read from onnxruntime's optimized graph and profiler) and the float export of the same network,
times both at batch 1 and 32 in fresh child processes (two alternating rounds, the lower median
of each kept), and prints:
  1. per model: predicted latency (the run's profiles, or --profile's) vs measured, integer
     convolutions and kernel-time share, file size, speed-up over float at batch 1 and 32;
  2. file size by mean weight bit-width;
  3. for the most accurate model, the issue's table: float / qcdq (BN unfolded) / onnx-int /
     signed-int8 (tensorrt form run in onnxruntime) / uniform W8A8 and W4A4 onnx-int twins, with the
     convolutions onnxruntime really ran;
  4. the issue's reference network, MobileNetV2-1.0 at 224x224 (built by flightco's onnx-int graph
     builder, the same passes as export; random integer weights: latency does not depend on their
     values), at batch 1: float, onnx-int, onnx-int with uint8 dense 8-bit weights, with uint8
     depthwise 8-bit weights too (export's form before), without depthwise padding, and W4A4 — so a miss on the front's narrow 28x28 networks can be told from a miss
     of the export itself;
  5. the same speed-up for ``--float-stem`` files (the stem run as a float conv);
  last line: int_speedup = median over the front of float ÷ onnx-int latency at batch 32 (the default export).

Usage: python benchmarks/deploy.py [--run outputs/mobilenet_energy] [--out outputs/deploy_bench] [--threads 1]
                                   [--max-models N] [--profile hw_profiles/ort.yaml]
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")


def _measure(path: Path, shape: list[int], threads: int) -> dict:
    from flightco.runtimes.onnxruntime import measure_file

    return measure_file(path, shape, threads=threads, seconds=0.5)


def _best(a: dict, b: dict) -> dict:
    """Per batch size, the round with the lower median (a slow spell of the machine touches one)."""
    out = dict(a)
    for k in ("batch1", "batch32"):
        out[k] = min(a[k], b[k], key=lambda r: r["median_ms"])
    return out


def _ops(path: Path) -> str:
    from flightco.runtimes.onnxruntime import kernel_report

    r = kernel_report(path, runs=2)
    convs = r.float_nodes.get("Conv", 0) + r.float_nodes.get("FusedConv", 0) + r.float_nodes.get("NchwcConv", 0)
    return (f"{r.integer_convolutions} QLinearConv, {convs} float Conv, "
            + ", ".join(f"{n} {op}" for op, n in sorted(r.integer_nodes.items()) if op != "QLinearConv"))


def _mobilenet_v2(bits: int):
    """MobileNetV2-1.0's inverted-residual table (t, c, n, s) at 224x224, 1000 classes, as a Genome
    with every layer at ``bits`` (32 = float); flightco's genome has no final 1x1-to-1280 conv."""
    from flightco.space import BlockGene, Genome, Precision

    blocks = []
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            blocks.append(BlockGene(c, t, 3, s if i == 0 else 1, Precision(bits, bits) if t > 1 else None,
                                    Precision(bits, bits), Precision(bits, bits)))
    return Genome(3, 224, 1000, 32, 3, 2, Precision(bits, bits), tuple(blocks), Precision(bits, bits))


def _reference_network(out: Path, threads: int) -> None:
    from flightco.onnx_build import build_onnx
    from flightco.runtimes.onnxruntime import signed_8bit_weights
    from flightco.space import FLOAT_BITS

    w8 = "int8" if signed_8bit_weights() else "uint8"
    print(f"\n4. MobileNetV2-1.0, 224x224, batch 1 (onnx-int builder; this machine's 8-bit weights: {w8}), median ms")
    variants = [("float", FLOAT_BITS, {}), (f"onnx-int W8A8 ({w8} 8-bit weights)", 8, {}),
                ("onnx-int W8A8, --w8-type uint8 (dense 8-bit weights uint8)", 8, {"w8_type": "uint8"}),
                ("onnx-int W8A8, depthwise 8-bit weights uint8 too (before)", 8, {"w8_type": "uint8", "uint8_depthwise": True}),
                ("onnx-int W8A8, depthwise not padded", 8, {"pad_depthwise": False}), ("onnx-int W4A4", 4, {})]
    times = {}
    for label, bits, options in variants:
        p = out / f"mobilenet_v2_{len(times)}.onnx"
        build_onnx(_mobilenet_v2(bits), p, **options)
        a, b = (_measure_b1(p, threads) for _ in range(2))
        times[label] = min(a, b)
        print(f"   {label:<52} {_ops(p):<45} {times[label]:.2f}  (rounds {a:.2f}, {b:.2f})")
    base = times["float"]
    print("   speed-up over float: " + ", ".join(f"{k} {base / v:.2f}" for k, v in times.items() if k != "float"))


def _measure_b1(path: Path, threads: int) -> float:
    from flightco.runtimes.onnxruntime import measure_file

    return measure_file(path, [1, 3, 224, 224], batches=(1,), threads=threads, seconds=1.0)["batch1"]["median_ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="outputs/mobilenet_energy")  # the README's first command writes it
    ap.add_argument("--out", default="outputs/deploy_bench")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-models", type=int, default=None)
    ap.add_argument("--profile", default=None, help="an onnxruntime profile (learned/table) to predict latency with")
    ap.add_argument("--no-table", action="store_true", help="skip section 3")
    ap.add_argument("--no-reference", action="store_true", help="skip section 4 (MobileNetV2-1.0 at 224x224)")
    args = ap.parse_args()

    import torch

    from flightco.export import export_float, export_trial, write_format
    from flightco.hw.profile import load_profile
    from flightco.hw.workload import workload
    from flightco.pareto import front_frame
    from flightco.runs import load_study
    from flightco.space import Genome

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _, study = load_study(Path(args.run))
    front = front_frame(study)
    numbers = [int(n) for n in front["trial"]][: args.max_models]
    profile = load_profile(Path(args.profile)) if args.profile else None
    rows = []
    for n in numbers:
        path = out / f"trial_{n:04d}.onnx"
        r = export_trial(Path(args.run), n, path, fmt="onnx-int", threads=args.threads, measure=False)
        genome = Genome.from_dict(r.genome)
        shape = [1, genome.in_channels, genome.resolution, genome.resolution]
        fpath, spath = out / f"trial_{n:04d}.float.onnx", out / f"trial_{n:04d}.float_stem.onnx"
        export_float(genome, fpath)
        export_trial(Path(args.run), n, spath, fmt="onnx-int", threads=args.threads, measure=False, float_stem=True)
        i1, s1, f1 = (_measure(p, shape, args.threads) for p in (path, spath, fpath))
        i2, s2, f2 = (_measure(p, shape, args.threads) for p in (path, spath, fpath))
        im, sm, fm = _best(i1, i2), _best(s1, s2), _best(f1, f2)
        predicted = {k.split(".")[0]: v for k, v in r.metrics.items() if k.endswith(".latency_ms")}
        if profile is not None:
            predicted[profile.name] = profile.cost(workload(genome)).latency_ms
        w = [p.w_bits for p in genome.precisions() if p.w_bits < 32]
        rows.append({"trial": n, "bits": r.bits, "agreement": r.top1_agreement, "accuracy": r.runtime_accuracy,
                     "trained_accuracy": r.trained_accuracy, "int_convs": f"{r.kernels['integer_convolutions']}/{r.kernels['convolutions']}",
                     "int_share": r.kernels["integer_time_share"], "kib": im["file_bytes"] / 1024,
                     "float_kib": fm["file_bytes"] / 1024, "mean_w_bits": float(np.mean(w)) if w else 32.0,
                     "predicted": predicted, "int": im, "float": fm,
                     "speedup_b1": fm["batch1"]["median_ms"] / im["batch1"]["median_ms"],
                     "speedup_b32": fm["batch32"]["median_ms"] / im["batch32"]["median_ms"],
                     "float_stem": sm, "float_stem_speedup_b32": fm["batch32"]["median_ms"] / sm["batch32"]["median_ms"]})
        print(f"trial {n}: exported and measured", flush=True)
    (out / "deploy_bench.json").write_text(json.dumps(rows, indent=2) + "\n")

    print("\n1. front models (onnxruntime CPU, %d thread; median ms [p10-p90])" % args.threads)
    print(f"{'trial':>5} {'bits':<20} {'agree':>6} {'acc':>6} {'int conv':>8} {'int time':>8} "
          f"{'predicted b1 (profile)':<28} {'int b1':>18} {'float b1':>8} {'int b32':>18} {'float b32':>9} {'x b1':>5} {'x b32':>5}")
    for r in rows:
        pred = ", ".join(f"{k} {v:.3g}" for k, v in r["predicted"].items())
        ib1, ib32 = r["int"]["batch1"], r["int"]["batch32"]
        print(f"{r['trial']:>5} {r['bits']:<20} {100 * r['agreement']:>5.1f}% {100 * r['accuracy']:>5.1f}% {r['int_convs']:>8} "
              f"{100 * r['int_share']:>7.0f}% {pred:<28} {ib1['median_ms']:>7.3f} [{ib1['p10_ms']:.3f}-{ib1['p90_ms']:.3f}] "
              f"{r['float']['batch1']['median_ms']:>8.3f} {ib32['median_ms']:>7.2f} [{ib32['p10_ms']:.2f}-{ib32['p90_ms']:.2f}] "
              f"{r['float']['batch32']['median_ms']:>9.2f} {r['speedup_b1']:>5.2f} {r['speedup_b32']:>5.2f}")
    if profile is None:
        print("   (predicted: the run's own profiles, which model another chip; pass --profile with an onnxruntime "
              "profile to compare like with like)")
    else:
        errs = [abs(r["predicted"][profile.name] / r["int"]["batch1"]["median_ms"] - 1) for r in rows]
        print(f"   {profile.name} vs measured onnx-int batch 1: median |error| {100 * statistics.median(errs):.0f}%")

    print("\n2. file size by mean weight bit-width (onnx-int, int8 containers; float export beside)")
    for r in sorted(rows, key=lambda r: r["mean_w_bits"]):
        print(f"   W{r['mean_w_bits']:.2f}: {r['kib']:.1f} KiB (float export {r['float_kib']:.1f} KiB)")

    if rows and not args.no_table:
        best = rows[0]
        genome = Genome.from_dict(next(g for g in [json.loads(Path(f"{out}/trial_{best['trial']:04d}.onnx.json").read_text())["genome"]]))
        shape = [1, genome.in_channels, genome.resolution, genome.resolution]
        print(f"\n3. one network (trial {best['trial']}, {best['bits']}), exported every way (batch 1 / 32, median ms)")
        from flightco.data import load_dataset
        from flightco.nn.mobilenet import build_model
        from flightco.runs import trial_dir

        data = load_dataset("mnist5k")
        calib = data.train.x[:256]
        variants = [("float ONNX", out / f"trial_{best['trial']:04d}.float.onnx")]
        weights = sorted(trial_dir(Path(args.run), best["trial"]).glob("*.pt"))
        blob = torch.load(weights[0], map_location="cpu", weights_only=False)
        for label, fmt, g, options in [("qcdq (BN unfolded, flightco before)", "qcdq", genome, {}),
                                       ("onnx-int", "onnx-int", genome, {}),
                                       ("onnx-int --float-stem", "onnx-int", genome, {"float_stem": True}),
                                       ("signed int8 (tensorrt form) in onnxruntime", "tensorrt", genome, {}),
                                       ("onnx-int, uniform W8A8 twin", "onnx-int", genome.with_uniform_bits(8), {}),
                                       ("onnx-int, uniform W4A4 twin", "onnx-int", genome.with_uniform_bits(4), {})]:
            model = build_model(g, collect_stats_steps=4)
            if g is genome:
                model.load_state_dict(blob["state_dict"])
            else:  # untrained twin: calibrate its quantizers and BN (latency does not depend on the values)
                model.train()
                with torch.no_grad():
                    for i in range(6):
                        model(calib[i * 32:(i + 1) * 32])
            model.eval()
            p = out / f"table_{fmt}{'_float_stem' if options else ''}_{g.bits_summary().split()[0].replace('/', '_')}.onnx"
            write_format(model, calib[:1], p, fmt, calib, **options)
            variants.append((label, p))
        for label, p in variants:
            a, b = _measure(p, shape, args.threads), _measure(p, shape, args.threads)
            m = _best(a, b)
            print(f"   {label:<45} {_ops(p):<45} {m['batch1']['median_ms']:.3f} / {m['batch32']['median_ms']:.2f}")

    if not args.no_reference:
        _reference_network(out, args.threads)

    b32 = [r["speedup_b32"] for r in rows]
    b1 = [r["speedup_b1"] for r in rows]
    if rows:
        print(f"\nspeed-up of onnx-int over float: batch 1 median {statistics.median(b1):.2f} "
              f"(range {min(b1):.2f}-{max(b1):.2f}); batch 32 median {statistics.median(b32):.2f} (range {min(b32):.2f}-{max(b32):.2f})")
        print(f"integer convolutions: {sum(int(r['int_convs'].split('/')[0]) for r in rows)}/"
              f"{sum(int(r['int_convs'].split('/')[1]) for r in rows)} over {len(rows)} models; "
              f"median integer kernel-time share {100 * statistics.median(r['int_share'] for r in rows):.0f}%")
        fs = [r["float_stem_speedup_b32"] for r in rows]
        print(f"with --float-stem (the stem a float conv, every other conv integer): batch 32 median "
              f"{statistics.median(fs):.2f} (range {min(fs):.2f}-{max(fs):.2f}) over float")
    print(f"int_speedup={statistics.median(b32):.3f}" if rows else "int_speedup=nan")


if __name__ == "__main__":
    main()
