"""Would another member of a search front have made a better cheap finalist?

Reads the ``search_speed.json`` that ``benchmarks/search_speed.py`` writes. For each chosen
member of one strategy's final front on one target, it trains the network stand-alone with that
benchmark's final budget and seed, scores it on the test split, and pairs it with the strategy's
most accurate finalist at the end. The hypervolume of that pair is printed beside the per-trial
goal. This is how the README shows that the supernet's fronts held cheap networks that the
10-point finalist rule did not pick.

    python benchmarks/front_cheap_end.py --json outputs/benchmarks/search_speed/search_speed.json \\
        --target eyeriss --trials 224 2 3

The last line is ``best_pair_hypervolume_ratio=<r>``: the best pair's hypervolume divided by the
per-trial goal (above 1: a cheap finalist from this front would have reached the goal).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, required=True, help="search_speed.json of a search_speed.py run")
    ap.add_argument("--target", required=True, help="bitfusion or eyeriss")
    ap.add_argument("--strategy", default="supernet", choices=["supernet", "per_trial"])
    ap.add_argument("--trials", type=int, nargs="+", required=True, help="trial numbers on that front")
    args = ap.parse_args()

    import torch

    from final_budget import FinalBudget
    from search_speed import test_hypervolume

    report = json.loads(args.json.read_text())
    settings = report["settings"]
    if args.target not in report["targets"]:
        raise SystemExit(f"{args.json}: no target {args.target!r}; it has {', '.join(report['targets'])}")
    target = report["targets"][args.target]
    run = target["runs"][args.strategy]
    front = {m["number"]: m for m in run["front"]}
    missing = [n for n in args.trials if n not in front]
    if missing:
        raise SystemExit(f"--trials: {missing} are not on the {args.strategy} front of {args.target} "
                         f"(its members: {sorted(front)})")
    best = target["curves"][args.strategy][-1][2][0]  # the most accurate finalist at the end
    ref = run["reference"]
    goal = target["goal_hypervolume"]
    torch.set_num_threads(2)
    trainer = FinalBudget.from_settings(settings)  # as search_speed.py trains every finalist
    ratios = []
    for number in args.trials:
        member = front[number]
        start = time.perf_counter()
        accuracy = trainer.test_accuracy(member["genome"])
        hv = test_hypervolume([best, {**member, "test_accuracy": accuracy}], ref)
        ratios.append(hv / goal)
        print(f"{args.target} {args.strategy} #{number}: search score {member['values'][0]:.3f} (most accurate "
              f"finalist #{best['number']}: {best['values'][0]:.3f}), {member['values'][1]:.4g} mJ, test accuracy "
              f"{accuracy:.3f}; hypervolume with #{best['number']} {hv:.4g}, per-trial goal {goal:.4g} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"best_pair_hypervolume_ratio={max(ratios):.3f}")


if __name__ == "__main__":
    main()
