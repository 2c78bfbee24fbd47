"""Finalist rules compared on the SAME search fronts: the 10-point window against hypervolume.

``search_speed.py`` scores the finalists ``optimize`` picks. Run-to-run variation of the searches
is as large as any difference between finalist rules, so this script re-picks the finalists from
the same fronts at the same times (thirds of the per-trial run; 0.1, 0.15, ... 1.0 of it, then its
end, for the supernet), under four rules:

* ``window``: stop 29's rule, reproduced here: the most accurate front member and the cheapest
  within 10 proxy points of it, the points widened by the supernet score's measured stretch
  once it was known (search_speed.py's JSON until Dec 7, 2026 was scored with it);
* ``hypervolume``: flightco's rule now (flightco/finalists.py): the most accurate, then the member
  adding the most hypervolume on the search's score;
* ``mapped``: the same on the supernet score mapped onto the proxy's scale by the run's measured
  line (``search.supernet.score_scale`` on); the per-trial strategy has no mapping;
* ``greedy``: hypervolume from the first pick on: the member with the largest hypervolume alone,
  then as ``hypervolume``. It drops the "most accurate first" clause, which on the supernet's
  score often spends a finalist on its most expensive subnet.

Genomes not yet trained are trained with the same final budget and seed (a genome gives the same
test accuracy as in search_speed.py; cached beside the JSON, shared with finalist_oracle.py). Each
rule's goal is the per-trial strategy's end under that rule.

    python benchmarks/finalist_rules.py --json outputs/benchmarks/search_speed/search_speed.json \\
        [--runs /tmp/flightco-speed-XXXX]      # the run folder search_speed.py printed

The last line is ``time_fractions_window=<f>/<g> time_fractions_hypervolume=<f>/<g>
time_fractions_mapped=<f>/<g> time_fractions_greedy=<f>/<g>``: when the supernet's finalists first reach the rule's goal, as
fractions of the per-trial wall time (first target / second target; ``inf`` if never).
"""

from __future__ import annotations

import argparse
from statistics import mean

from final_budget import add_same_front_arguments, open_same_fronts

WINDOW = 0.1
"""Stop 29's window, in proxy-accuracy points."""


def window_rule(front: list, run: dict, at: float) -> list:
    """Stop 29's pick: the most accurate, then the cheapest within WINDOW x the known stretch."""
    scale = float(run["scale"]["scale"]) if run["scale"] and run["scale_at"] <= at else 1.0
    if not front:
        return []
    best = max(front, key=lambda t: t.values[0])
    near = sorted((t for t in front if t is not best and t.values[0] >= best.values[0] - WINDOW * scale),
                  key=lambda t: t.values[1])
    return [best] + near[:1]


def greedy_rule(front: list, run: dict) -> list:
    """Two finalists chosen greedily by hypervolume on the search's score, the first one included
    (ties to the earlier trial)."""
    from flightco.finalists import grow_by_hypervolume

    return grow_by_hypervolume([], front, 2, [d.name.lower() for d in run["directions"]],
                               [run["reference"][m] for m in run["objectives"]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_same_front_arguments(ap)
    ap.add_argument("--rules", default="window,hypervolume,mapped,greedy",
                    help="comma-separated rules to compare; ratios are taken against the first")
    args = ap.parse_args()

    from search_speed import GRID, estimate_at, finalists_hypervolume, load_run

    report, folder, trainers = open_same_fronts(args)
    rules = {
        "window": lambda run, at: dict(rule=lambda front, r: window_rule(front, r, at)),
        "hypervolume": lambda run, at: {},
        "mapped": lambda run, at: dict(estimate=estimate_at(run, at)),
        "greedy": lambda run, at: dict(rule=greedy_rule),
    }
    names = args.rules.split(",")
    if not names or any(n not in rules for n in names):
        raise SystemExit(f"--rules: choose among {', '.join(rules)}; got {args.rules!r}")
    rules = {n: rules[n] for n in names}
    fractions: dict[str, list[str]] = {name: [] for name in rules}
    for target in report["targets"]:
        pt = load_run(folder / "runs" / f"{target}_per_trial")
        sn = load_run(folder / "runs" / f"{target}_supernet")
        pt_times = [pt["wall"] * k / 3 for k in (1, 2, 3)]
        sn_times = [f * pt["wall"] for f in GRID if f * pt["wall"] <= sn["wall"] * 1.001]
        if not sn_times or sn_times[-1] < sn["wall"]:
            sn_times.append(sn["wall"])
        curves: dict[str, list[float]] = {}
        for name, options in rules.items():
            goal = 0.0
            for at in pt_times:
                goal, members = finalists_hypervolume(pt, at, trainers.test_accuracy, **options(pt, at))
                print(f"{target:9s} {name:11s} per_trial t={at:6.0f} s  hypervolume {goal:.4g}  finalists "
                      + ", ".join(f"#{m['number']} test {m['test_accuracy']:.3f} {m['values'][1]:.3g} mJ"
                                  for m in members), flush=True)
            reached, curves[name] = float("inf"), []
            for at in sn_times:
                hv, members = finalists_hypervolume(sn, at, trainers.test_accuracy, **options(sn, at))
                curves[name].append(hv)
                if hv >= goal and reached == float("inf"):
                    reached = at
                print(f"{target:9s} {name:11s} supernet  t={at:6.0f} s ({at / pt['wall']:.2f})  hypervolume {hv:.4g}"
                      "  finalists " + ", ".join(f"#{m['number']} score {m['values'][0]:.3f} test "
                                                 f"{m['test_accuracy']:.3f} {m['values'][1]:.3g} mJ" for m in members),
                      flush=True)
            fractions[name].append(f"{reached / pt['wall']:.3g}" if reached < float("inf") else "inf")
            print(f"{target}: {name} rule: per-trial goal {goal:.4g}; the supernet reaches it at "
                  f"{fractions[name][-1]} of the per-trial time", flush=True)
        for name in names[1:]:
            ratios = [b / a for a, b in zip(curves[names[0]], curves[name]) if a > 0]
            print(f"{target}: supernet {name} / {names[0]} hypervolume over {len(ratios)} times: mean {mean(ratios):.4f}, "
                  f"min {min(ratios):.4f}, max {max(ratios):.4f}", flush=True)
    print(f"stand-alone trainings added: {trainers.trained} ({trainers.seconds:.0f} s)")
    print(" ".join(f"time_fractions_{name}={'/'.join(v)}" for name, v in fractions.items()))


if __name__ == "__main__":
    main()
