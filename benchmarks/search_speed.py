"""Per-trial training vs the weight-sharing supernet, on the same wall-clock budget.

For each hardware target (the BitFusion-like profile, then the Eyeriss-like one) both strategies
search the default space on Fashion-MNIST (a ``--limit-train`` subset) for ``--budget`` seconds
each (``search.timeout_s``; the supernet's training is inside its budget on the first target, and
reused from the first run's folder on the second). At points of the wall time, the front found so
far gives its two finalists (the most accurate front member and the one adding the most
hypervolume, as ``optimize`` picks them: flightco/finalists.py), each trained stand-alone with
the SAME final budget and scored on the
test split (a genome is trained once and cached); the hypervolume of (test accuracy, energy)
against the recipe's fixed reference point is taken at each point: at thirds of the per-trial
run, and for the supernet on a finer grid of the same time axis (0.1, 0.15, ... of the per-trial
wall time), scanned in order until it reaches the per-trial final hypervolume.

Both strategies run with the same ``search.early_stopping`` (``--early-stopping ETA``, default 3;
0 turns it off): per-trial stops proxy trainings at 25 % and 50 %, the supernet skips the
fine-tuning of subnets whose inherited score is unpromising. Each subnet the supernet scores is
fine-tuned ``--finetune-steps`` QAT steps (default 10, where the product's default is 25: on this
benchmark's 3-epoch supernet, 10 ranked ``supernet_ranking.py``'s 15 genomes as well as 25, in 60 %
of the time; README, "Cheaper subnet scores"). The supernet strategy uses its
accuracy predictor (recipe default; ``--no-predictor`` turns it off): on the first target it is
fitted once 16 subnets are scored, on the second it starts from the first target's archive.
``--scale`` turns ``search.supernet.score_scale`` on (off by default, as in the product): on the
first target a few front members are then trained from scratch once 16 subnets are scored, inside
its budget, the second reuses those points, and finalists picked after the line is known are
chosen on the mapped score.

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
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GRID = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
"""Fractions of the per-trial wall time at which the supernet's finalists are scored."""


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
                   **({"early_stopping": {"eta": args.early_stopping}} if args.early_stopping else {}),
                   "supernet": {"epochs": args.supernet_epochs, "batch_size": args.supernet_batch, "calibration_images": 256,
                                "finetune_steps": args.finetune_steps, "children_sizes": args.children_sizes,
                                **({"predictor": None} if args.no_predictor else {}),
                                **({"score_scale": {}} if args.scale else {})}},
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


def load_run(run: Path) -> dict:
    """Trained trials with their completion seconds from the first trial's start (the supernet's
    training is inside its first trial, so it counts), the reference point and the wall time."""
    from optuna.trial import TrialState

    from flightco.early_stop import stopped_trials
    from flightco.predictor_search import PREDICTED_ATTR, PREDICTOR_ATTR
    from flightco.runs import load_study
    from flightco.score_scale import SCALE_ATTR, read, stretch

    _, study = load_study(run)
    start = min(t.datetime_start for t in study.trials if t.datetime_start)
    scale = study.user_attrs.get(SCALE_ATTR)
    if scale and "offset" not in scale:  # measured before the line's offset was stored: from its points
        stored = [read(p) for p in sorted((run / "supernet").glob("*.scale.json"))]
        if stored and stored[0] is not None:
            scale = {**scale, "offset": stretch(stored[0].points)["offset"]}
    scale_at = (datetime.fromisoformat(scale["known_at"]) - start).total_seconds() if scale else float("inf")
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "proxy" in t.user_attrs]
    wall = max((t.datetime_complete - start).total_seconds() for t in study.trials if t.datetime_complete)
    return {"trials": trials, "at": {t.number: (t.datetime_complete - start).total_seconds() for t in trials},
            "objectives": study.user_attrs["objectives"], "directions": study.directions,
            "reference": study.user_attrs["hypervolume_reference"], "wall": wall, "count": len(study.trials),
            "stopped": len(stopped_trials(study)), "predictor": study.user_attrs.get(PREDICTOR_ATTR, []),
            "queued": {t.number for t in trials if PREDICTED_ATTR in t.user_attrs},
            "scale": scale, "scale_at": scale_at}


