"""``flightco across-stack``: a run's candidates across precisions, formats, runtime settings and profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flightco.errors import FlightcoError


def across_stack(
    run: Path = typer.Argument(..., help="Run folder written by `flightco optimize`."),
    out: Path = typer.Option(..., "--out", help="Output folder (across_stack.csv/.parquet, taus.csv, tau_pairs.csv, rank_flips.csv, heatmaps)."),
    others: int = typer.Option(4, "--others", min=0, help="Trained trials off the front to add (seeded sample)."),
    threads: str = typer.Option("1,2", "--threads", help="onnxruntime thread counts."),
    formats: str = typer.Option("onnx-int-built,qcdq", "--formats", help="Export formats; qcdq (flightco export, seconds each) at the searched precision only."),
    profile: Optional[list[Path]] = typer.Option(None, "--profile", help="Extra hardware profile(s) besides the run's own (repeatable)."),
    runtime: Optional[list[str]] = typer.Option(None, "--runtime", help="Another runtime besides onnxruntime, timed at each --threads (repeatable): openvino, executorch, tvm, tvm-tuned (optional extras)."),
    images: int = typer.Option(1000, "--images", min=10, help="Test images scored per candidate and precision."),
    repeats: int = typer.Option(30, "--repeats", min=3, help="Timed runs per pass."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample of other trials."),
) -> None:
    """Evaluate the front (and a sample of other trained trials) at searched / W8A8 / float precision
    on onnxruntime (threads x formats), any --runtime and every profile; Kendall tau between size, MACs, accuracy and
    latency per target and between targets' latency rankings; rank flips; heatmaps.

    Example: flightco across-stack outputs/mobilenet_energy --out outputs/stack --profile hw_profiles/eyeriss.yaml
    """
    from flightco.cli import _fail, console

    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from flightco.across_stack import run_study, write_outputs
        from flightco.characterize_cli import _ints
        from flightco.runs import check_output_path

        check_output_path(out / "across_stack.csv", "--out")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task("candidates x precisions", total=None)
            table = run_study(run, others=others, threads=tuple(_ints(threads, "--threads")),
                              formats=tuple(f.strip() for f in formats.split(",") if f.strip()),
                              extra_profiles=tuple(profile or ()), runtimes=tuple(runtime or ()), images=images, seed=seed, repeats=repeats,
                              progress=lambda d, t: bar.update(task, completed=d, total=t))
        head = write_outputs(table, out)
        a, b = head["rank_tau_min_pair"]
        console.print(f"{head['candidates']} candidates x {head['configs']} stack configurations -> {out}; lowest "
                      f"Kendall tau of latency rankings {head['rank_tau_min']:.2f} ({a} vs {b}); "
                      f"{head['flips']} candidates change latency rank by >= 2 places")
    except FlightcoError as exc:
        _fail(exc)
