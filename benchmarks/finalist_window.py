"""The supernet's finalist window with and without its measured score scale, on the same fronts.

``search_speed.py`` picks the supernet strategy's finalists with the 10-point window widened by
the score's measured stretch (``search.supernet.score_scale``) from the time it is known. Run to
run noise is as large as the effect, so this script ablates the scale on the SAME search: it
re-picks the finalists from the same fronts at the same times (0.1, 0.15, ... 1.0 of the
per-trial wall time, then the supernet's end) once with the plain 10-point window and once with
the run's scale, trains any genome that search_speed.py did not (same final budget and seed, so
a genome gives the same test accuracy here as there), and prints both hypervolume curves and
when each first reaches the per-trial goal.

    python benchmarks/finalist_window.py --json outputs/benchmarks/search_speed/search_speed.json \\
        [--runs /tmp/flightco-speed-XXXX]      # the run folder search_speed.py printed

The last line is ``time_fractions_plain=<f>/<g> time_fractions_scaled=<f>/<g>`` (first target /
second target; ``inf`` if never reached).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def known_accuracies(report: dict) -> dict[str, float]:
    """The test accuracies search_speed.py already measured, by genome."""
    from final_budget import FinalBudget

    known = {}
    for target in report["targets"].values():
        for curve in target["curves"].values():
            for _, _, members in curve:
                for m in members:
                    known[FinalBudget.key(m["genome"])] = m["test_accuracy"]
    return known


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, required=True, help="search_speed.json of a search_speed.py run")
    ap.add_argument("--runs", type=Path, default=None,
                    help="the run folder search_speed.py printed (default: the one its JSON names)")
    args = ap.parse_args()

    import torch

    from final_budget import FinalBudget
    from search_speed import GRID, finalists_hypervolume, load_run

    report = json.loads(args.json.read_text())
    folder = args.runs or (Path(report["run_folder"]) if "run_folder" in report else None)
    if folder is None or not (folder / "runs").is_dir():
        raise SystemExit(f"--runs: give the run folder search_speed.py printed (one holding runs/); got {folder}")
    torch.set_num_threads(2)
    trainer = FinalBudget.from_settings(report["settings"], known_accuracies(report))
    fractions: dict[str, list[str]] = {"plain": [], "scaled": []}
    for target, data in report["targets"].items():
        pt = load_run(folder / "runs" / f"{target}_per_trial")
        sn = load_run(folder / "runs" / f"{target}_supernet")
        goal = data["goal_hypervolume"]
        if not sn["scale"]:
            raise SystemExit(f"{target}: the supernet run has no score scale (ran with --no-scale?)")
        times = [f * pt["wall"] for f in GRID if f * pt["wall"] <= sn["wall"] * 1.001] + [sn["wall"]]
        scale = float(sn["scale"]["scale"])
        print(f"{target}: per-trial goal {goal:.4g}; score scale {scale:.2f}, known from {sn['scale_at']:.0f} s",
              flush=True)
        curves: dict[str, list[float]] = {"plain": [], "scaled": []}
        for name in ("plain", "scaled"):
            reached = float("inf")
            for at in times:
                s = scale if name == "scaled" and sn["scale_at"] <= at else 1.0
                hv, members = finalists_hypervolume(sn, at, trainer.test_accuracy, s)
                curves[name].append(hv)
                if hv >= goal and reached == float("inf"):
                    reached = at
                print(f"{target:9s} {name:6s} t={at:6.0f} s (window x{s:.2f})  hypervolume {hv:.4g}  finalists "
                      + ", ".join(f"#{m['number']} score {m['values'][0]:.3f} test {m['test_accuracy']:.3f} "
                                  f"{m['values'][1]:.3g} mJ" for m in members), flush=True)
            fractions[name].append(f"{reached / pt['wall']:.3g}")
        finite = [b / a for a, b in zip(curves["plain"], curves["scaled"]) if a > 0]
        print(f"{target}: scaled / plain hypervolume over the {len(times)} times: mean {sum(finite) / len(finite):.4f}, "
              f"min {min(finite):.4f}, max {max(finite):.4f}", flush=True)
    print(f"stand-alone trainings added: {trainer.trained} ({trainer.seconds:.0f} s)")
    print(f"time_fractions_plain={'/'.join(fractions['plain'])} time_fractions_scaled={'/'.join(fractions['scaled'])}")


if __name__ == "__main__":
    main()