def estimate_at(run: dict, at: float):
    """The finalist rule's accuracy estimate the run knew at ``at`` seconds: the supernet score
    mapped onto the proxy's scale once a score scale was measured, else None (the score itself)."""
    from flightco.finalists import estimate_from

    return estimate_from(run["scale"]) if run["scale"] and run["scale_at"] <= at else None


def front_at(run: dict, at: float) -> list:
    """The Pareto front (search accuracy, energy) of the trials finished by ``at`` seconds."""
    from optuna.study._multi_objective import _get_pareto_front_trials_by_trials

    done = [t for t in run["trials"] if run["at"][t.number] <= at]
    return _get_pareto_front_trials_by_trials(done, run["directions"]) if done else []


def finalists_hypervolume(run: dict, at: float, test_accuracy, estimate=None, rule=None) -> tuple[float, list[dict]]:
    """The finalists optimize would pick from the front at ``at`` seconds (``rule``, default
    flightco's own, given the run's reference point and accuracy ``estimate``), their
    stand-alone test accuracies, and the hypervolume of (test accuracy, energy)."""
    from flightco.search import pick_finalists

    ref = run["reference"]
    front = front_at(run, at)
    if rule is None:
        chosen = pick_finalists(front, run["objectives"], run["directions"], 2, ref, estimate)
    else:
        chosen = rule(front, run)
    members = [{**member(t), "test_accuracy": test_accuracy(t.user_attrs["genome"])} for t in chosen]
    return test_hypervolume(members, ref), members


def test_hypervolume(members: list[dict], reference: dict) -> float:
    """Hypervolume of (stand-alone test accuracy, energy) of scored members (``test_accuracy``
    and ``values`` as :func:`member` gives them) against a run's reference point."""
    from flightco.hypervolume import hypervolume

    return hypervolume([[m["test_accuracy"], m["values"][1]] for m in members], ["maximize", "minimize"],
                       [reference["accuracy"], reference["energy_mj"]])


