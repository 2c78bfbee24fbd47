"""Benchmark: the BitFusion profile against the per-layer figures its authors' simulator published.

Compares hw_profiles/bitfusion.yaml's dataflow model with every layer of
results/bitfusion-eyeriss-sim-sweep.csv (github.com/hsharma35/bitfusion; 48 conv/FC layers of
SVHN, CIFAR-10, LeNet-5, VGG-7, ResNet-18-WRPN, RNN, LSTM at 1-8 bits, batch 16): cycles and
energy (the simulator's Stats.get_energy on its access counts). With --record the figures are
stored in the profile's validation block.

    python benchmarks/bitfusion_reference.py [--record]

Headline (last line): share of layers whose cycles agree within ±10%.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true", help="store the figures in hw_profiles/bitfusion.yaml")
    args = ap.parse_args()

    from flightco.hw.accuracy import accuracy_report, format_report
    from flightco.hw.bitfusion_model import _layer_stats
    from flightco.hw.bitfusion_reference import LAYERS, REFERENCE_SOURCE, reference_energy_pj
    from flightco.hw.profile import load_profile

    path = ROOT / "hw_profiles" / "bitfusion.yaml"
    bf = load_profile(path)
    cyc, ref_cyc, en, ref_en = [], [], [], []
    for row in LAYERS:
        net, name, K, O, S, IC, OC, ib, wb, im2col = row[:10]
        st = _layer_stats(bf.model.cfg, False, im2col, IC, OC, O, O, K, S, ib, wb)
        cyc.append(st.cycles)
        ref_cyc.append(row[10])
        en.append(st.energy_pj)
        ref_en.append(reference_energy_pj(row, bf.spec.energy))
    report = {"latency_ms": accuracy_report(np.array(cyc), np.array(ref_cyc)),
              "energy_mj": accuracy_report(np.array(en), np.array(ref_en))}
    for metric, r in report.items():
        print(f"{metric} (cycles / pJ per layer): {format_report(r)}")
    if args.record:
        from flightco.hw.validation import record_validation, validation_entry

        record_validation(path, validation_entry(REFERENCE_SOURCE, report, layers=len(LAYERS), calibrated=False,
                                                 command="python benchmarks/bitfusion_reference.py --record"))
        print(f"recorded in {path}")
    print(f"bitfusion_reference_acc10={report['latency_ms']['acc10']:.3f}")


if __name__ == "__main__":
    main()
