"""Which whole-network correction turns summed layer-table predictions into network latency?

Offline, on measurements saved by ``benchmarks/ort_profile.py --save-table T.csv --save-networks
N.jsonl``: a learned profile is fitted on the layer table, each network is priced kernel by
kernel, and several network-level models are fitted on the 20 calibration networks (and on 200
random draws of 20 networks from all of them) and scored on the rest, within ±10 %. This is how
the per-kernel term of ``flightco profile calibrate`` was chosen (README, "What was left was the
predictor").

    python benchmarks/network_corrections.py T.csv N.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def features(table: Path, networks: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per network: kernel predictions by kind (dw, pw, dense, linear), element-wise ops, input +
    output elements of its kernels (millions), kernel count; measured ms less the call overhead."""
    from ort_profile import learned

    import csv

    from flightco.hw.table import read_table
    from flightco.hw.workload import workload
    from flightco.space import Genome

    rows = read_table(table)
    with open(table, newline="") as fh:
        meta = next(csv.DictReader(fh))  # the runtime's constants are columns of every row
    ns, oh = float(meta["elementwise_ns_per_element"]), float(meta["session_overhead_ms"])
    prof = learned(rows, ns, oh)
    recs = [json.loads(line) for line in networks.read_text().splitlines() if line.strip()]
    out, measured = [], []
    for r in recs:
        layers = list(workload(Genome.from_dict(r["genome"])))
        by_kind = dict.fromkeys(("dw", "pw", "dense", "linear"), 0.0)
        elementwise = io = count = 0.0
        for layer, cost in zip(layers, prof.layer_costs(layers)):
            if layer.op in ("add", "pool"):
                elementwise += cost.latency_ms
                continue
            kind = "linear" if layer.op == "linear" else "dw" if layer.groups > 1 else "pw" if layer.k == 1 else "dense"
            by_kind[kind] += cost.latency_ms
            count += 1
            io += (layer.cin + layer.cout) if layer.op == "linear" else (
                layer.cin * layer.h * layer.w + layer.cout * layer.out_h * layer.out_w)
        out.append([*by_kind.values(), elementwise, io * 1e-6, count])
        measured.append(r["latency_ms"] - oh)
    return np.array(out), np.array(measured), np.array([r["set"] == "calibration" for r in recs]), oh


def fit(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares on relative error, as flightco's corrections are fitted."""
    w, *_ = np.linalg.lstsq(A / y[:, None], np.ones_like(y), rcond=None)
    return w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", type=Path)
    ap.add_argument("networks", type=Path)
    ap.add_argument("--draws", type=int, default=200)
    args = ap.parse_args()
    F, m, calib, oh = features(args.table, args.networks)
    one = np.ones(len(m))
    kernels = F[:, :4].sum(1)
    models = {
        "scale x (kernels + element-wise) + offset": np.stack([kernels + F[:, 4], one], 1),
        "separate scales for kernels and element-wise + offset": np.stack([kernels, F[:, 4], one], 1),
        "+ per-element term": np.stack([kernels + F[:, 4], F[:, 5], one], 1),
        "one scale per kernel kind + element-wise + offset": np.concatenate([F[:, :5], one[:, None]], 1),
        "+ per-kernel term": np.stack([kernels + F[:, 4], F[:, 6], one], 1),
        "+ per-element term + per-kernel term": np.stack([kernels + F[:, 4], F[:, 5], F[:, 6], one], 1),
    }
    within = lambda p, y: float(np.mean(np.abs(p - y) / (y + oh) <= 0.10))  # noqa: E731 - relative to the full latency
    rng = np.random.default_rng(0)
    print(f"{len(m)} networks ({calib.sum()} calibration), median {np.median(m + oh):.3f} ms")
    best = 0.0
    for name, A in models.items():
        w = fit(A[calib], m[calib])
        given = within(A[~calib] @ w, m[~calib])
        draws = []
        for _ in range(args.draws):
            idx = rng.permutation(len(m))
            ww = fit(A[idx[:20]], m[idx[:20]])
            draws.append(within(A[idx[20:]] @ ww, m[idx[20:]]))
        print(f"{name:55s} {100 * given:5.1f}% on the validation networks; random 20-network fits: "
              f"mean {100 * np.mean(draws):.1f}%, 10th percentile {100 * np.percentile(draws, 10):.1f}%")
        if name == "+ per-kernel term":
            best = given
    print(f"per_kernel_acc10={best:.3f}")


if __name__ == "__main__":
    main()
