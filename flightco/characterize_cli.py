"""``flightco characterize``: measure how a space's design dimensions cost on one target."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from flightco.errors import FlightcoError


def _ints(text: str, option: str) -> list[int]:
    from flightco.characterize import CharacterizeError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CharacterizeError(f"{option}: expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise CharacterizeError(f"{option}: expected positive integers, got {text!r}")
    return values


def characterize(
    space: Path = typer.Argument(..., help="Search-space YAML (see search_spaces/)."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="Measure on this runtime (onnxruntime; others when their plug-in is installed)."),
    profile: Optional[Path] = typer.Option(None, "--profile", help="Price on this hardware profile YAML instead (see hw_profiles/)."),
    out: Path = typer.Option(..., "--out", help="Output folder (points.csv, findings.md, space_hints.yaml, plots/). Re-run to resume."),
    random: int = typer.Option(1000, "--random", min=0, help="Random networks of the space to measure besides the sweeps."),
    bases: str = typer.Option("small,median,large", "--bases", help="Base networks the sweeps move around: small, median, large."),
    resolutions: str = typer.Option("16,20,24,28,32,40", "--resolutions", help="Input resolutions swept."),
    fine_step: int = typer.Option(4, "--fine-step", min=0, help="Step of the fine width sweeps (stem, last stage) that also visit widths the space lacks; 0: off."),
    threads: str = typer.Option("1,2", "--threads", help="Runtime threads swept around each base (runtimes only)."),
    formats: str = typer.Option("onnx-int-built,onnx-int,qcdq", "--formats", help="Export formats swept around each base; onnx-int and qcdq go through flightco export (seconds each)."),
    repeats: int = typer.Option(30, "--repeats", min=3, help="Timed runs per pass (two interleaved passes per point)."),
    memory_every: int = typer.Option(10, "--memory-every", min=1, help="Measure peak memory of every N-th random network (all sweep points)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random networks."),
    resolution: int = typer.Option(28, "--resolution", min=8, help="Input resolution of the base networks (MNIST: 28)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write PNG plots."),
) -> None:
    """One-at-a-time sweeps of every design dimension around small/median/large base networks, plus
    random networks, measured untrained on one target; writes findings and space hints.

    Example: flightco characterize search_spaces/mobilenet.yaml --runtime onnxruntime --out outputs/char_ort

    Then search the hinted space: add `space_hints: ../outputs/char_ort/space_hints.yaml` to a recipe.
    """
    from flightco.cli import _fail, console

    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from flightco import characterize as ch
        from flightco.characterize_report import write_outputs
        from flightco.space import SearchSpace
        from flightco.stack_targets import GRAPH_OPT_LEVELS, make_target

        sp = SearchSpace.load(space)
        base_list = [b.strip() for b in bases.split(",") if b.strip()]
        bad = [b for b in base_list if b not in ch.BASES]
        if bad or not base_list:
            raise ch.CharacterizeError(f"--bases: choose from {', '.join(ch.BASES)}, got {bases!r}")
        options = {}
        if runtime is not None:
            options = {"threads": _ints(threads, "--threads"), "repeats": repeats, "graph_opt": GRAPH_OPT_LEVELS,
                       "formats": [f.strip() for f in formats.split(",") if f.strip()]}
            if runtime != "onnxruntime":
                options = {"threads": options["threads"]}
        target = make_target(runtime, profile, **options)
        if out.exists() and not out.is_dir():
            raise ch.CharacterizeError(f"--out: {out} is a file, expected a folder")
        out.mkdir(parents=True, exist_ok=True)
        points = ch.plan(sp, target, random=random, seed=seed, bases=base_list,
                         resolutions=_ints(resolutions, "--resolutions"), fine_step=fine_step, resolution=resolution)
        t0 = time.perf_counter()
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task(f"characterize {sp.name} on {target.name}", total=len(points))
            table = ch.run(points, target, out, memory_every=memory_every,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
        files = write_outputs(table, out, target=target, space_name=sp.name, plots=plots)
        console.print(f"{len(table)} points in {out / ch.TABLE} ({time.perf_counter() - t0:.0f} s this session); "
                      f"wrote {', '.join(f.name for f in files[:4])} and {max(0, len(files) - 4)} plots")
    except FlightcoError as exc:
        _fail(exc)