def member(t) -> dict:
    return {"number": t.number, "values": list(t.values), "genome": t.user_attrs["genome"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--limit-train", type=int, default=5000)
    ap.add_argument("--budget", type=float, default=480, help="seconds of search per strategy and target")
    ap.add_argument("--proxy-epochs", type=float, default=1)
    ap.add_argument("--supernet-epochs", type=float, default=3)
    ap.add_argument("--supernet-batch", type=int, default=128)
    ap.add_argument("--final-epochs", type=float, default=3)
    ap.add_argument("--finetune-steps", type=int, default=10,
                    help="supernet: QAT steps on each extracted subnet before scoring it (search.supernet."
                         "finetune_steps; 10 ranked the 15 genomes of supernet_ranking.py as well as the product's "
                         "25 on this benchmark's supernet, tau 0.746 vs 0.733, in 2.9 s instead of 4.9 s; README)")
    ap.add_argument("--early-stopping", type=int, default=3, metavar="ETA",
                    help="search.early_stopping with this eta for BOTH strategies (MO-ASHA: per_trial stops proxy "
                         "trainings at 25%% and 50%%, supernet skips the fine-tuning of unpromising subnets); 0: off")
    ap.add_argument("--no-predictor", action="store_true",
                    help="supernet: turn the accuracy predictor off (search.supernet.predictor: null)")
    ap.add_argument("--children-sizes", choices=("choices", "spread"), default="choices",
                    help="search.supernet.children_sizes: how the sandwich rule draws its random children")
    ap.add_argument("--scale", action="store_true",
                    help="supernet: measure the score's stretch on a few front members trained from scratch and "
                         "choose finalists on the mapped score (search.supernet.score_scale: {})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "search_speed",
                    help="folder for the figures' JSON and the fronts' plot")
    ap.add_argument("--quick", action="store_true", help="tiny settings on mnist5k, to check the script")
    args = ap.parse_args()
    if args.quick:
        args.dataset, args.limit_train, args.budget = "mnist5k", 600, 60
        args.supernet_epochs, args.final_epochs, args.proxy_epochs = 0.5, 0.5, 0.5

    import torch

    from final_budget import FinalBudget, load_benchmark_data

    torch.set_num_threads(2)
    bench_start = time.perf_counter()
    ds = load_benchmark_data(args.dataset, args.limit_train, args.seed)
    print(f"{args.dataset}: {len(ds.train)} training images (a stratified subset), {len(ds.val)} validation, "
          f"{len(ds.test)} test; budget {args.budget:g} s per strategy and target", flush=True)
    trainer = FinalBudget(ds, args.final_epochs)

    def scored(run: dict, at: float) -> tuple[float, list[dict]]:
        return finalists_hypervolume(run, at, trainer.test_accuracy, estimate_at(run, at))

    folder = Path(tempfile.mkdtemp(prefix="flightco-speed-"))
    report: dict = {"settings": vars(args) | {"out": str(args.out)}, "targets": {}}
    fractions = []
    for target, profile in (("bitfusion", "bitfusion.yaml"), ("eyeriss", "eyeriss.yaml")):
        runs = {}
        for strategy in ("per_trial", "supernet"):
            path, seconds = run_search(folder, f"{target}_{strategy}", profile, strategy, args)
            runs[strategy] = load_run(path)
            print(f"{target:9s} {strategy:9s} {runs[strategy]['count']} trials ({len(runs[strategy]['trials'])} scored, "
                  f"{runs[strategy]['stopped']} stopped early) "
                  f"in {runs[strategy]['wall']:.0f} s of search ({seconds:.0f} s with start-up)", flush=True)
            for fit in runs[strategy]["predictor"]:
                print(f"{'':9s} {strategy:9s} accuracy predictor: fitted on {fit['records']} scored subnets "
                      f"(held-out Kendall tau {fit['cv_kendall_tau']:.2f}), {fit['candidates']} candidates in "
                      f"{fit['seconds']:.1f} s, {fit['queued']} queued", flush=True)
            if runs[strategy]["scale"]:
                sc = runs[strategy]["scale"]
                print(f"{'':9s} {strategy:9s} score scale {sc['scale']:.2f} (score vs proxy slope "
                      f"{sc['raw'] if sc['raw'] is not None else float('nan'):.2f}, r "
                      f"{sc['r'] if sc['r'] is not None else float('nan'):.2f}, {sc['points']} front members, "
                      f"{sc['seconds']:.0f} s of proxy training, {sc['source']}) known from "
                      f"{runs[strategy]['scale_at']:.0f} s", flush=True)
            if runs[strategy]["queued"]:
                front = {t.number for t in front_at(runs[strategy], runs[strategy]["wall"])}
                print(f"{'':9s} {strategy:9s} {len(runs[strategy]['queued'] & front)} of the "
                      f"{len(runs[strategy]['queued'])} scored predicted-front subnets are on the final front "
                      f"({len(front)} members)", flush=True)
        pt, sn = runs["per_trial"], runs["supernet"]
        # the per-trial strategy's curve at thirds of its wall time; its end is the goal
        pt_curve = [(pt["wall"] * k / 3, *scored(pt, pt["wall"] * k / 3)) for k in (1, 2, 3)]
        goal = pt_curve[-1][1]
        # the supernet's, on a finer grid of the same time axis, scanned in time order until it
        # reaches the goal (each new finalist costs a stand-alone training), then at its own end
        grid = [f * pt["wall"] for f in GRID]
        sn_curve, reached = [], float("inf")
        for at in grid:
            if at > sn["wall"] * 1.001:
                break
            hv, members = scored(sn, at)
            sn_curve.append((at, hv, members))
            if hv >= goal:
                reached = at
                break
        if not sn_curve or sn_curve[-1][0] < sn["wall"]:
            sn_curve.append((sn["wall"], *scored(sn, sn["wall"])))
            if reached == float("inf") and sn_curve[-1][1] >= goal:  # its end fell just short of the grid's last point
                reached = sn["wall"]
        for name, curve in (("per_trial", pt_curve), ("supernet", sn_curve)):
            for at, hv, members in curve:
                print(f"{target:9s} {name:9s} t={at:6.0f} s  hypervolume {hv:.4g}  finalists "
                      + ", ".join(f"#{m['number']} test {m['test_accuracy']:.3f} {m['values'][1]:.3g} mJ" for m in members),
                      flush=True)
        fraction = reached / pt["wall"]
        fractions.append(fraction)
        print(f"{target}: per-trial final hypervolume {goal:.4g} after {pt['wall']:.0f} s; the supernet reached it "
              + (f"after {reached:.0f} s ({fraction:.2f} of the per-trial time)" if reached < float("inf")
                 else "not within its budget"), flush=True)
        report["targets"][target] = {
            "goal_hypervolume": goal, "reached_s": reached, "fraction": fraction,
            "runs": {k: {"wall_s": v["wall"], "trials": v["count"], "trained": len(v["trials"]),
                         "stopped": v["stopped"], "reference": v["reference"], "predictor": v["predictor"],
                         "score_scale": v["scale"], "score_scale_at_s": v["scale_at"],
                         "queued": sorted(v["queued"]),
                         "front": [member(t) for t in front_at(v, v["wall"])]} for k, v in runs.items()},
            "curves": {"per_trial": [(a, h, m) for a, h, m in pt_curve], "supernet": [(a, h, m) for a, h, m in sn_curve]},
        }
    report["finalist_training_s"] = trainer.seconds
    report["run_folder"] = str(folder)
    report["benchmark_s"] = time.perf_counter() - bench_start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_speed.json").write_text(json.dumps(report, indent=1, default=str))
    plot(report, args.out / "search_speed.png")
    print(f"finalists' stand-alone training: {trainer.trained} networks in {trainer.seconds:.0f} s; whole benchmark "
          f"{report['benchmark_s'] / 60:.1f} min; figures in {args.out}; run folders (their supernet/*.scores.jsonl "
          f"archives feed benchmarks/accuracy_predictor.py) in {folder}")
    print(f"supernet_time_fraction={fractions[0]:.3g} reuse_time_fraction={fractions[1]:.3g}")


def plot(report: dict, path: Path) -> None:
    """Per target: both strategies' final search fronts (accuracy as the search scored it: proxy or
    inherited) with their finalists' test accuracy, and hypervolume over wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = report["targets"]
    fig, axes = plt.subplots(len(targets), 2, figsize=(11, 4 * len(targets)), dpi=110, squeeze=False)
    colours = {"per_trial": "tab:blue", "supernet": "tab:orange"}
    for row, (target, data) in zip(axes, targets.items()):
        for strategy, run in data["runs"].items():
            front = sorted(run["front"], key=lambda t: t["values"][1])
            label = "per-trial (1-epoch proxy)" if strategy == "per_trial" else "supernet (inherited)"
            row[0].step([t["values"][1] for t in front], [t["values"][0] for t in front], where="post",
                        c=colours[strategy], label=f"{label} search front")
            final = data["curves"][strategy][-1][2]
            row[0].scatter([m["values"][1] for m in final], [m["test_accuracy"] for m in final], marker="*", s=120,
                           c=colours[strategy], edgecolors="k", label=f"{strategy} finalists (test)")
            curve = data["curves"][strategy]
            row[1].plot([c[0] for c in curve], [c[1] for c in curve], "o-", c=colours[strategy], label=strategy)
        row[0].set_xlabel("energy (mJ, profile)")
        row[0].set_ylabel("accuracy")
        row[0].set_title(f"{target}: fronts at the end of the budget")
        row[0].legend(fontsize=7)
        row[1].axhline(data["goal_hypervolume"], ls="--", c="grey", lw=1)
        row[1].set_xlabel("search wall time (s)")
        row[1].set_ylabel("hypervolume of the finalists (test)")
        row[1].set_title(f"{target}: hypervolume over time")
        row[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
