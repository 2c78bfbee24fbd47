"""Benchmark: what OpenVINO's exactness barriers cost and buy on a run's front (CPU, measured).

OpenVINO's CPU plug-in fuses a residual projection's output quantizer into the residual sum, and
the average pool into the classifier's input quantizer, and drops their rounding (see
``flightco/runtimes/openvino.py``). flightco's OpenVINO plug-in therefore keeps those tensors as
extra outputs by default (``exact``). For every model on the run's Pareto front this exports the
``onnx-int`` file and deploys it to OpenVINO twice — with the barriers (flightco's default) and
with OpenVINO's own fusions (``exact: False``) — and prints, per model and mode: top-1 agreement
with PyTorch on the test images, max logit difference, fusions named as inexact, and latency at
batch 1 and 32 (each mode measured twice, alternating, in fresh processes; the lower median kept,
both shown as the spread).

Last line: ``exact_latency_ratio=<median over the front of exact / fused latency at batch 32>``.

Usage: python benchmarks/openvino_exact.py [--run outputs/mobilenet_energy] [--out outputs/openvino_exact]
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="outputs/mobilenet_energy")  # the README's first command writes it
    ap.add_argument("--out", default="outputs/openvino_exact")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from flightco.api import pareto
    from flightco.export import export_trial
    from flightco.runtimes.openvino import available

    ok, why = available()
    if not ok:
        raise SystemExit(why)
    front = pareto(args.run)
    out = Path(args.out)
    ratios = []
    for trial in [int(t) for t in front["trial"]]:
        rows = {}
        for rnd in range(2):
            for mode, opts in (("exact", None), ("fused", {"exact": False})):
                path = out / f"trial_{trial:04d}.{mode}.onnx"
                rep = export_trial(Path(args.run), trial, path, deploy_to="openvino", measure=True,
                                   threads=args.threads, runtime_options=opts, min_agreement=0.0)
                d = rep.deployed
                rows.setdefault(mode, []).append(d)
        line = [f"trial {trial} ({rep.bits})"]
        medians = {}
        for mode, reps in rows.items():
            d = reps[0]
            b1 = [r["measured"]["batch1"]["median_ms"] for r in reps]
            b32 = [r["measured"]["batch32"]["median_ms"] for r in reps]
            medians[mode] = min(b32)
            line.append(f"  {mode}: agreement {100 * d['top1_agreement']:.2f}%, max |diff| {d['max_abs_diff']:.2g}, "
                        f"inexact fusions {len(d['executed'].get('inexact_fusions', []))}, "
                        f"int convs {d['executed']['integer_convolutions']}/{d['executed']['convolutions']}, "
                        f"batch 1 {min(b1):.4g} ms (rounds {', '.join(f'{v:.4g}' for v in b1)}), "
                        f"batch 32 {min(b32):.4g} ms (rounds {', '.join(f'{v:.4g}' for v in b32)})")
        ratios.append(medians["exact"] / medians["fused"])
        print("\n".join(line))
    print(f"exact_latency_ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
