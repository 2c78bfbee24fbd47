"""Do two supernets score the same networks alike? The cost bias, paired, on stand-alone truth.

``search_speed.py`` trains every finalist it picks stand-alone with its final budget and scores it
on the test split; its JSON keeps those genomes and accuracies. This script scores the union of
those genomes (from one or more JSONs of runs with the same data, e.g. the same ``--seed`` with
two supernet settings) on each supernet checkpoint given, exactly as the search scores a subnet
(extraction with ``--calibration`` images, ``--finetune-steps`` QAT steps, the validation split),
and compares each supernet's score with the stand-alone truth on the SAME genomes:

* Kendall tau with the truth (bootstrap 95 % interval over genomes);
* the least-squares slope of each signal against ln(energy) on each profile in ``--profiles``
  (the truth's beside it): a score that falls faster towards cheap networks than the truth
  stretches the front and mis-picks finalists (README, "The cost bias");
* the same over the cheaper half of the genomes (by the first profile's energy), where the
  search's cheap finalist is chosen;
* which property carries the bias: the least-squares coefficients of the score's error (score
  minus truth) on the genomes' standardized log MACs and MAC-weighted weight and activation
  bit-widths, and the share of that error they explain (R²).

The genomes are the finalists of the searches compared, so they favour what those searches
found; both supernets are judged on the same set.

    python benchmarks/supernet_cost_bias.py --json A/search_speed.json B/search_speed.json \\
        --checkpoint choices=/tmp/flightco-speed-X/runs/bitfusion_supernet/supernet/KEY.pt \\
        --checkpoint spread=/tmp/flightco-speed-Y/runs/bitfusion_supernet/supernet/KEY.pt

The last line is ``excess_slope_<label>=<score slope - truth slope>`` per checkpoint, on the
first profile.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from final_budget import known_accuracies, load_benchmark_data
from supernet_ranking import bootstrap_tau

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, nargs="+", required=True, help="search_speed.json files of runs on the same data")
    ap.add_argument("--checkpoint", action="append", required=True, metavar="LABEL=PATH",
                    help="a supernet checkpoint (<run>/supernet/<key>.pt) and its label; repeat to compare")
    ap.add_argument("--profiles", default="bitfusion.yaml,eyeriss.yaml", help="hw_profiles/ files whose energy the slopes use")
    ap.add_argument("--calibration", type=int, default=256)
    ap.add_argument("--finetune-steps", type=int, default=10)
    ap.add_argument("--finetune-lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from flightco.accuracy_predictor import subnet_features
    from flightco.hw.profile import load_profile
    from flightco.metrics import genome_metrics
    from flightco.nn.supernet import Supernet, extract, train_steps
    from flightco.space import Genome, SearchSpace
    from flightco.train import evaluate

    reports = [json.loads(p.read_text()) for p in args.json]
    settings = reports[0]["settings"]
    for path, report in zip(args.json[1:], reports[1:]):
        s = report["settings"]
        if (s["dataset"], s["limit_train"], s["seed"], s["final_epochs"]) != (
                settings["dataset"], settings["limit_train"], settings["seed"], settings["final_epochs"]):
            raise SystemExit(f"{path}: another dataset, subset, seed or final budget than {args.json[0]}")
    truth_by_key: dict[str, float] = {}
    for report in reports:
        truth_by_key.update(known_accuracies(report))
    genomes = [Genome.from_dict(json.loads(k)) for k in sorted(truth_by_key)]
    truth = np.array([truth_by_key[k] for k in sorted(truth_by_key)])
    data = load_benchmark_data(settings["dataset"], settings["limit_train"], settings["seed"])
    space = SearchSpace.load(ROOT / "search_spaces" / "mobilenet.yaml")
    profiles = [load_profile(ROOT / "hw_profiles" / name) for name in args.profiles.split(",")]
    log_energy = {p.name: np.log([genome_metrics(g, [p])["energy_mj"] for g in genomes]) for p in profiles}
    first = profiles[0].name
    cheap = log_energy[first] <= np.median(log_energy[first])
    print(f"{len(genomes)} genomes (the finalists of {len(reports)} runs), stand-alone test accuracy "
          f"{truth.min():.3f}-{truth.max():.3f}; {first} energy {np.exp(log_energy[first]).min():.3g}-"
          f"{np.exp(log_energy[first]).max():.3g} mJ")

    features = [subnet_features({}, genome) for genome in genomes]
    dims = ("log_macs", "mac_weighted_w_bits", "mac_weighted_a_bits")
    design = np.array([[f[d] for d in dims] for f in features])
    design = np.c_[np.ones(len(genomes)), (design - design.mean(0)) / np.where(design.std(0) > 0, design.std(0), 1)]

    def error_by_property(scores: np.ndarray) -> str:
        error = scores - truth
        coef, *_ = np.linalg.lstsq(design, error, rcond=None)
        explained = 1 - float(((error - design @ coef) ** 2).sum() / max(((error - error.mean()) ** 2).sum(), 1e-12))
        return ", ".join(f"{d} {c:+.3f}" for d, c in zip(dims, coef[1:])) + f" per standard deviation (R² {explained:.2f})"

    def slopes(values: np.ndarray, mask: np.ndarray | None = None) -> str:
        m = np.ones(len(values), bool) if mask is None else mask
        return ", ".join(f"{name} {np.polyfit(le[m], values[m], 1)[0]:+.3f}" for name, le in log_energy.items())

    print(f"  {'stand-alone truth':28s} slope per ln(energy): {slopes(truth)}; cheaper half: {slopes(truth, cheap)}")
    g = torch.Generator().manual_seed(settings["seed"])
    calibration = data.train.x[torch.randperm(len(data.train), generator=g)[:args.calibration]]
    headline = []
    truth_slope = float(np.polyfit(log_energy[first], truth, 1)[0])
    for spec in args.checkpoint:
        label, _, path = spec.partition("=")
        if not path or not Path(path).is_file():
            raise SystemExit(f"--checkpoint: expected LABEL=PATH to an existing checkpoint, got {spec!r}")
        net = Supernet(space, data.in_channels, data.resolution, data.num_classes)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["state_dict"])
        start = time.perf_counter()
        scores = []
        for genome in genomes:
            model = extract(net, genome, calibration)
            if args.finetune_steps:
                train_steps(model, data.train, args.finetune_steps, args.finetune_lr, settings["seed"])
            scores.append(evaluate(model, data.val))
        scores = np.array(scores)
        tau = float(kendalltau(scores, truth).statistic)
        low, high = bootstrap_tau(scores, truth)
        tau_cheap = float(kendalltau(scores[cheap], truth[cheap]).statistic)
        print(f"  {label:28s} Kendall tau {tau:.3f} [{low:.3f}, {high:.3f}] (cheaper half {tau_cheap:.3f}); "
              f"score {scores.min():.3f}-{scores.max():.3f}; slope per ln(energy): {slopes(scores)}; "
              f"cheaper half: {slopes(scores, cheap)}; {(time.perf_counter() - start) / len(genomes):.2f} s per genome",
              flush=True)
        print(f"  {'':28s} its error (score - truth) by property: {error_by_property(scores)}", flush=True)
        excess = float(np.polyfit(log_energy[first], scores, 1)[0]) - truth_slope
        headline.append(f"excess_slope_{label}={excess:.3f}" if math.isfinite(excess) else f"excess_slope_{label}=nan")
    print(" ".join(headline))


if __name__ == "__main__":
    main()
