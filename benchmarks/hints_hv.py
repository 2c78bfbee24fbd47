"""Does searching the hinted space reach a higher hypervolume than the full one, on the same budget?

1. ``flightco characterize`` the default space on the recipe's primary profile (BitFusion-like by
   default; sweeps only, ``--random 0``: the hints come from the sweeps) -> ``space_hints.yaml``.
2. Two searches of the default recipe with the same seed, sampler and trial budget: the full space
   and the same recipe with ``space_hints:`` set (``flightco optimize --trials N --finalists 0``).
3. The hypervolume of each run's trained feasible front (proxy validation accuracy x energy),
   against ONE reference point: the full recipe's (``flightco.hypervolume.reference_point`` with the
   full space's largest network), so the two figures compare.

A single seed on a small budget is one sample, not a verdict: ``--seeds 0,1`` repeats both
searches per seed and reports each. Last line: ``hv_ratio_hinted_over_full=<mean ratio over seeds>``.

    python benchmarks/hints_hv.py                 # 8 trials per search, 1,200 training digits
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "flightco.cli", *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"flightco {' '.join(map(str, args[:2]))} failed: {proc.stderr.strip()[-400:]}")


def hypervolume_of(run: Path, ref_recipe: Path) -> tuple[float, int]:
    from flightco.hypervolume import hypervolume, largest_network_costs, reference_point
    from flightco.recipe import load_recipe
    from flightco.runs import load_study
    from flightco.search import load_context, proxy_front

    full = load_recipe(ref_recipe)
    ctx = load_context(full, run)
    ref = reference_point(full, largest_network_costs(ctx))
    _, study = load_study(run)
    metrics = study.user_attrs["objectives"]
    front = proxy_front(study)
    directions = [d.name.lower() for d in study.directions]
    return hypervolume([t.values for t in front], directions, [ref[m] for m in metrics]), len(front)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "mobilenet_energy.yaml")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--limit-train", type=int, default=1200)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "hints_hv")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(args.recipe.read_text())
    profile = (args.recipe.parent / base["hardware"][0]).resolve()
    space = (args.recipe.parent / base["search_space"]).resolve()
    char = args.out / "characterize"
    t = time.perf_counter()
    cli("characterize", space, "--profile", profile, "--out", char, "--random", "0", "--no-plots")
    hints = yaml.safe_load((char / "space_hints.yaml").read_text())
    print(f"characterized {space.name} on {hints['target']} in {time.perf_counter() - t:.0f} s: removes "
          + ", ".join(f"{h['field']}={h['value']}" for h in hints["remove"]))
    ratios = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        hv = {}
        for label in ("full", "hinted"):
            r = dict(base, name=f"hv_{label}_s{seed}", search_space=str(space), hardware=[str(profile)])
            r["dataset"] = dict(base.get("dataset", {}), limit_train=args.limit_train)
            r["search"] = dict(base.get("search", {}), seed=seed)
            if label == "hinted":
                r["space_hints"] = str((char / "space_hints.yaml").resolve())
            path = args.out / f"{label}_s{seed}.yaml"
            path.write_text(yaml.safe_dump(r, sort_keys=False))
            run = args.out / f"run_{label}_s{seed}"
            t = time.perf_counter()
            cli("optimize", path, "--trials", str(args.trials), "--finalists", "0", "--out", run)
            hv[label], n = hypervolume_of(run, args.out / f"full_s{seed}.yaml")
            print(f"seed {seed} {label:6s}: hypervolume {hv[label]:.5f} ({n} front members, {args.trials} trials, "
                  f"{time.perf_counter() - t:.0f} s)")
        ratios.append(hv["hinted"] / hv["full"] if hv["full"] > 0 else float("inf"))
        print(f"seed {seed}: hinted / full = {ratios[-1]:.3f}")
    print(f"hv_ratio_hinted_over_full={sum(ratios) / len(ratios):.3f}")


if __name__ == "__main__":
    main()
