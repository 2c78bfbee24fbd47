"""Benchmark: the Eyeriss-like profile against the Eyeriss simulator figures BitFusion's authors
compared with (results/eyeriss_results.csv of github.com/hsharma35/bitfusion: per layer, cycles
and energy per storage level in units of one MAC, 16-bit, batch 16).

Both sides are 16-bit; the reference is batch 16 on an array whose throughput differs from the
12x14 of hw_profiles/eyeriss.yaml, so figures are after one global scale per metric (as
`profile eval --calibrate`). Ranking (Spearman) and the spread after scaling are what this
checks. With --record the figures are stored in the profile's validation block.

    python benchmarks/eyeriss_reference.py [--record]

Headline (last line): Spearman of per-layer energy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# (network, layer, K, O, S, IC, OC, reference energy [ALU+DRAM+Buffer+Array+RF, MAC units], cycles)
# shapes from the simulator's benchmarks.py (ResNet-18 in its TWN width, as the Eyeriss rows are)
REF = [
    ("SVHN", "conv0", 3, 32, 1, 3, 64, 28311552 + 221504000 + 6645120 + 4924288 + 113246208, 147456),
    ("SVHN", "conv1", 3, 32, 1, 64, 64, 603979776 + 801177600 + 24035328 + 55689216 + 2415919104, 3145728),
    ("SVHN", "conv2", 3, 16, 1, 64, 128, 301989888 + 289177600 + 8675328 + 33803264 + 1226833920, 1277952),
    ("SVHN", "conv3", 3, 16, 1, 128, 128, 603979776 + 606208000 + 18186240 + 70860800 + 2453667840, 2555904),
    ("SVHN", "conv4", 3, 8, 1, 128, 256, 301989888 + 370278400 + 11108352 + 36724736 + 1226833920, 1277952),
    ("SVHN", "conv5", 3, 8, 1, 256, 256, 603979776 + 616038400 + 37355520 + 124928000 + 2453667840, 2555904),
    ("SVHN", "fc6", 1, 1, 1, 4096, 1024, 67108864 + 868352000 + 26050560 + 16613376 + 268435456, 262144),
    ("SVHN", "fc7", 1, 1, 1, 1024, 1024, 16777216 + 216268800 + 6488064 + 4194304 + 67108864, 65536),
    ("CIFAR10", "conv0", 3, 32, 1, 3, 128, 56623104 + 431910400 + 12957312 + 9332864 + 226492416, 294912),
    ("CIFAR10", "conv1", 3, 32, 1, 128, 128, 2415919104 + 2785280000 + 83558400 + 201785344 + 9663676416, 12582912),
    ("CIFAR10", "conv2", 3, 16, 1, 128, 256, 1207959552 + 1212416000 + 36372480 + 141721600 + 4907335680, 5111808),
    ("CIFAR10", "conv3", 3, 16, 1, 256, 256, 2415919104 + 2215116800 + 66453504 + 279150592 + 9814671360, 10223616),
    ("CIFAR10", "conv4", 3, 8, 1, 256, 512, 1207959552 + 1232076800 + 74711040 + 249856000 + 4907335680, 5111808),
    ("CIFAR10", "conv5", 3, 8, 1, 512, 512, 2415919104 + 2647654400 + 79429632 + 287358976 + 9814671360, 10223616),
    ("CIFAR10", "fc6", 1, 1, 1, 8192, 1024, 134217728 + 1733427200 + 52002816 + 33128448 + 536870912, 524288),
    ("LeNet-5", "conv0", 5, 32, 1, 1, 32, 13107200 + 109164800 + 3274944 + 4386752 + 52428800, 81920),
    ("LeNet-5", "conv1", 5, 16, 1, 32, 64, 209715200 + 144588800 + 8945664 + 35295232 + 865075200, 901120),
    ("LeNet-5", "fc1", 1, 1, 1, 4096, 512, 33554432 + 434176000 + 16121856 + 11403264 + 134217728, 131072),
    ("RESNET-18", "conv1", 7, 112, 2, 3, 64, 1888223232 + 3225843200 + 96775296 + 198526080 + 7552892928, 9633792),
    ("RESNET-18", "conv2_1_a", 1, 56, 1, 64, 64, 205520896 + 3224371200 + 96731136 + 26476544 + 822083584, 917504),
    ("RESNET-18", "conv2_1_b", 3, 56, 1, 64, 64, 1849688064 + 3516006400 + 105480192 + 129990656 + 7398752256, 11010048),
    ("RESNET-18", "conv3_1_a", 1, 28, 2, 64, 128, 102760448 + 978124800 + 29343744 + 23019520 + 411041792, 458752),
    ("RESNET-18", "conv3_1_b", 3, 28, 1, 128, 128, 1849688064 + 1530265600 + 45907968 + 167739392 + 7398752256, 11010048),
    ("RESNET-18", "conv3_2_a", 1, 28, 1, 128, 128, 205520896 + 1015808000 + 30474240 + 30212096 + 822083584, 917504),
    ("RESNET-18", "conv4_1_a", 1, 14, 2, 128, 256, 102760448 + 420249600 + 12607488 + 23093248 + 411041792, 458752),
    ("RESNET-18", "conv4_1_b", 3, 14, 1, 256, 256, 1849688064 + 1471283200 + 44138496 + 167372288 + 7514357760, 8945664),
    ("RESNET-18", "conv4_2_a", 1, 14, 1, 256, 256, 205520896 + 530841600 + 15925248 + 36896768 + 822083584, 917504),
    ("RESNET-18", "conv5_1_a", 1, 7, 2, 256, 512, 102760448 + 334233600 + 10027008 + 19136512 + 411041792, 458752),
    ("RESNET-18", "conv5_1_b", 3, 7, 1, 512, 512, 1849688064 + 1554841600 + 46645248 + 177853184 + 7514357760, 8945664),
    ("RESNET-18", "conv5_2_a", 1, 7, 1, 512, 512, 205520896 + 450560000 + 13516800 + 26230784 + 822083584, 917504),
    ("RNN", "fc", 1, 1, 1, 4096, 4096, 268435456 + 3394764800 + 101842944 + 66846720 + 1073741824, 1048576),
    ("LSTM", "fc", 1, 1, 1, 3600, 3600, 207360000 + 2638080000 + 113356800 + 57292800 + 840499200, 820800),
]
SOURCE = ("Eyeriss simulator figures in BitFusion's results/eyeriss_results.csv (github.com/hsharma35/bitfusion), "
          "16-bit, batch 16, after one global scale per metric")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    from flightco.hw.accuracy import accuracy_report, format_report, global_scale
    from flightco.hw.profile import load_profile
    from flightco.hw.workload import LayerWorkload, conv_out

    path = ROOT / "hw_profiles" / "eyeriss.yaml"
    ey = load_profile(path)
    lat, en, ref_lat, ref_en = [], [], [], []
    for net, name, K, O, S, IC, OC, e_ref, cycles in REF:
        if K == 1 and O == 1:
            lw = LayerWorkload(name, "linear", IC, OC, 1, 1, 1, 1, 1, 16, 16, 16)
        else:
            h = O * S  # input size whose padded k//2 convolution gives O outputs
            assert conv_out(h, K, S) == O
            lw = LayerWorkload(name, "conv", IC, OC, h, h, K, S, 1, 16, 16, 16)
        c = ey.layer_cost(lw)
        lat.append(c.latency_ms)
        en.append(c.energy_mj)
        ref_lat.append(cycles / 16)  # per input
        ref_en.append(e_ref / 16)
    report = {}
    for metric, p, t in (("latency_ms", lat, ref_lat), ("energy_mj", en, ref_en)):
        p, t = np.array(p), np.array(t)
        s = global_scale(p, t)
        report[metric] = {**accuracy_report(p * s, t), "scale": s}
        print(f"{metric}: {format_report(report[metric])} (scale {s:.4g})")
    if args.record:
        from flightco.hw.validation import record_validation, validation_entry

        record_validation(path, validation_entry(SOURCE, report, layers=len(REF), calibrated=True,
                                                 command="python benchmarks/eyeriss_reference.py --record"))
        print(f"recorded in {path}")
    print(f"eyeriss_reference_energy_spearman={report['energy_mj']['spearman']:.3f}")


if __name__ == "__main__":
    main()
