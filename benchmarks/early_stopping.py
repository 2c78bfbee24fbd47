"""Would multi-objective early stopping have thrown away a front member?

Runs a recipe (``recipes/fashion_energy.yaml`` by default) with ``strategy: per_trial`` and early
stopping *off* but recording (``search.early_stopping: {enabled: false}``): every trial's
validation accuracy is measured at the rungs while its proxy training runs to the end unchanged.
Then the MO-ASHA rule (``flightco.early_stop.replay``) is replayed over the finished trials in
trial order, each judged only against the trials numbered before it, as a live run would have
judged it, for the recipe's ``eta`` and two neighbours.

Reported per ``eta``: the share of trained trials the rule stops and the share of proxy-training
time that saves (a trial stopped at rung r keeps r of its time), and which stopped trials are on
the run's final front (all trials run to the end, feasible) or among its finalists. The last line is
``stopped_share=<share at the recipe's eta> stopped_on_front=<how many of them are on the front>``.

    python benchmarks/early_stopping.py                                  # runs the recipe (~30-45 min here)
    python benchmarks/early_stopping.py --run outputs/benchmarks/early_stopping/run   # replay only
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def recording_recipe(recipe: Path, folder: Path, trials: int | None, threads: int | None) -> Path:
    """A copy of ``recipe`` (paths made absolute) that records rung accuracies without stopping."""
    data = yaml.safe_load(recipe.read_text())
    base = recipe.resolve().parent
    data["search_space"] = str((base / data["search_space"]).resolve())
    data["hardware"] = [str((base / h).resolve()) for h in data["hardware"]]
    search = data.setdefault("search", {})
    search["strategy"] = "per_trial"
    stopping = dict(search.get("early_stopping") or {})
    stopping["enabled"] = False
    search["early_stopping"] = stopping
    if trials:
        search["trials"] = trials
    if threads:
        data["threads"] = threads
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{recipe.stem}_recording.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "fashion_energy.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "early_stopping")
    ap.add_argument("--run", type=Path, default=None, help="replay an existing recording run instead of running one")
    ap.add_argument("--trials", type=int, default=None, help="override search.trials")
    ap.add_argument("--threads", type=int, default=None, help="override the recipe's torch threads")
    args = ap.parse_args()

    run = args.run
    if run is None:
        recipe = recording_recipe(args.recipe, args.out, args.trials, args.threads)
        run = args.out / "run"
        proc = subprocess.run([sys.executable, "-m", "flightco.cli", "optimize", str(recipe), "--out", str(run)])
        if proc.returncode != 0:
            raise SystemExit(f"optimize {recipe} failed (exit {proc.returncode})")

    from optuna.trial import TrialState

    from flightco.early_stop import replay
    from flightco.front import finals_of, proxy_front
    from flightco.runs import load_study

    _, study = load_study(run)
    spec = (study.user_attrs["recipe"].get("search") or {}).get("early_stopping") or {}
    objectives = [(m, d.name.lower()) for m, d in zip(study.user_attrs["objectives"], study.directions)]
    trained = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
               if "proxy" in t.user_attrs and "rungs" in t.user_attrs and t.user_attrs["proxy"].get("seconds")]
    if not trained:
        raise SystemExit(f"{run}: no trial recorded rung accuracies (was search.early_stopping set?)")
    rungs = list(spec.get("rungs", [0.25, 0.5]))
    eta0, min_peers = int(spec.get("eta", 3)), int(spec.get("min_peers", 6))
    front = {t.number for t in proxy_front(study)}
    finalists = set(finals_of(study))
    total_s = sum(t.user_attrs["proxy"]["seconds"] for t in trained)
    print(f"{run}: {len(trained)} trained trials, rungs {rungs}, min_peers {min_peers}; final front "
          f"{sorted(front)}, finalists {sorted(finalists)}")
    headline = None
    for eta in sorted({2, eta0, eta0 + 1}):
        stopped = replay(trained, rungs, objectives, eta=eta, min_peers=min_peers)
        by_number = {t.number: t for t in trained}
        saved = sum((1 - d.rung) * by_number[n].user_attrs["proxy"]["seconds"] for n, d in stopped.items())
        on_front = sorted(set(stopped) & front)
        on_finalists = sorted(set(stopped) & finalists)
        share = len(stopped) / len(trained)
        print(f"eta={eta}: stops {len(stopped)} of {len(trained)} trained trials ({100 * share:.0f} %), saving "
              f"{100 * saved / total_s:.0f} % of the proxy-training time; stopped trials on the final front: "
              f"{on_front or 'none'}; among the finalists: {on_finalists or 'none'}")
        for n, d in sorted(stopped.items()):
            t = by_number[n]
            print(f"    trial {n:3d} stopped at {100 * d.rung:g}% (acc {d.accuracy:.3f}; {d.better} of {d.peers + 1} "
                  f"in better fronts); it finished at {t.values[0]:.3f}")
        if eta == eta0:
            headline = (share, len(on_front))
    print(f"stopped_share={headline[0]:.3f} stopped_on_front={headline[1]}")


if __name__ == "__main__":
    main()
