"""Command line: ``flightco optimize | pareto | export``.

Every user error (``FlightcoError``) is printed as one line and exits with status 2; Ctrl-C
stops the search cleanly (finished trials are already stored) with status 130.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from typer._click.exceptions import ClickException, UsageError
from typer.core import TyperGroup
from typer.exceptions import Abort

from flightco.errors import FlightcoError, RunError

# Brevitas warns at import about an optional CUDA kernel package that CPU users never need.
warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")


def _flags_have_no_value_type(original=typer.core.TyperOption.display_type_rich):
    """typer 0.29 prints ``<bool>`` beside every on/off flag (``--all-front``, ``--help``), as if
    the flag took a value; a flag takes none, so its type column stays empty."""

    def display_type_rich(self, ctx):  # type: ignore[no-untyped-def]
        return None if self.is_flag else original(self, ctx)

    typer.core.TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_have_no_value_type()

class _OneLineErrors(TyperGroup):
    """Usage errors (a bad option value, a missing argument) as ONE line on stderr with status 2,
    like every other flightco error, instead of a multi-line panel."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "flightco"
            err_console.print(f"[red]error:[/] {exc.format_message()} (see `{where} --help`)", soft_wrap=True)
            sys.exit(2)
        except ClickException as exc:
            err_console.print(f"[red]error:[/] {exc.format_message()}", soft_wrap=True)
            sys.exit(exc.exit_code)
        except Abort:
            err_console.print("[yellow]interrupted[/]")
            sys.exit(130)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help=(
        "Find neural networks that are accurate AND cheap on a specific piece of hardware.\n\n"
        "Typical session:\n\n"
        "  flightco optimize recipes/mobilenet_energy.yaml   # search (resumes if re-run)\n\n"
        "  flightco pareto outputs/mobilenet_energy --plot front.png\n\n"
        "  flightco export outputs/mobilenet_energy --trial 7 --out model.onnx"
    ),
)
console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())  # piped: never cut lines
err_console = Console(stderr=True, highlight=False, soft_wrap=True)  # one error = one line


class Weights(str, Enum):
    auto = "auto"
    final = "final"
    proxy = "proxy"
    reference = "reference"


class ExportFormat(str, Enum):
    onnx_int = "onnx-int"
    tensorrt = "tensorrt"
    qcdq = "qcdq"
    qonnx = "qonnx"


class TableFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def _fail(exc: BaseException, code: int = 2) -> None:
    err_console.print(f"[red]error:[/] {exc}", soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def optimize(
    recipe: Path = typer.Argument(..., help="Recipe YAML (see recipes/)."),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Total trials for the study (overrides search.trials)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=1, help="Stop starting new trials after this many seconds."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: recipe's output or outputs/<name>)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampler and training seed (overrides search.seed)."),
    finalists: Optional[int] = typer.Option(None, "--finalists", min=0, help="Front members to retrain with the final budget (0: none)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL, e.g. postgresql://user@host/db (default: journal file in the run folder)."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name in the storage (default: the recipe's name)."),
) -> None:
    """Search architecture + per-layer bit-widths for the recipe's hardware; re-run to resume.

    With --storage postgresql://..., start `flightco worker --storage ... --study ...` on other processes or machines to share the trials. A journal torn by a crash is repaired on resume (the removed bytes are kept beside it).
    """
    try:
        _optimize(recipe, trials, timeout, out, seed, finalists, storage, study)
    except FlightcoError as exc:
        _fail(exc)


def _optimize(recipe_path: Path, trials: int | None, timeout: float | None, out: Path | None,
              seed: int | None, finalists: int | None, storage: str | None, study_name: str | None) -> None:
    from contextlib import nullcontext

    from flightco.recipe import load_recipe

    recipe = load_recipe(recipe_path)  # a bad recipe fails here, before optuna and torch are imported
    from flightco.runs import exclusive_run_lock

    updates: dict = {}
    search = recipe.search
    if trials is not None or timeout is not None or seed is not None:
        search = search.model_copy(update={k: v for k, v in
                                           {"trials": trials, "timeout_s": timeout, "seed": seed}.items() if v is not None})
        updates["search"] = search
    if out is not None:
        updates["output"] = str(out)
    if updates:
        recipe = recipe.model_copy(update=updates)
    run_dir = recipe.output_dir()
    _check_writable(run_dir)
    journal = not (storage or recipe.storage)
    with exclusive_run_lock(run_dir) if journal else nullcontext():
        if journal:
            _repair_journal(run_dir)
        _search_and_finalize(recipe, run_dir, storage, study_name, finalists, journal)


def _repair_journal(run_dir: Path) -> bool:
    """Cut a torn journal tail (the caller holds the run folder's lock); say so in one line."""
    from flightco.journal import check_journal, repair_journal
    from flightco.runs import JOURNAL_FILE

    path = run_dir / JOURNAL_FILE
    check = check_journal(path)
    backup = repair_journal(path)
    if backup is None:
        return False
    err_console.print(f"[yellow]repaired[/] {path}: removed a torn tail of {check.bad_bytes} bytes after line "
                      f"{check.first_bad_line - 1} (kept in {backup})", soft_wrap=True)
    return True


def _search_and_finalize(recipe, run_dir: Path, storage: str | None, study_name: str | None,
                         finalists: int | None, journal: bool) -> None:
    import torch

    from flightco.progress import RichReporter, best_so_far
    from flightco.runs import redact
    from flightco.search import check_constraints_reachable, load_context, run_finalists
    from flightco.study import create_or_resume_study, finished_trials, recover_orphaned_trials, run_trials

    torch.set_num_threads(recipe.threads)
    t0 = time.perf_counter()
    search = recipe.search
    ctx = load_context(recipe, run_dir)
    check_constraints_reachable(ctx)
    study, info = create_or_resume_study(recipe, run_dir, storage, study_name, budget=search.trials,
                                         notify=lambda text: err_console.print(f"[yellow]note[/]: {text}", soft_wrap=True))
    _store_hypervolume_reference(study, ctx)
    done = finished_trials(study)
    console.print(
        f"[bold]flightco[/] {recipe.name}: {len(ctx.dataset.train)} train / {len(ctx.dataset.val)} val / "
        f"{len(ctx.dataset.test)} test images ({ctx.dataset.name}); profiles: {', '.join(p.name for p in ctx.profiles)}; "
        f"objectives: {', '.join(f'{o.direction} {o.metric}' for o in recipe.objectives)}"
        + (f"; constraints: {', '.join(map(str, recipe.constraints))}" if recipe.constraints else "")
    )
    console.print(f"run folder {run_dir} (study {info.study_name!r} in {redact(info.storage)}); {done} finished trials found")
    k = recipe.training.finalists if finalists is None else finalists
    try:
        with RichReporter(console, search.trials, done, best=best_so_far(study)) as reporter:
            if journal:
                recover_orphaned_trials(study, reporter)
            ran = run_trials(study, ctx, reporter, budget=search.trials, timeout_s=search.timeout_s)
            stopped = _stopped_early(study, recipe.search.strategy) if recipe.search.early_stopping else ""
            reporter.stage(f"proxy search done ({ran} trials run here{stopped}); training {k} finalists with the final budget")
            run_finalists(study, ctx, reporter, k)
    except KeyboardInterrupt:
        err_console.print(f"[yellow]interrupted[/]: {finished_trials(study)} finished trials are kept in {run_dir}; "
                          "run the same command to resume")
        raise typer.Exit(130) from None
    from flightco.atomic import write_text
    from flightco.pareto import front_frame

    elapsed = time.perf_counter() - t0
    write_text(run_dir / "last_run.json", json.dumps({"seconds": elapsed, "trials_run_here": ran,
                                                      "finished_trials": finished_trials(study)}) + "\n")
    _print_front(study)
    _print_references(study)
    if front_frame(study).empty:
        console.print(f"done in {elapsed:.0f} s, but [bold]no trial was trained[/]: none met the constraints "
                      f"or all failed (see [bold]flightco pareto {run_dir} --all[/]); nothing to export")
        return
    console.print(f"done in {elapsed:.0f} s. Next: [bold]flightco pareto {run_dir} --plot front.png[/], "
                  f"[bold]flightco show {run_dir} --trial N[/], [bold]flightco export {run_dir} --trial N --out model.onnx[/]")


def _store_hypervolume_reference(study, ctx) -> None:
    """Fix the run's hypervolume reference point once, from the recipe (flightco/hypervolume.py)."""
    from flightco.errors import RecipeError
    from flightco.hypervolume import largest_network_costs, reference_point

    if "hypervolume_reference" in study.user_attrs:
        return
    try:
        ref = reference_point(ctx.recipe, largest_network_costs(ctx))
    except ValueError as exc:
        raise RecipeError(f"search.hypervolume_reference: {exc}") from None
    study.set_user_attr("hypervolume_reference", ref)


def _print_hypervolume(study, history_path: Path | None = None, say=None) -> None:
    from flightco.hypervolume import hypervolume_history

    say = say or console.print
    ref = study.user_attrs.get("hypervolume_reference")
    if not ref:
        say("hypervolume: no reference point stored with this study (created by an older flightco)")
        return
    hist = hypervolume_history(study, ref)
    where = ", ".join(f"{k} {v:.4g}" for k, v in ref.items())
    if hist.empty:
        say(f"hypervolume (reference {where}): 0, no finished trials")
        return
    last = hist.iloc[-1]
    say(f"hypervolume (reference {where}): {last['hypervolume']:.4g} after {len(hist)} finished trials "
                  f"({last['seconds']:.0f} s of search)")
    if history_path is not None:
        from flightco.hypervolume import write_history

        say(f"wrote {write_history(hist, history_path, study.study_name)}")


def _stopped_early(study, strategy: str) -> str:
    """``"; early stopping stopped N of M trained trials"`` (or scored subnets) for the end-of-search line."""
    from optuna.trial import TrialState

    from flightco.early_stop import stopped_trials

    pruned = len(stopped_trials(study))
    trained = pruned + sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                           if "proxy" in t.user_attrs)
    what = "scored subnets, before their fine-tuning" if strategy == "supernet" else "trained trials"
    return f"; early stopping stopped {pruned} of {trained} {what}"


@app.command()
def worker(
    storage: str = typer.Option(..., "--storage", help="The study's RDB storage URL (postgresql://user@host/db)."),
    study: str = typer.Option(..., "--study", help="Name of a study created by `flightco optimize ... --storage`."),
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", help="Artifact folder, if it is mounted elsewhere on this machine (default: the study's)."),
) -> None:
    """Work on an existing study: run its trials until its budget is met, then exit.

    The recipe, the search space, the hardware profiles and the budget are read from the storage; the worker refuses a study created by different flightco code.
    """
    try:
        import torch

        from flightco.progress import RichReporter
        from flightco.search import load_context
        from flightco.study import attach_worker, finished_trials, run_trials, study_budget

        opt_study, recipe, run_dir = attach_worker(storage, study, artifacts)
        _check_writable(run_dir)
        torch.set_num_threads(recipe.threads)
        ctx = load_context(recipe, run_dir)
        budget = study_budget(opt_study, recipe.search.trials)
        console.print(f"worker on study {study!r}: budget {budget} trials, {finished_trials(opt_study)} finished; artifacts in {run_dir}")
        with RichReporter(console, budget, finished_trials(opt_study)) as reporter:
            ran = run_trials(opt_study, ctx, reporter, budget=budget, timeout_s=recipe.search.timeout_s)
        console.print(f"worker done: {ran} trials finished here; study has {finished_trials(opt_study)}")
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: the running trial is marked failed; finished trials are kept")
        raise typer.Exit(130) from None
    except FlightcoError as exc:
        _fail(exc)


def _check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise RunError(f"{run_dir}: output folder is not writable ({exc.strerror or exc})") from None


def _fmt(v: object, key: str = "") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        if "accuracy" in key:
            return f"{100 * v:.2f}%"
        if key in ("macs", "params") and v.is_integer():
            return f"{int(v):,}"
        return f"{v:.3g}"
    return str(v)


def _print_table(df, title: str, columns: list[str]) -> None:
    """A rich table on a terminal; when piped, a plain full-width table (no cut columns)."""
    cols = [c for c in columns if c in df.columns]
    if not console.is_terminal:
        typer.echo(title)
        if df.empty:
            typer.echo("(none)")
            return
        plain = df[cols].copy()
        for c in cols:
            plain[c] = [_fmt(v, c) for v in plain[c]]
        typer.echo(plain.to_string(index=False))
        return
    table = Table(title=title, title_justify="left")
    for c in cols:
        table.add_column(c, justify="left" if c in ("bits", "status") else "right", overflow="fold")
    for _, r in df.iterrows():
        table.add_row(*(_fmt(r[c], c) for c in cols))
    console.print(table)


MEASURED_COLUMNS = ["trial", "accuracy", "format", "latency_ms", "measured_b1_ms", "measured_b32_ms", "measured_kb",
                    "integer_convs", "runtime_accuracy"]
FRONT_COLUMNS = ["trial", "accuracy", "final_test_accuracy", "energy_mj", "latency_ms", "memory_kb", "bits"]


def _print_front(study) -> None:
    from flightco.pareto import front_frame

    df = front_frame(study)
    _print_table(df, f"Pareto front of {study.study_name}: {len(df)} trials "
                     "(accuracy = proxy on validation; final_test_accuracy = after final training, held-out test)",
                 FRONT_COLUMNS)


def _print_references(study) -> None:
    from flightco.pareto import reference_comparison

    rows = reference_comparison(study)
    if not rows:
        return
    if not console.is_terminal:
        import pandas as pd

        df = pd.DataFrame([{"trial": r["trial"], "bits": r["bits"], "test acc": r["final_test_accuracy"],
                            "twin": r["reference_bits"], "twin acc": r["reference_test_accuracy"],
                            "delta acc (pts)": round(r["accuracy_delta_points"], 2), "energy / twin": r["energy_ratio"],
                            "latency / twin": r["latency_ratio"], "memory / twin": r["memory_ratio"]} for r in rows])
        df = df.rename(columns={"test acc": "test_accuracy", "twin acc": "twin_accuracy"})
        _print_table(df, "Finalists vs their uniform-precision twins (final training, test accuracy; costs on the "
                         "primary profile)", list(df.columns))
        return
    table = Table(title="Finalists vs their uniform-precision twins (final training, test accuracy; costs on the primary profile)",
                  title_justify="left")
    for c in ("trial", "bits", "test acc", "twin", "twin acc", "Δ acc (pts)", "energy / twin", "latency / twin", "memory / twin"):
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(str(r["trial"]), r["bits"], _fmt(r["final_test_accuracy"], "accuracy"), r["reference_bits"],
                      _fmt(r["reference_test_accuracy"], "accuracy"), f"{r['accuracy_delta_points']:+.2f}",
                      _fmt(r["energy_ratio"]), _fmt(r["latency_ratio"]), _fmt(r["memory_ratio"]))
    console.print(table)


@app.command()
def pareto(
    run: Path = typer.Argument(..., help="Run folder written by `flightco optimize`."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Also write the table to this CSV file (one row per trial, integer MACs, 6 significant digits)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw accuracy vs cost to this file (.png, .svg or .pdf; no suffix: .png)."),
    all_trials: bool = typer.Option(False, "--all", help="List every trial (failed and infeasible too), not only the front."),
    fmt: TableFormat = typer.Option(TableFormat.table, "--format", help="How to print to stdout: a table for people, or csv / json for programs."),
    hv_history: Optional[Path] = typer.Option(None, "--hv-history", help="Write the front's hypervolume after every finished trial to this .csv or .png."),
    measured: bool = typer.Option(False, "--measured", help="Add what `flightco export` measured (latency at batch 1/32, size) beside the predictions."),
) -> None:
    """Show the Pareto front (or all trials), with finalists' uniform-precision comparisons and the front's hypervolume against the run's fixed reference point.

    Read-only: never changes the run folder (a damaged journal is refused with how to repair it).
    """
    try:
        from flightco.outputs import check_writable_file

        if csv is not None:
            check_writable_file(csv, "--csv")
        if plot is not None:
            plot = _plot_path(plot)
            check_writable_file(plot, "--plot")
        if hv_history is not None:
            if hv_history.suffix.lower() not in (".csv", ".png"):
                from flightco.errors import OutputError

                raise OutputError(f"--hv-history: {hv_history} must end in .csv or .png")
            check_writable_file(hv_history, "--hv-history")
        from flightco.pareto import all_frame, front_frame, machine_frame, plot_front, records
        from flightco.runs import load_study

        _, study = load_study(run)
        from flightco.hw.validation import describe_provenance

        say = err_console.print if fmt != TableFormat.table else console.print  # stdout stays machine-readable
        say(describe_provenance(study.user_attrs.get("profiles")))
        df = all_frame(study) if all_trials else front_frame(study)
        if measured:
            from flightco.export import with_measured

            df = with_measured(df, run)
        if fmt == TableFormat.csv:
            typer.echo(machine_frame(df).to_csv(index=False), nl=False)
        elif fmt == TableFormat.json:
            typer.echo(json.dumps(records(df), allow_nan=False))
        elif measured:
            _print_table(df, f"Predicted vs measured ({study.study_name}): predicted = the run's profiles, "
                             "measured = onnxruntime after export", MEASURED_COLUMNS + [c for c in df.columns if c.endswith(".latency_ms")])
        elif all_trials:
            _print_table(df, f"All trials of {study.study_name}: {len(df)}", FRONT_COLUMNS + ["status"])
        else:
            _print_front(study)
            _print_references(study)
            if df.empty:
                console.print(f"the front is empty: no trial was trained (see `flightco pareto {run} --all`)")
        if fmt == TableFormat.table or hv_history is not None:
            _print_hypervolume(study, hv_history, say)
        if csv is not None:
            from flightco.outputs import write_output

            write_output(csv, "--csv", lambda tmp: machine_frame(df).to_csv(tmp, index=False))
            say(f"wrote {csv} ({len(df)} rows)")
        if plot is not None:
            say(f"wrote {plot_front(study, plot)}")
    except FlightcoError as exc:
        _fail(exc)


def _plot_path(plot: Path) -> Path:
    from flightco.errors import OutputError

    if plot.suffix == "":
        return plot.with_name(plot.name + ".png")
    if plot.suffix.lower() not in PLOT_SUFFIXES:
        raise OutputError(f"--plot: {plot} must end in {', '.join(PLOT_SUFFIXES)} (or have no suffix, for .png)")
    return plot


@app.command()
def show(
    run: Path = typer.Argument(..., help="Run folder written by `flightco optimize`."),
    trial: int = typer.Option(..., "--trial", help="Trial number (see `flightco pareto`)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """One trial in full: its architecture and per-layer bits, its costs on every profile, its status and accuracies, and where its weights are."""
    try:
        from flightco.runs import load_study
        from flightco.trialinfo import describe_trial

        _, study = load_study(run)
        info = describe_trial(study, run, trial)
        if as_json:
            typer.echo(json.dumps(info, allow_nan=False))
            return
        _print_trial(info)
    except FlightcoError as exc:
        _fail(exc)


def _print_trial(info: dict) -> None:
    import pandas as pd

    acc = info.get("accuracy", {})
    console.print(f"[bold]trial {info['trial']}[/] of {info['study']}: {info['state']}, {info['status']}; {info['bits']}")
    parts = [f"proxy (val) {_fmt(acc.get('proxy_val'), 'accuracy')}"]
    if acc.get("final_test") is not None:
        parts.append(f"final (test) {_fmt(acc['final_test'], 'accuracy')}")
    if acc.get("reference_test") is not None:
        parts.append(f"{acc.get('reference_bits')} twin (test) {_fmt(acc['reference_test'], 'accuracy')}")
    console.print("accuracy: " + ", ".join(parts))
    g = info["architecture"]
    console.print(f"input {g['in_channels']}x{g['resolution']}x{g['resolution']}, {g['num_classes']} classes, "
                  f"stem {g['stem_channels']} channels k{g['stem_kernel']}/{g['stem_stride']}, {len(g['blocks'])} blocks")
    _print_table(pd.DataFrame(info["layers"]), "Layers (fused kernels) and their precision",
                 ["kernel", "op", "shape", "w_bits", "a_bits", "macs"])
    _print_table(pd.DataFrame([{"profile": k, **v} for k, v in info["costs"].items()]),
                 "Predicted costs per profile", ["profile", "latency_ms", "energy_mj", "memory_kb"])
    for label, path in info["weights"].items():
        console.print(f"{label} weights: {path}")
    if not info["weights"]:
        console.print("no stored weights (not trained)")


@app.command()
def repair(
    run: Path = typer.Argument(..., help="Run folder whose journal was torn by a crash."),
) -> None:
    """Repair a run folder's journal after a crash mid-write: cut the torn last record and keep the removed bytes beside it (study.journal.torn-<time>)."""
    try:
        from flightco.journal import check_journal
        from flightco.runs import JOURNAL_FILE, exclusive_run_lock, read_run_info

        info = read_run_info(run)
        if info.storage != "journal":
            raise RunError(f"{run}: its study is in {info.storage}, not in a journal file; nothing to repair here")
        with exclusive_run_lock(run):
            if not _repair_journal(run):
                c = check_journal(run / JOURNAL_FILE)
                console.print(f"{run / JOURNAL_FILE}: intact ({c.good_bytes} bytes of valid records); nothing to do")
    except FlightcoError as exc:
        _fail(exc)


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run folder written by `flightco optimize`."),
    trial: Optional[int] = typer.Option(None, "--trial", help="Trial number (see `flightco pareto`)."),
    out: Path = typer.Option(..., "--out", help="Output .onnx file (with --all-front: a folder); reports <file>.json and <file>.md are written beside it (never inside a run folder's own files)."),
    weights: Weights = typer.Option(Weights.auto, "--weights", help="Which trained weights: auto (final if trained, else proxy), final, proxy or reference (the uniform-precision twin)."),
    min_agreement: float = typer.Option(0.995, "--min-agreement", min=0.0, max=1.0, help="Fail when the exported file's top-1 agrees with PyTorch on a smaller fraction of test images (0 to 1)."),
    fmt: ExportFormat = typer.Option(ExportFormat.onnx_int, "--format", help=(
        "onnx-int (default: BN folded, uint8 activations, int8 weights, int32 bias: onnxruntime runs integer kernels), "
        "tensorrt (signed int8 Q/DQ for TensorRT's explicit quantization, linted here), "
        "qcdq (Brevitas's plain Q/DQ form, BN unfolded: onnxruntime runs it in float) or "
        "qonnx (Quant nodes at any bit-width, batch 1, for FINN).")),
    all_front: bool = typer.Option(False, "--all-front", help="Export every model of the Pareto front into the --out folder (trial_NNNN.onnx)."),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Time the file at batch 1 and 32 and read its memory in its runtime."),
    threads: int = typer.Option(1, "--threads", min=1, help="Runtime threads for the measurements."),
    runtime: str = typer.Option("onnxruntime", "--runtime", help=(
        "Also deploy the verified onnx-int file to another CPU runtime and verify + measure it there: "
        "openvino (IR), executorch (XNNPACK .pte, int8), tvm (Relax library, untuned) or tvm-tuned (MetaSchedule, --trials). "
        "Artifacts go beside --out (m.<runtime>.b1/.b32.*), the report to m.onnx.<runtime>.json/.md; "
        "each runtime is a pip extra: pip install -e \".[openvino]\", \".[executorch]\", \".[tvm]\".")),
    trials: int = typer.Option(64, "--trials", min=1, help="tvm-tuned: MetaSchedule trials in all (spread over the network's kernels; the database is cached beside the library)."),
    w8_type: str = typer.Option("auto", "--w8-type", help=(
        "onnx-int: how 8-bit weights are stored. int8: onnxruntime's fast u8 x s8 kernels, exact on x86 CPUs with VNNI "
        "and on ARM64 (on older x86 they saturate); uint8: zero point 128, u8 x u8 kernels, exact everywhere but "
        "~2.3x slower per 8-bit conv; auto (default): int8 if this machine has VNNI or is ARM64. "
        "Export with uint8 for an x86 target without VNNI.")),
    float_stem: bool = typer.Option(False, "--float-stem", help=(
        "onnx-int: run the stem (the conv reading the image) as a float conv on the quantized input, with the same "
        "integer weights as floats. With one input channel onnxruntime's int8 conv is slower than its float one "
        "(measured 125 vs 22 us at batch 32 on 28x28); the other layers stay integer. Off by default: every conv integer.")),
) -> None:
    """Export a trial (or the whole front) to ONNX, verify it against PyTorch, measure it.

    Verification feeds raw test pixels through the preprocessing stored in the file's metadata (all test images for onnxruntime; 100, stratified, for QONNX's node-by-node executor). The report says how many nodes onnxruntime ran as integer kernels (and why others stayed float), and puts measured latency, file size and memory beside the run's predicted costs; see them all with `flightco pareto RUN --measured`.
    """
    try:
        from flightco.errors import RunError
        from flightco.export import check_export_paths, export_trial

        if all_front:
            from flightco.pareto import front_frame
            from flightco.runs import load_study

            _, study = load_study(run)
            numbers = [int(t) for t in front_frame(study)["trial"]]
            targets = [(n, out / f"trial_{n:04d}.onnx") for n in numbers]
        elif trial is None:
            raise RunError("--trial is required (or --all-front)")
        else:
            targets = [(trial, out)]
        from flightco.runtime_export import check_runtime_option

        check_runtime_option(runtime, fmt.value)
        for _, path in targets:  # every output is checked before anything is written
            check_export_paths(path, min_agreement)
        for number, path in targets:
            r = export_trial(run, number, path, weights=weights.value, min_agreement=min_agreement, fmt=fmt.value,
                             measure=measure, threads=threads, deploy_to=runtime, trials=trials, w8_type=w8_type,
                             float_stem=float_stem)
            console.print(
                f"wrote {r.file} ({r.format}, {r.weights} weights, {r.bits}); {r.runtime} vs PyTorch on {r.test_images} test images: "
                f"top-1 agreement {100 * r.top1_agreement:.2f}%, max |diff| {r.max_abs_diff:.2g}, "
                f"accuracy {100 * r.runtime_accuracy:.2f}% (PyTorch {100 * r.pytorch_accuracy:.2f}%)"
            )
            if r.kernels:
                k = r.kernels
                console.print(f"  {k['integer_convolutions']}/{k['convolutions']} convolutions ran as integer kernels"
                              + (f"; float: " + "; ".join(f"{n['node']} ({n['reason']})" for n in k["not_integer"][:3])
                                 if k["not_integer"] else ""))
            if r.measured:
                m = r.measured
                console.print(f"  measured: batch 1 {m['batch1']['median_ms']:.3g} ms, batch 32 {m['batch32']['median_ms']:.3g} ms, "
                              f"{m['file_bytes'] / 1024:.1f} KiB, session peak {m['peak_memory_kb'] / 1024:.1f} MiB")
            if r.deployed:
                d = r.deployed
                m = d.get("measured") or {}
                console.print(f"  {d['version']}: top-1 agreement {100 * d['top1_agreement']:.2f}%, "
                              f"{d['executed'].get('integer_convolutions')}/{d['executed'].get('convolutions')} convolutions in integer"
                              + (f", batch 1 {m['batch1']['median_ms']:.3g} ms, batch 32 {m['batch32']['median_ms']:.3g} ms" if m else "")
                              + f" (report {r.file}.{runtime}.md)")
            if r.lint is not None:
                console.print(f"  TensorRT lint: {'passes' if not r.lint else r.lint[0]}; engine: "
                              f"{r.engine if isinstance(r.engine, str) else 'built (see report)'}")
    except FlightcoError as exc:
        _fail(exc)


@app.command()
def report(
    run: Path = typer.Argument(..., help="Run folder written by `flightco optimize`."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: RUN/report)."),
) -> None:
    """Write a report folder: index.html (interactive plotly, self-contained), PNGs, summary.md.

    Figures: the Pareto front in 2-D and 3-D (accuracy x latency x energy, memory as colour),
    hypervolume after each trial, per-layer bit-widths of the front, predicted vs measured
    latency of exported models (run `flightco export RUN --all-front --out DIR` first).
    For live exploration: `optuna-dashboard sqlite:///...` or, for the default journal file,
    `optuna-dashboard RUN/study.journal` (objective names and trial attributes are readable).
    """
    try:
        from flightco.report import write_report
        from flightco.runs import check_output_path, load_study

        folder = out or Path(run) / "report"
        check_output_path(folder / "index.html", "--out")
        _, study = load_study(run)
        files = write_report(Path(run), folder, study)
        console.print(f"wrote {len(files)} files to {folder}: " + ", ".join(f.name for f in files))
    except FlightcoError as exc:
        _fail(exc)


from flightco.profile_cli import app as _profile_app  # noqa: E402

app.add_typer(_profile_app, name="profile")
from flightco.characterize_cli import characterize as _characterize  # noqa: E402

app.command("characterize")(_characterize)
from flightco.across_stack_cli import across_stack as _across_stack  # noqa: E402

app.command("across-stack")(_across_stack)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
