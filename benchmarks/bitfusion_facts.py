"""The BitFusion profile against the facts known about its simulator, on layers of the search space.

Prints, over distinct conv/dwconv/linear shapes sampled from ``search_spaces/mobilenet.yaml``:
the median latency per MAC of depthwise layers over that of 1x1 layers (BitFusion's simulator:
10-20x), the median W4A4/W8A8 latency of 1x1 layers (~0.84: memory-bound), whether 6-bit costs
what 8-bit costs, and the warm time to price a whole network. Headline figure last.

    python benchmarks/bitfusion_facts.py [--layers 150]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from flightco.hw.profile import load_profile
    from flightco.hw.workload import workload
    from flightco.measure import sample_genomes, sample_layers
    from flightco.space import SearchSpace

    prof = load_profile(ROOT / "hw_profiles" / "bitfusion.yaml")
    space = SearchSpace.load(ROOT / "search_spaces" / "mobilenet.yaml")
    layers = sample_layers(space, args.layers, args.seed)
    t0 = time.perf_counter()

    def lat(lw, b):
        return prof.layer_cost(lw._replace(w_bits=b, a_bits=b, out_bits=b)).latency_ms

    per_mac = {"dwconv": [], "pw": [], "conv3": []}
    ratio44, ratio66 = [], []
    for lw in layers:
        if lw.op == "dwconv":
            per_mac["dwconv"].append(lat(lw, 8) / lw.macs)
        elif lw.op == "conv" and lw.k == 1:
            per_mac["pw"].append(lat(lw, 8) / lw.macs)
            ratio44.append(lat(lw, 4) / lat(lw, 8))
        elif lw.op == "conv":
            per_mac["conv3"].append(lat(lw, 8) / lw.macs)
        ratio66.append(lat(lw, 6) / lat(lw, 8))
    cold = (time.perf_counter() - t0) / (len(layers) * 3)
    genomes = sample_genomes(space, 20, args.seed)
    nets = [workload(g) for g in genomes]
    for n in nets:
        prof.cost(n)  # warm the per-shape cache
    t0 = time.perf_counter()
    reps = 20
    for _ in range(reps):
        for n in nets:
            prof.cost(n)
    warm_ms = (time.perf_counter() - t0) / (reps * len(nets)) * 1e3
    dw_pw = statistics.median(per_mac["dwconv"]) / statistics.median(per_mac["pw"])
    print(f"shapes: {len(per_mac['dwconv'])} depthwise, {len(per_mac['pw'])} 1x1, {len(per_mac['conv3'])} kxk dense")
    print(f"cold pricing of a new shape: {cold * 1e3:.1f} ms")
    print(f"warm pricing of a whole network: {warm_ms:.3f} ms")
    print(f"median W4A4/W8A8 latency of 1x1 layers: {statistics.median(ratio44):.3f}")
    print(f"max |W6A6/W8A8 - 1| latency: {max(abs(r - 1) for r in ratio66):.3g}")
    print(f"dw_over_pw_latency_per_mac={dw_pw:.2f}")


if __name__ == "__main__":
    main()
