"""Across the stack: how far do the latency rankings of the default run's front disagree between targets?

Runs ``flightco across-stack`` (flightco/across_stack.py) on the default run — ``outputs/mobilenet_energy``
(``flightco optimize recipes/mobilenet_energy.yaml``) — or, when that folder does not exist, first
creates a SMALL default run (``--trials 8 --finalists 0`` of the default recipe, ~30 min on this shared
machine; the script says so). Targets: onnxruntime at 1 and 2 threads in the directly built onnx-int
form and (searched precision) the qcdq file flightco export writes, the run's profile (BitFusion-like)
and the Eyeriss-like profile; precisions: searched, uniform W8A8, float.

Printed: per target the Kendall taus between weight size, MACs, accuracy and latency, the pairwise tau
matrix of latency rankings, the candidates whose rank moves; the last line is
``rank_tau_min=<lowest Kendall tau of latency rankings between any two targets>``, over the front
(targets = every stack configuration: target x precision); a front of fewer than 3 members has no
ranking to compare, and then the sampled other candidates are included (the script says so).

    python benchmarks/stack.py [--run outputs/dev] [--others 3] [--runtime openvino ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from flightco.across_stack import rank_flips, run_study, taus, write_outputs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=ROOT / "outputs" / "mobilenet_energy")
    ap.add_argument("--others", type=int, default=3, help="trained trials off the front added to the study")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "stack_benchmark")
    ap.add_argument("--runtime", action="append", default=[],
                    help="also time an installed runtime plug-in (openvino, executorch, tvm, tvm-tuned); repeatable")
    args = ap.parse_args()
    run = args.run
    if not (run / "run.json").is_file():
        run = ROOT / "outputs" / "stack_default_run"
        print(f"{args.run} not found: creating a small default run in {run} "
              "(optimize recipes/mobilenet_energy.yaml --trials 8 --finalists 0)")
        subprocess.run([sys.executable, "-m", "flightco.cli", "optimize", str(ROOT / "recipes" / "mobilenet_energy.yaml"),
                        "--trials", "8", "--finalists", "0", "--out", str(run)], cwd=ROOT, check=True)
    t = time.perf_counter()
    table = run_study(run, others=args.others, extra_profiles=(ROOT / "hw_profiles" / "eyeriss.yaml",),
                      runtimes=tuple(args.runtime), images=args.images)
    head = write_outputs(table, args.out)
    print(f"{head['candidates']} candidates, {head['configs']} stack configurations, {time.perf_counter() - t:.0f} s; "
          f"tables and heatmaps in {args.out}")
    pd.set_option("display.width", 200)
    per, _ = taus(table)
    print(per.round(2).to_string(index=False))
    front = table[table["on_front"]]
    members = sorted(front["trial"].unique())
    print(f"\nfront: trials {members}")
    scope = "the front"
    if len(members) < 3:  # Kendall tau of 2 items is +-1 by construction: widen to every candidate
        front, scope = table, f"front + {table['trial'].nunique() - len(members)} other trained candidates " \
                              f"(the front has only {len(members)} members)"
    _, pair = taus(front)
    flips = rank_flips(table)
    print(f"candidates whose latency rank moves by >= 2 places (of {table['trial'].nunique()}):")
    print(flips.to_string(index=False) if len(flips) else "  none")
    off = pair.where(~np.eye(len(pair), dtype=bool)).stack()
    if len(off):
        a, b = off.idxmin()
        print(f"lowest tau over {scope}: {off.min():.2f} between '{a}' and '{b}'")
        print(f"rank_tau_min={off.min():.3f}")
    else:
        print("rank_tau_min=nan  (fewer than 3 front members: no ranking to compare)")


if __name__ == "__main__":
    main()
