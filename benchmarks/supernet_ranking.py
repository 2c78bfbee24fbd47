"""Does the supernet rank candidates the way stand-alone training does?

Weight-sharing rankings are often poor ("Evaluating the Search Phase of NAS", ICLR 2020), so this
measures it: for ``--genomes`` random networks of the default space (architecture and bits),
Kendall's tau between the stand-alone trained test accuracy and

(a) the per-trial strategy's proxy (``--proxy-epochs`` from scratch, validation accuracy), and
(b) the supernet's inherited validation accuracy, for each recalibration size in ``--calib``,
(c) the inherited subnet after ``--finetune-steps`` QAT steps at its own bits, beside the same
    number of steps from scratch (what that cost buys without the supernet),

with bootstrap 95 % confidence intervals over the genomes (n = 15 gives a null std of tau ~ 0.19),
and each signal's cost bias: its least-squares slope against ln(BitFusion energy) beside the
truth's (a signal that falls faster towards cheap networks than the truth stretches a front).

The stand-alone "truth" is the mean test accuracy of trainings at ``--truth-seeds`` (seed
``s + i`` for genome ``i``), which the proxy, the from-scratch rows and the supernet never use:
a truth trained from the proxy's own initialisation and data order (``--truth-seeds 0``, this
benchmark's rule until Dec 7) shares its noise with the proxy and flatters it. With two or more
truth seeds the tau between two stand-alone runs of the same genomes is printed too: the noise
ceiling that no cheap signal can beat. The last line is ``kendall_tau_inherited=<tau at the
default recalibration size>``.

    python benchmarks/supernet_ranking.py                    # Fashion-MNIST, 5,000 training images
    python benchmarks/supernet_ranking.py --dataset mnist5k --genomes 6 --supernet-epochs 1 --final-epochs 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from flightco.nn.supernet import SupernetConfig

ROOT = Path(__file__).resolve().parents[1]


def bootstrap_tau(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(n):
        idx = rng.integers(0, len(a), len(a))
        if np.ptp(a[idx]) > 0 and np.ptp(b[idx]) > 0:
            taus.append(kendalltau(a[idx], b[idx]).statistic)
    return float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--limit-train", type=int, default=5000)
    ap.add_argument("--genomes", type=int, default=15)
    ap.add_argument("--supernet-epochs", type=float, default=6)
    ap.add_argument("--supernet-batch", type=int, default=64)
    ap.add_argument("--random-subnets", type=int, default=SupernetConfig.random_subnets)
    ap.add_argument("--children-bits", choices=("top", "random"), default=SupernetConfig.children_bits,
                    help="bit-widths of the sandwich rule's children (see SupernetConfig.children_bits)")
    ap.add_argument("--children-sizes", choices=("choices", "spread"), default=SupernetConfig.children_sizes,
                    help="how the sandwich rule's random children are drawn (see SupernetConfig.children_sizes)")
    ap.add_argument("--bit-warmup", type=float, default=SupernetConfig.bit_warmup,
                    help="--children-bits random: share of the steps before the children use the lowest bit-widths")
    ap.add_argument("--proxy-epochs", type=float, default=1)
    ap.add_argument("--final-epochs", type=float, default=5)
    ap.add_argument("--truth-seeds", default="1000,2000",
                    help="stand-alone trainings per genome, genome i at seed s+i for each s (0: the proxy's own seed)")
    ap.add_argument("--calib", default="64,256,1024", help="recalibration sizes to compare (the middle one is the default)")
    ap.add_argument("--finetune-steps", default="25,100",
                    help="also score each subnet after this many QAT steps from its inherited weights (at its own "
                         "bits), and the same network after as many steps from scratch (the same cost)")
    ap.add_argument("--scratch-steps", default=None,
                    help="QAT step counts of the from-scratch rows (default: --finetune-steps); with --reuse-standalone, "
                         "the cached ones, so fine-tuning step counts can be added without retraining the truth")
    ap.add_argument("--finetune-lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="genomes, data split and (unless --supernet-seed) the supernet")
    ap.add_argument("--supernet-seed", type=int, default=None,
                    help="train the supernet at another seed, same genomes and data (with --reuse-standalone: its spread)")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "supernet_ranking")
    ap.add_argument("--reuse-standalone", action="store_true",
                    help="take the proxy and stand-alone accuracies from an earlier run with the same data, genomes and "
                         "budgets (its standalone.json) and only train and score the supernet")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from flightco.data import load_dataset
    from flightco.measure import sample_genomes
    from flightco.nn.mobilenet import build_model
    from flightco.nn.supernet import Supernet, extract, train_steps, train_supernet
    from flightco.space import SearchSpace
    from flightco.train import TrainConfig, evaluate, train_qat

    space = SearchSpace.load("search_spaces/mobilenet.yaml")
    ds = load_dataset(args.dataset, limit_train=args.limit_train, val_fraction=0.02 if args.dataset == "fashion_mnist" else 0.1,
                      seed=args.seed)
    print(f"{args.dataset}: {len(ds.train)} train / {len(ds.val)} val / {len(ds.test)} test images")
    genomes = sample_genomes(space, args.genomes, seed=args.seed, in_channels=ds.in_channels,
                             resolution=ds.resolution, num_classes=ds.num_classes)
    tune_steps = [int(x) for x in args.finetune_steps.split(",") if x]
    scratch_steps = [int(x) for x in (args.scratch_steps or args.finetune_steps).split(",") if x]
    truth_seeds = [int(x) for x in args.truth_seeds.split(",") if x]
    truth_key = {"dataset": args.dataset, "limit_train": args.limit_train, "genomes": [g.bits_summary() for g in genomes],
                 "proxy_epochs": args.proxy_epochs, "final_epochs": args.final_epochs, "seed": args.seed,
                 "scratch_steps": scratch_steps, "truth_seeds": truth_seeds}
    cache = args.out / "standalone.json"
    cached = json.loads(cache.read_text()) if args.reuse_standalone and cache.is_file() else None
    if args.reuse_standalone and (cached is None or cached.get("key") != truth_key):
        raise SystemExit(f"--reuse-standalone: {cache} is missing or was measured with other data, genomes or budgets")

    cfg = SupernetConfig(epochs=args.supernet_epochs, batch_size=args.supernet_batch,
                         random_subnets=args.random_subnets, children_bits=args.children_bits, children_sizes=args.children_sizes,
                         bit_warmup=args.bit_warmup, seed=args.seed if args.supernet_seed is None else args.supernet_seed)
    t = time.perf_counter()
    net = Supernet(space, ds.in_channels, ds.resolution, ds.num_classes)
    info = train_supernet(net, ds.train.x, ds.train.y, cfg)
    print(f"supernet ({cfg}): {info['steps']} steps in {time.perf_counter() - t:.0f} s")

    sizes = [int(c) for c in args.calib.split(",")]
    g = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(ds.train), generator=g)
    inherited = {c: [] for c in sizes}
    inherit_s = {c: 0.0 for c in sizes}
    default = sizes[len(sizes) // 2]
    tuned: dict[int, list[float]] = {k: [] for k in tune_steps}
    tune_s: dict[int, float] = {k: 0.0 for k in tune_steps}
    proxy, runs = (cached["proxy"], cached["standalone_runs"]) if cached else ([], [])
    scratch = {int(k): v for k, v in cached["scratch"].items()} if cached else {k: [] for k in scratch_steps}
    for i, genome in enumerate(genomes):
        for c in sizes:
            t0 = time.perf_counter()
            inherited[c].append(evaluate(extract(net, genome, ds.train.x[order[:c]]), ds.val))
            inherit_s[c] += time.perf_counter() - t0
        for k in tune_steps:  # inherited weights, then k QAT steps at the subnet's own bits
            t0 = time.perf_counter()
            m = extract(net, genome, ds.train.x[order[:default]])
            train_steps(m, ds.train, k, args.finetune_lr, seed=i)
            tuned[k].append(evaluate(m, ds.val))
            tune_s[k] += time.perf_counter() - t0
        for k in scratch_steps if not cached else ():  # what the fine-tune's cost buys without the supernet
            torch.manual_seed(i)
            m = build_model(genome)
            train_steps(m, ds.train, k, 3e-3, seed=i)
            scratch[k].append(evaluate(m, ds.val))
        if not cached:
            torch.manual_seed(i)
            m = build_model(genome)
            train_qat(m, ds.train, TrainConfig(epochs=args.proxy_epochs, batch_size=128, lr=5e-3, seed=i), val=ds.val)
            proxy.append(evaluate(m, ds.val))
            runs.append([])
            for s in truth_seeds:
                torch.manual_seed(s + i)
                m = build_model(genome)
                train_qat(m, ds.train, TrainConfig(epochs=args.final_epochs, batch_size=64, lr=3e-3, seed=s + i))
                runs[i].append(evaluate(m, ds.test))
        print(f"genome {i:2d} {genome.bits_summary():28s} stand-alone test {np.mean(runs[i]):.3f} "
              f"({', '.join(f'{a:.3f}' for a in runs[i])})  proxy {proxy[i]:.3f}  "
              + "  ".join(f"inherited@{c} {inherited[c][-1]:.3f}" for c in sizes)
              + "".join(f"  tuned@{k} {tuned[k][-1]:.3f}" for k in tune_steps)
              + "".join(f"  scratch@{k} {scratch[k][i]:.3f}" for k in scratch_steps), flush=True)
    if not cached:
        args.out.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": truth_key, "proxy": proxy, "standalone_runs": runs,
                                     "scratch": {str(k): v for k, v in scratch.items()}}, indent=1))

    truth = np.array(runs).mean(axis=1)
    rows = [("proxy (%g epoch from scratch)" % args.proxy_epochs, np.array(proxy))]
    rows += [(f"supernet, inherited, recalibrated on {c} ({inherit_s[c] / len(genomes):.1f} s each)", np.array(inherited[c]))
             for c in sizes]
    rows += [(f"inherited + {k} QAT steps ({tune_s[k] / len(genomes):.1f} s each)", np.array(tuned[k])) for k in tune_steps]
    rows += [(f"{k} QAT steps from scratch", np.array(scratch[k])) for k in scratch_steps]
    print(f"\nKendall tau against stand-alone test accuracy (mean of seeds {truth_seeds} + genome index; "
          f"{len(truth)} genomes, spanning {truth.min():.3f}-{truth.max():.3f}; bootstrap 95 % CI):")
    if len(truth_seeds) > 1:  # two stand-alone runs of the same genomes: what a perfect cheap signal could reach
        a, b = np.array(runs)[:, 0], np.array(runs)[:, 1]
        lo, hi = bootstrap_tau(a, b)
        print(f"  {'noise ceiling: stand-alone seed %d vs seed %d' % tuple(truth_seeds[:2]):50s} "
              f"tau {float(kendalltau(a, b).statistic):+.3f}  [{lo:+.3f}, {hi:+.3f}]")
    taus = {}
    for name, values in rows:
        tau = float(kendalltau(truth, values).statistic)
        lo, hi = bootstrap_tau(truth, values)
        taus[name] = tau
        print(f"  {name:50s} tau {tau:+.3f}  [{lo:+.3f}, {hi:+.3f}]")
    # cost bias: how steeply each signal falls with the network's cost, against how steeply the
    # truth does. A signal that drops faster than the truth towards cheap networks (a weight-sharing
    # supernet whose small subnets are under-trained) makes a front look more expensive to shrink
    # than it is, which a finalist rule comparing accuracies across costs pays for.
    from flightco.hw.profile import load_profile
    from flightco.metrics import genome_metrics

    bitfusion = load_profile(ROOT / "hw_profiles" / "bitfusion.yaml")
    log_energy = np.log([genome_metrics(g, [bitfusion])["energy_mj"] for g in genomes])
    truth_slope = float(np.polyfit(log_energy, truth, 1)[0])
    print(f"\ncost bias: least-squares slope of accuracy per ln(BitFusion energy) over the {len(genomes)} genomes "
          f"(energies {np.exp(log_energy).min():.3g}-{np.exp(log_energy).max():.3g} mJ)")
    print(f"  {'stand-alone truth':50s} slope {truth_slope:+.4f}")
    for name, values in rows:
        slope = float(np.polyfit(log_energy, values, 1)[0])
        print(f"  {name:50s} slope {slope:+.4f}  (signal - truth: {slope - truth_slope:+.4f})")
    key = next(name for name in taus if name.startswith(f"supernet, inherited, recalibrated on {default} "))
    print(f"kendall_tau_inherited={taus[key]:.3f}")


if __name__ == "__main__":
    main()
