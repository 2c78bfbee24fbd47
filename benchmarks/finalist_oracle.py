"""Is the supernet's miss its search or its finalist choice? And is the goal's margin real?

``search_speed.py`` scores, at each point of its time grid, the two finalists ``optimize`` would
pick from the supernet strategy's front. When that hypervolume falls short of the per-trial goal,
two different things may be wrong: the front holds no pair that reaches it (the search is too
slow), or it holds one that the rule did not pick (the choice is wrong). This script separates
them on the SAME search: at the same times it trains EVERY member of the supernet's front with
the same final budget and seed as ``search_speed.py`` (a genome gives the same test accuracy
here), and reports the best hypervolume any ``--k`` of them reach (the oracle: a perfect choice)
beside the rule's. The oracle is an upper bound on any finalist rule, not a rule: it reads the
test split.

Then it retrains both strategies' end finalists with ``--seeds`` other training seeds, so the gap
between the per-trial goal and the supernet's end can be read against final-training noise.

    python benchmarks/finalist_oracle.py --json outputs/benchmarks/search_speed/search_speed.json \\
        [--runs /tmp/flightco-speed-XXXX]      # the run folder search_speed.py printed

Trained accuracies are cached in ``--cache`` (default: beside the JSON), so a rerun or an
interrupted run does not train a genome twice. The last line is
``oracle_time_fractions=<f>/<g> rule_time_fractions=<f>/<g>``: when the best pair of the front,
and the rule's pair, first reach the per-trial goal on search_speed.py's time grid, as fractions
of the per-trial wall time (first target / second target; ``inf`` if never). The rule is this
checkout's ``pick_finalists``, the goal recomputed with it: a rule changed since the search ran
is scored on the same fronts.
"""

from __future__ import annotations

import argparse
import itertools
from statistics import mean
from typing import Any

from final_budget import add_same_front_arguments, open_same_fronts


def best_subset(members: list[dict[str, Any]], k: int, reference: dict[str, float]) -> tuple[float, list[dict]]:
    """The ``k`` members (or fewer, when the front is smaller) whose (test accuracy, energy)
    hypervolume is largest, by exhaustive search: fronts here hold tens of members."""
    from search_speed import test_hypervolume

    groups = itertools.combinations(members, min(k, len(members)))
    best = list(max(groups, key=lambda g: test_hypervolume(list(g), reference), default=()))
    return test_hypervolume(best, reference), best


def fraction_text(at: float, wall: float) -> str:
    return f"{at / wall:.3g}" if at < float("inf") else "inf"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_same_front_arguments(ap)
    ap.add_argument("--k", type=int, default=2, help="finalists per front, as search_speed.py picks (2)")
    ap.add_argument("--seeds", type=int, default=2,
                    help="extra training seeds (1..N) for both strategies' end finalists; 0: skip")
    args = ap.parse_args()

    from search_speed import GRID, estimate_at, finalists_hypervolume, front_at, load_run, member, test_hypervolume

    report, folder, trainers = open_same_fronts(args)
    fractions: dict[str, list[str]] = {"oracle": [], "rule": []}
    for target, data in report["targets"].items():
        pt = load_run(folder / "runs" / f"{target}_per_trial")
        sn = load_run(folder / "runs" / f"{target}_supernet")
        ref = sn["reference"]
        # the goal under this checkout's finalist rule (search_speed.py's JSON holds the rule of its day)
        goal, _ = finalists_hypervolume(pt, pt["wall"], trainers.test_accuracy)
        if abs(goal - data["goal_hypervolume"]) > 1e-12:
            print(f"{target}: the per-trial goal is {goal:.4g} under this finalist rule "
                  f"({data['goal_hypervolume']:.4g} in the JSON)", flush=True)
        times = [f * pt["wall"] for f in GRID if f * pt["wall"] <= sn["wall"] * 1.001]
        if not times or times[-1] < sn["wall"]:
            times.append(sn["wall"])
        print(f"{target}: per-trial goal {goal:.4g} after {pt['wall']:.0f} s; every member of the supernet's "
              f"front trained at {len(times)} times", flush=True)
        reached = {"oracle": float("inf"), "rule": float("inf")}
        for at in times:
            front = sorted(front_at(sn, at), key=lambda t: t.values[1])
            members = [{**member(t), "test_accuracy": trainers.test_accuracy(t.user_attrs["genome"])} for t in front]
            oracle_hv, oracle = best_subset(members, args.k, ref)
            rule_hv, rule = finalists_hypervolume(sn, at, trainers.test_accuracy, estimate_at(sn, at))
            for name, hv in (("oracle", oracle_hv), ("rule", rule_hv)):
                if hv >= goal and reached[name] == float("inf"):
                    reached[name] = at
            print(f"{target:9s} t={at:6.0f} s ({at / pt['wall']:.2f}) front {len(members):2d}: best {args.k} "
                  f"{oracle_hv:.4g} (" + ", ".join(f"#{m['number']} test {m['test_accuracy']:.3f} "
                                                      f"{m['values'][1]:.3g} mJ" for m in oracle)
                  + f"); rule {rule_hv:.4g} (" + ", ".join(f"#{m['number']}" for m in rule) + ")", flush=True)
        for name in fractions:
            fractions[name].append(fraction_text(reached[name], pt["wall"]))
        print(f"{target}: the front's best {args.k} reach the goal at {fractions['oracle'][-1]} of the per-trial "
              f"time, the rule's finalists at {fractions['rule'][-1]}", flush=True)
        if not args.seeds:
            continue
        end_hvs: dict[str, list[float]] = {}
        for strategy in ("per_trial", "supernet"):
            end = data["curves"][strategy][-1][2]
            end_hvs[strategy] = []
            for seed in range(args.seeds + 1):
                scored = [{**m, "test_accuracy": trainers.test_accuracy(m["genome"], seed)} for m in end]
                hv = test_hypervolume(scored, ref)
                end_hvs[strategy].append(hv)
                print(f"{target:9s} {strategy:9s} last finalists, training seed {seed}: hypervolume {hv:.4g} ("
                      + ", ".join(f"#{m['number']} {m['test_accuracy']:.3f}" for m in scored) + ")", flush=True)
            hvs = end_hvs[strategy]
            print(f"{target:9s} {strategy:9s} over training seeds 0-{args.seeds}: mean {mean(hvs):.4g}, "
                  f"min {min(hvs):.4g}, max {max(hvs):.4g}", flush=True)
        gaps = [a - b for a, b in zip(end_hvs["per_trial"], end_hvs["supernet"])]
        print(f"{target}: per-trial minus supernet at their last finalists, seed by seed: " + ", ".join(f"{g:+.4f}" for g in gaps),
              flush=True)
    print(f"stand-alone trainings: {trainers.trained} ({trainers.seconds:.0f} s)")
    print(f"oracle_time_fractions={'/'.join(fractions['oracle'])} rule_time_fractions={'/'.join(fractions['rule'])}")


if __name__ == "__main__":
    main()
