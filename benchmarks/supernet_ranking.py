"""Does the supernet rank candidates the way stand-alone training does?

Weight-sharing rankings are often poor ("Evaluating the Search Phase of NAS", ICLR 2020), so this
measures it: for ``--genomes`` random networks of the default space (architecture and bits),
Kendall's tau between the stand-alone trained test accuracy and

(a) the per-trial strategy's proxy (``--proxy-epochs`` from scratch, validation accuracy), and
(b) the supernet's inherited validation accuracy, for each recalibration size in ``--calib``,

with bootstrap 95 % confidence intervals over the genomes (n = 15 gives a null std of tau ~ 0.19).
The last line is ``kendall_tau_inherited=<tau at the default recalibration size>``.

    python benchmarks/supernet_ranking.py                    # Fashion-MNIST, 5,000 training images
    python benchmarks/supernet_ranking.py --dataset mnist5k --genomes 6 --supernet-epochs 1 --final-epochs 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import kendalltau


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
    ap.add_argument("--proxy-epochs", type=float, default=1)
    ap.add_argument("--final-epochs", type=float, default=5)
    ap.add_argument("--calib", default="64,256,1024", help="recalibration sizes to compare (the middle one is the default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from flightco.data import load_dataset
    from flightco.measure import sample_genomes
    from flightco.nn.mobilenet import build_model
    from flightco.nn.supernet import Supernet, SupernetConfig, extract, train_supernet
    from flightco.space import SearchSpace
    from flightco.train import TrainConfig, evaluate, train_qat

    space = SearchSpace.load("search_spaces/mobilenet.yaml")
    ds = load_dataset(args.dataset, limit_train=args.limit_train, val_fraction=0.02 if args.dataset == "fashion_mnist" else 0.1,
                      seed=args.seed)
    print(f"{args.dataset}: {len(ds.train)} train / {len(ds.val)} val / {len(ds.test)} test images")
    genomes = sample_genomes(space, args.genomes, seed=args.seed, in_channels=ds.in_channels,
                             resolution=ds.resolution, num_classes=ds.num_classes)

    t = time.perf_counter()
    net = Supernet(space, ds.in_channels, ds.resolution, ds.num_classes)
    info = train_supernet(net, ds.train.x, ds.train.y, SupernetConfig(epochs=args.supernet_epochs, seed=args.seed))
    print(f"supernet: {info['steps']} steps in {time.perf_counter() - t:.0f} s")

    sizes = [int(c) for c in args.calib.split(",")]
    g = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(ds.train), generator=g)
    inherited = {c: [] for c in sizes}
    proxy, standalone = [], []
    for i, genome in enumerate(genomes):
        for c in sizes:
            inherited[c].append(evaluate(extract(net, genome, ds.train.x[order[:c]]), ds.val))
        torch.manual_seed(i)
        m = build_model(genome)
        train_qat(m, ds.train, TrainConfig(epochs=args.proxy_epochs, batch_size=128, lr=5e-3, seed=i), val=ds.val)
        proxy.append(evaluate(m, ds.val))
        torch.manual_seed(i)
        m = build_model(genome)
        train_qat(m, ds.train, TrainConfig(epochs=args.final_epochs, batch_size=64, lr=3e-3, seed=i))
        standalone.append(evaluate(m, ds.test))
        print(f"genome {i:2d} {genome.bits_summary():28s} stand-alone test {standalone[-1]:.3f}  proxy {proxy[-1]:.3f}  "
              + "  ".join(f"inherited@{c} {inherited[c][-1]:.3f}" for c in sizes), flush=True)

    truth = np.array(standalone)
    rows = [("proxy (%g epoch from scratch)" % args.proxy_epochs, np.array(proxy))]
    rows += [(f"supernet, inherited, recalibrated on {c}", np.array(inherited[c])) for c in sizes]
    print(f"\nKendall tau against stand-alone test accuracy ({len(truth)} genomes; bootstrap 95 % CI):")
    taus = {}
    for name, values in rows:
        tau = float(kendalltau(truth, values).statistic)
        lo, hi = bootstrap_tau(truth, values)
        taus[name] = tau
        print(f"  {name:45s} tau {tau:+.3f}  [{lo:+.3f}, {hi:+.3f}]")
    default = sizes[len(sizes) // 2]
    print(f"kendall_tau_inherited={taus[f'supernet, inherited, recalibrated on {default}']:.3f}")


if __name__ == "__main__":
    main()
