"""Per-trial training vs the weight-sharing supernet, on the same wall-clock budget.

For each hardware target (the BitFusion-like profile, then the Eyeriss-like one) both strategies
search the default space on Fashion-MNIST (a ``--limit-train`` subset) for ``--budget`` seconds
each (``flightco optimize --timeout``; the supernet's training is inside its budget on the first
target, and reused from the first run's folder on the second). At ``--checkpoints`` points of each
run's wall time, the front found so far gives its finalists (the most accurate front member and
the cheapest within 10 points, as ``optimize`` picks them), each trained stand-alone with the SAME
final budget and scored on the test split (a genome is trained once and cached); the hypervolume of
(test accuracy, energy) against the recipe's fixed reference point is taken at each checkpoint.

Reported: per target and strategy, hypervolume over wall time; the wall time the supernet needs
to reach the per-trial strategy's final hypervolume (``inf`` if never). The last line is
``supernet_time_fraction=<f> reuse_time_fraction=<g>``: supernet time / per-trial time on the
first target (supernet training included) and on the second (supernet reused).

    python benchmarks/search_speed.py                  # defaults: about 45 minutes on 2 cores
    python benchmarks/search_speed.py --quick          # a few minutes, mnist5k: checks the script
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_search(folder: Path, name: str, profile: str, strategy: str, args: argparse.Namespace) -> tuple[Path, float]:
    recipe = {
        "name": name,
        "dataset": {"name": args.dataset, "limit_train": args.limit_train,
                    "val_fraction": 0.02 if args.dataset == "fashion_mnist" else 0.1},
        "search_space": str(ROOT / "search_spaces" / "mobilenet.yaml"),
        "hardware": [str(ROOT / "hw_profiles" / profile)],
        "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "energy_mj", "direction": "minimize"}],
        "constraints": ["memory_kb <= 96"],
        "training": {"proxy": {"epochs": args.proxy_epochs, "batch_size": 128, "lr": 0.005},
                     "final": {"epochs": args.final_epochs, "batch_size": 64, "lr": 0.003}, "finalists": 0},
        "search": {"trials": 100000, "timeout_s": args.budget, "sampler": "nsga2", "population_size": 8,
                   "seed": args.seed, "strategy": strategy,
                   "supernet": {"epochs": args.supernet_epochs, "batch_size": 64, "calibration_images": 256}},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = folder / "runs" / name
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flightco.cli", "optimize", str(path), "--out", str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: optimize failed: {proc.stderr.strip()}")
    return out, time.perf_counter() - start


def checkpoint_fronts(run: Path, checkpoints: int) -> tuple[list[tuple[float, list[dict]]], dict, float]:
    """(seconds, finalists' genome and energy) at evenly spaced points of the search's wall time
    (from its first trial's start, so the supernet's training counts), the reference point, and
    the search's whole wall time."""
    from optuna.study._multi_objective import _get_pareto_front_trials_by_trials
    from optuna.trial import TrialState

    from flightco.runs import load_study

    _, study = load_study(run)
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "proxy" in t.user_attrs]
    start = min(t.datetime_start for t in study.trials if t.datetime_start)
    wall = max((t.datetime_complete - start).total_seconds() for t in study.trials if t.datetime_complete)
    out = []
    for k in range(1, checkpoints + 1):
        at = wall * k / checkpoints
        done = [t for t in trials if (t.datetime_complete - start).total_seconds() <= at]
        front = _get_pareto_front_trials_by_trials(done, study.directions) if done else []
        best = max(front, key=lambda t: t.values[0]) if front else None
        near = sorted((t for t in front if t is not best and t.values[0] >= best.values[0] - 0.1), key=lambda t: t.values[1])
        chosen = ([best] + near[:1]) if best else []
        out.append((at, [{"genome": t.user_attrs["genome"], "energy_mj": t.values[1]} for t in chosen]))
    return out, study.user_attrs["hypervolume_reference"], wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--limit-train", type=int, default=5000)
    ap.add_argument("--budget", type=float, default=420, help="seconds of search per strategy and target")
    ap.add_argument("--checkpoints", type=int, default=3)
    ap.add_argument("--proxy-epochs", type=float, default=1)
    ap.add_argument("--supernet-epochs", type=float, default=3)
    ap.add_argument("--final-epochs", type=float, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny settings on mnist5k, to check the script")
    args = ap.parse_args()
    if args.quick:
        args.dataset, args.limit_train, args.budget, args.checkpoints = "mnist5k", 600, 60, 2
        args.supernet_epochs, args.final_epochs, args.proxy_epochs = 0.5, 0.5, 0.5

    import torch

    from flightco.data import load_dataset
    from flightco.hypervolume import hypervolume
    from flightco.nn.mobilenet import build_model
    from flightco.space import Genome
    from flightco.train import TrainConfig, evaluate, train_qat

    torch.set_num_threads(2)
    ds = load_dataset(args.dataset, limit_train=args.limit_train, seed=args.seed,
                      val_fraction=0.02 if args.dataset == "fashion_mnist" else 0.1)
    cache: dict[str, float] = {}

    def test_accuracy(genome: dict) -> float:
        key = json.dumps(genome, sort_keys=True)
        if key not in cache:
            torch.manual_seed(0)
            model = build_model(Genome.from_dict(genome))
            train_qat(model, ds.train, TrainConfig(epochs=args.final_epochs, batch_size=64, lr=3e-3, seed=0))
            cache[key] = evaluate(model, ds.test)
        return cache[key]

    folder = Path(tempfile.mkdtemp(prefix="flightco-speed-"))
    fractions = []
    for target, profile in (("bitfusion", "bitfusion.yaml"), ("eyeriss", "eyeriss.yaml")):
        curves = {}
        for strategy in ("per_trial", "supernet"):
            run, _ = run_search(folder, f"{target}_{strategy}", profile, strategy, args)
            points, ref, wall = checkpoint_fronts(run, args.checkpoints)
            curve = []
            for at, members in points:
                hv = hypervolume([[test_accuracy(m["genome"]), m["energy_mj"]] for m in members],
                                 ["maximize", "minimize"], [ref["accuracy"], ref["energy_mj"]])
                curve.append((at, hv))
                print(f"{target:9s} {strategy:9s} t={at:6.0f} s  finalists {len(members)}  hypervolume {hv:.4g}", flush=True)
            curves[strategy] = (curve, wall)
        goal = curves["per_trial"][0][-1][1]
        reached = next((at for at, hv in curves["supernet"][0] if hv >= goal), float("inf"))
        fraction = reached / curves["per_trial"][1]
        fractions.append(fraction)
        print(f"{target}: per-trial final hypervolume {goal:.4g} in {curves['per_trial'][1]:.0f} s; supernet reached it "
              f"after {reached:.0f} s ({fraction:.2f} of the per-trial time)")
    print(f"supernet_time_fraction={fractions[0]:.3g} reuse_time_fraction={fractions[1]:.3g}")


if __name__ == "__main__":
    main()
