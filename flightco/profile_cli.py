"""``flightco profile``: fit, evaluate and inspect hardware profiles from measurement tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
import yaml

from flightco.errors import FlightcoError

app = typer.Typer(no_args_is_help=True, help="Measure, fit, evaluate and inspect hardware profiles (per-layer tables, whole networks, per-kernel breakdowns).")


def _fail(exc: BaseException) -> None:
    from flightco.cli import err_console

    err_console.print(f"[red]error:[/] {exc}", soft_wrap=True)
    raise typer.Exit(2)


def _write_profile(path: Path, data: dict, option: str = "--out") -> None:
    """Validate ``data`` as a profile first, then write it atomically: a failed fit or a bad
    option never leaves an invalid file or replaces a good one."""
    from flightco.hw.profile import profile_from_data
    from flightco.outputs import write_output

    profile_from_data(data, str(path))  # raises before anything is written
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=200)
    write_output(path, option, lambda tmp: tmp.write_text(text))


WAIT_QUIET_HELP = ("Before each timing pass, wait up to this many seconds for other processes to use under "
                   "a quarter of a core (0: do not wait; the load is always read and reported).")


def _background_check(what: str) -> dict[str, float]:
    """Say, on stderr, whether the timing just taken ran beside other work; returns the figures
    (``background_cores``, ``cores``) to store next to the results."""
    from flightco.cli import err_console
    from flightco.machine_load import QUIET_CORES
    from flightco.measure import LAST_BACKGROUND

    if "mean_cores" not in LAST_BACKGROUND:
        err_console.print(f"note: could not read the machine's load while timing {what} (no /proc)")
        return {}
    busy, cores = LAST_BACKGROUND["mean_cores"], LAST_BACKGROUND["cores"]
    spells = LAST_BACKGROUND.get("busy_share", 0.0)
    if busy >= QUIET_CORES:
        err_console.print(f"[yellow]warning:[/] other processes kept {busy:.2f} of {cores:.0f} cores busy while "
                          f"timing {what} ({100 * spells:.0f}% of it in busy spells, whose timings did not count "
                          "where quieter ones existed): the figures are a busy machine's (noisier, and slower by "
                          "an amount that moves with the load); time on a quiet machine or pass --wait-quiet SECONDS",
                          soft_wrap=True)
    return {"background_cores": round(busy, 3), "cores": int(cores), "busy_spell_share": round(spells, 3)}


def _predict_and_measure(prof, space: Path, networks: int, seed: int, threads: int,
                         transient: bool = False, runtime: str = "onnxruntime",
                         wait_quiet_s: float = 0.0) -> tuple[list[float], list[float], list[int]]:
    """Predicted and measured batch-1 latency (ms) of ``networks`` random networks of ``space``,
    and each network's number of conv/linear kernels (for the per-kernel correction)."""
    from rich.progress import Progress

    from flightco.cli import console
    from flightco.measure import ROUNDS, measure_networks, sample_genomes
    from flightco.hw.workload import workload
    from flightco.space import SearchSpace

    genomes = sample_genomes(SearchSpace.load(space), networks, seed)
    from flightco.hw.table import table_kernels

    layers = [workload(g) for g in genomes]
    pred = [prof.cost(w).latency_ms for w in layers]
    counts = [table_kernels(w) for w in layers]
    with Progress(console=console, transient=transient) as progress:
        task = progress.add_task(f"exporting {networks} networks, then timing them in {ROUNDS} interleaved passes",
                                 total=networks * (ROUNDS + 1))
        true = measure_networks(genomes, threads, rounds=ROUNDS, seed=seed, runtime=runtime, wait_quiet_s=wait_quiet_s,
                                progress=lambda i: progress.update(task, completed=i))
    return pred, true, counts


def _table_metadata(path: Path) -> dict[str, str]:
    """Constant columns that `profile measure` writes (runtime version, threads, add cost)."""
    import csv

    with open(path, newline="") as fh:
        first = next(csv.DictReader(fh), {}) or {}
    keys = ("runtime_version", "threads", "elementwise_ns_per_element", "session_overhead_ms", "background_cores", "cores")
    return {k: first[k] for k in keys if first.get(k)}


@app.command()
def fit(
    measurements: Path = typer.Argument(..., help="CSV: op,cin,cout,h,w,k,stride,groups,w_bits,a_bits,latency_ms[,energy_mj]."),
    out: Path = typer.Option(..., "--out", help="Profile YAML to write (e.g. hw_profiles/ort_cpu.yaml)."),
    name: Optional[str] = typer.Option(None, "--name", help="Profile name (default: the output file's stem)."),
    kind: str = typer.Option("learned", "--kind", help="learned (regressors predict unseen shapes) or measured (exact look-up)."),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="Runtime the table was measured on."),
    supported_bits: Optional[str] = typer.Option(None, "--supported-bits", help="Bit-widths the target executes natively, comma-separated; others round up (default: 8, or --base's)."),
    base: Optional[Path] = typer.Option(None, "--base", help="An analytic profile (e.g. hw_profiles/bitfusion.yaml) the table refines: its cycles, traffic and costs become features, so few rows suffice."),
) -> None:
    """Turn a measurement table into a measured or learned profile (rows are embedded in the YAML)."""
    try:
        from flightco.errors import ProfileError
        from flightco.hw.learned import profile_yaml
        from flightco.hw.profile import load_profile
        from flightco.hw.table import read_table

        from flightco.outputs import check_writable_file

        if kind not in ("learned", "measured"):
            raise ProfileError(f"--kind must be learned or measured, got {kind!r}")
        base_data = _base_data(base)
        if supported_bits is None:
            supported_bits = ",".join(str(b) for b in (base_data or {}).get("supported_bits", [8]))
        try:
            bits = sorted({int(b) for b in supported_bits.split(",")})
        except ValueError:
            raise ProfileError(f"--supported-bits must be integers separated by commas, got {supported_bits!r}") from None
        check_writable_file(out, "--out")
        rows = read_table(measurements)
        meta = _table_metadata(measurements)
        runtime_spec = {"name": runtime, "version": meta.get("runtime_version", ""), "threads": int(meta.get("threads", 1) or 1)}
        data = profile_yaml(name or out.stem, kind, rows, runtime_spec, bits, 32,
                            float(meta.get("elementwise_ns_per_element", 1.0) or 1.0),
                            float(meta.get("session_overhead_ms", 0.0) or 0.0),
                            description=f"{kind} profile fitted on {len(rows)} rows of {measurements.name}"
                            + (f" (timed while other processes kept {meta['background_cores']} of {meta.get('cores', '?')} cores busy)"
                               if meta.get("background_cores") else ""),
                            base=base_data)
        _write_profile(out, data)  # validated (rows fitted) before anything is written
        typer.echo(f"wrote {out} ({kind}, {len(rows)} rows)")
    except FlightcoError as exc:
        _fail(exc)


def _base_data(base: Optional[Path]) -> Optional[dict]:
    """The YAML data of an analytic profile given with --base (embedded: profiles stay self-contained)."""
    if base is None:
        return None
    from flightco.errors import ProfileError
    from flightco.hw.profile import load_profile
    from flightco.yamlio import read_yaml

    if load_profile(base).kind != "analytic":
        raise ProfileError(f"--base {base}: must be an analytic profile")
    return read_yaml(base, ProfileError)


@app.command("eval")
def evaluate(
    profile: Path = typer.Argument(..., help="Profile YAML."),
    measurements: Path = typer.Argument(..., help="Measurement CSV to compare with, or a network table (JSON lines: whole networks)."),
    calibrate: bool = typer.Option(False, "--calibrate", help="First fit one global scale per metric (for nominal analytic units)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: {metric: {n, mape, rmspe, acc10, spearman}} (undefined figures as null)."),
    record: bool = typer.Option(False, "--record", help="Also store the figures in PROFILE's `validation:` block (see `profile show`)."),
    against: Optional[str] = typer.Option(None, "--against", help="With --record: what the table is (default: its file name), e.g. 'BitFusion simulator, 781 shapes'."),
) -> None:
    """How well PROFILE predicts the measured layers (or whole networks, from a .jsonl network table): MAPE, RMSPE, share within ±10%, Spearman.

    With --record the figures go into the profile's `validation:` list, with the date and tool
    versions, replacing an earlier record made against the same table."""
    try:
        from flightco.hw.network_table import is_network_table

        if is_network_table(measurements):
            from flightco.profile_networks_cli import eval_networks

            return eval_networks(profile, measurements, calibrate, as_json)
        import numpy as np

        from flightco.hw.accuracy import calibrated_report
        from flightco.hw.profile import load_profile
        from flightco.hw.table import read_table

        prof = load_profile(profile)
        rows = read_table(measurements)
        costs = prof.independent_layer_costs([r.layer for r in rows])
        report = {}
        for metric in ("latency_ms", "energy_mj"):
            idx = [i for i, r in enumerate(rows) if metric in r.values]
            if not idx:
                continue
            r = calibrated_report(np.array([getattr(costs[i], metric) for i in idx]),
                                  np.array([rows[i].values[metric] for i in idx]), calibrate)
            if r is not None:  # else the profile does not model this metric
                report[metric] = r
        if record:
            _record(profile, against or measurements.name, report, rows=len(rows), calibrated=calibrate)
        if as_json:
            from flightco.hw.validation import json_safe

            typer.echo(json.dumps(json_safe(report), allow_nan=False))
            return
        from flightco.hw.accuracy import format_report

        for metric, r in report.items():
            extra = f", scale {r['scale']:.4g}" if "scale" in r else ""
            typer.echo(f"{metric}: {format_report(r)}{extra}")
    except FlightcoError as exc:
        _fail(exc)


def _record(profile: Path, against: str, report: dict, **details) -> None:
    """Store a validation record in the profile file (see flightco.hw.validation)."""
    from flightco.cli import err_console
    from flightco.hw.validation import record_validation, validation_entry

    record_validation(profile, validation_entry(against, report, **details))
    err_console.print(f"recorded the figures in {profile} (validation: against {against!r})")


def _check_runtime(runtime: str) -> None:
    """onnxruntime (default), or an installed CPU runtime plug-in (openvino, executorch, tvm, tvm-tuned)."""
    from flightco.errors import ProfileError

    if runtime == "onnxruntime":
        return
    from flightco.runtimes import MEASURABLE, get_runtime

    if runtime not in MEASURABLE:
        raise ProfileError(f"--runtime must be one of {', '.join(MEASURABLE)}, got {runtime!r}")
    get_runtime(runtime)  # one line naming the pip extra when its package is missing


def _runtime_version(runtime: str) -> str:
    from flightco.runtimes import get_runtime

    return get_runtime(runtime)[1].version()


@app.command()
def measure(
    runtime: str = typer.Option("onnxruntime", "--runtime", help="Runtime to measure: onnxruntime (default), openvino, executorch, tvm or tvm-tuned (pip extras; each layer is exported as onnx-int, then built into the runtime's artifact)."),
    space: Path = typer.Option(Path("search_spaces/mobilenet.yaml"), "--space", help="Search space whose layers are sampled."),
    out: Path = typer.Option(..., "--out", help="Measurement CSV to write."),
    layers: int = typer.Option(200, "--layers", min=1, help="Distinct layers to sample and time."),
    threads: str = typer.Option("1", "--threads", help="Thread counts to measure, comma-separated (e.g. 1,2)."),
    repeats: int = typer.Option(100, "--repeats", min=3, help="Timed runs per layer after 20 warm-up runs (the lowest median of 5 blocks is kept)."),
    seed: int = typer.Option(0, "--seed"),
    wait_quiet: float = typer.Option(0.0, "--wait-quiet", min=0.0, help=WAIT_QUIET_HELP),
) -> None:
    """Time single fused layers sampled from SPACE in onnxruntime (batch 1, as exported by flightco)."""
    try:
        import onnxruntime as ort
        from rich.progress import Progress

        from flightco.cli import console
        from flightco.errors import ProfileError
        from flightco.measure import measure_elementwise_ns, measure_layers, measure_session_overhead_ms, sample_layers
        from flightco.hw.table import write_table
        from flightco.space import SearchSpace

        _check_runtime(runtime)
        try:
            thread_counts = sorted({int(t) for t in threads.split(",")})
        except ValueError:
            raise ProfileError(f"--threads must be integers separated by commas, got {threads!r}") from None
        if any(t < 1 for t in thread_counts):
            raise ProfileError(f"--threads must be positive thread counts (1, 2, ...), got {threads!r}")
        sampled = sample_layers(SearchSpace.load(space), layers, seed)
        for t in thread_counts:
            path = out if len(thread_counts) == 1 else out.with_name(f"{out.stem}.t{t}{out.suffix}")
            with Progress(console=console) as progress:
                task = progress.add_task(f"timing {len(sampled)} layers, {t} thread(s)", total=len(sampled))
                rows = list(measure_layers(sampled, t, warmup=20, repeats=repeats, runtime=runtime, wait_quiet_s=wait_quiet,
                                          progress=lambda i, task=task: progress.update(task, completed=i)))
            load = _background_check(f"{len(rows)} layers")
            ns = measure_elementwise_ns(t)
            overhead = measure_session_overhead_ms(t)
            version = ort.__version__ if runtime == "onnxruntime" else _runtime_version(runtime)
            write_table(path, rows, {"runtime": runtime, "runtime_version": version, "threads": t,
                                     "elementwise_ns_per_element": f"{ns:.4g}", "session_overhead_ms": f"{overhead:.4g}",
                                     **{k: str(v) for k, v in load.items()}})
            console.print(f"wrote {path} ({len(rows)} layers, {runtime} {version}, {t} thread(s))")
    except FlightcoError as exc:
        _fail(exc)


@app.command()
def validate(
    profile: Path = typer.Argument(..., help="Profile YAML to validate."),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="Runtime to measure whole networks on: onnxruntime (default), openvino, executorch, tvm or tvm-tuned."),
    space: Path = typer.Option(Path("search_spaces/mobilenet.yaml"), "--space", help="Search space to sample networks from."),
    networks: int = typer.Option(50, "--networks", min=2, help="Random networks to predict and measure."),
    threads: int = typer.Option(1, "--threads", min=1),
    seed: int = typer.Option(1, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object, keys as `profile eval --json`."),
    record: bool = typer.Option(False, "--record", help="Also store the figures in PROFILE's `validation:` block."),
    wait_quiet: float = typer.Option(0.0, "--wait-quiet", min=0.0, help=WAIT_QUIET_HELP),
) -> None:
    """Predict and measure whole random networks end to end; report the prediction accuracy.

    The networks are timed in interleaved passes with noisy timings rejected (see
    `flightco.measure`); the run-to-run spread of the measurement itself is reported too."""
    try:
        import numpy as np

        from flightco.cli import console
        from flightco.hw.accuracy import accuracy_report
        from flightco.hw.profile import load_profile

        _check_runtime(runtime)
        prof = load_profile(profile)
        pred, true, _ = _predict_and_measure(prof, space, networks, seed, threads, transient=as_json, runtime=runtime,
                                             wait_quiet_s=wait_quiet)
        report = {"latency_ms": accuracy_report(np.array(pred), np.array(true))}
        from flightco.measure import LAST_SPREAD

        if LAST_SPREAD:
            report["latency_ms"]["measurement_spread_pct"] = LAST_SPREAD["median_pct"]
        report["latency_ms"].update(_background_check(f"{networks} networks"))
        from flightco.hw.accuracy import share_interval

        r = report["latency_ms"]
        r["acc10_ci95"] = [round(x, 4) for x in share_interval(r["acc10"], r["n"])]
        if record:
            _record(profile, f"{runtime} whole networks of {space.name}", report, networks=networks,
                    threads=threads, seed=seed)
        if as_json:
            from flightco.hw.validation import json_safe

            typer.echo(json.dumps(json_safe(report), allow_nan=False))
            return
        from flightco.hw.accuracy import format_report

        notes = [f"95% interval of the ±10% share: {100 * r['acc10_ci95'][0]:.0f}-{100 * r['acc10_ci95'][1]:.0f}%"]
        if "measurement_spread_pct" in r:
            notes.append(f"measurement spread: median {r['measurement_spread_pct']:.1f}% between passes")
        if "background_cores" in r:
            notes.append(f"other processes: {r['background_cores']:.2f} of {r['cores']} cores busy")
        spread = f"  ({'; '.join(notes)})"
        console.print(f"latency_ms over {r['n']} networks: {format_report(r)}{spread}")
    except FlightcoError as exc:
        _fail(exc)


@app.command()
def calibrate(
    profile: Path = typer.Argument(..., help="A learned or measured profile YAML; updated in place unless --out."),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="Runtime to measure whole networks on."),
    space: Path = typer.Option(Path("search_spaces/mobilenet.yaml"), "--space", help="Search space to sample networks from."),
    networks: int = typer.Option(20, "--networks", min=2, help="Whole networks to measure for the fit."),
    threads: int = typer.Option(1, "--threads", min=1),
    seed: int = typer.Option(2, "--seed", help="Use a different seed from `validate`, so validation networks stay unseen."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the calibrated profile here instead."),
    wait_quiet: float = typer.Option(0.0, "--wait-quiet", min=0.0, help=WAIT_QUIET_HELP),
) -> None:
    """Fit a whole-network correction from a few measured networks: a scale on the kernels, a
    cost per conv/linear kernel, and an offset.

    The correction absorbs what isolated kernels miss (each row of the table ran its kernel
    between Quantize, layout and Dequantize nodes of its own; a network runs them once), and
    on a busy machine also that load's slowdown: calibrate where the profile will be used, and
    under the same conditions as the layer table (the load is read and stored with the fit)."""
    try:
        import numpy as np

        from flightco.cli import console
        from flightco.errors import ProfileError
        from flightco.hw.learned import fit_network_correction
        from flightco.hw.profile import profile_from_data
        from flightco.yamlio import read_yaml

        _check_runtime(runtime)
        data = read_yaml(profile, ProfileError)
        if data.get("kind") not in ("learned", "measured"):
            raise ProfileError(f"{profile}: only learned or measured profiles can be calibrated, not kind {data.get('kind')!r}")
        # predict with the correction off; the file itself is only written once the fit is done
        prof = profile_from_data({**data, "network_scale": 1.0, "network_offset_ms": 0.0,
                                  "network_per_kernel_ms": 0.0}, str(profile))
        overhead = prof.spec.session_overhead_ms
        pred, true, counts = _predict_and_measure(prof, space, networks, seed, threads, runtime=runtime,
                                                  wait_quiet_s=wait_quiet)
        load = _background_check(f"{networks} networks")
        scale, per_kernel, offset = fit_network_correction(np.array(pred) - overhead, np.array(counts),
                                                           np.array(true) - overhead)
        data.update({"network_scale": scale, "network_per_kernel_ms": per_kernel, "network_offset_ms": offset,
                     "network_calibration": {"networks": networks, "seed": seed, "threads": threads, **load}})
        target = out or profile
        _write_profile(target, data)
        console.print(f"wrote {target}: whole network = {scale:.4g} x kernels {per_kernel * 1e3:+.2f} us per conv/linear "
                      f"kernel {offset * 1e3:+.1f} us (+ {overhead * 1e3:.1f} us per call)")
    except FlightcoError as exc:
        _fail(exc)


def _genome_for_breakdown(run: Optional[Path], trial: Optional[int], space: Path, seed: int):
    """The network to break down: a trial of a run, or a random network of a space."""
    from flightco.errors import ProfileError
    from flightco.space import Genome

    if run is not None:
        from flightco.runs import load_study

        if trial is None:
            raise ProfileError("--run needs --trial (see `flightco pareto RUN` for trial numbers)")
        _, study = load_study(run)
        found = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
        if not found or "genome" not in found[0].user_attrs:
            raise ProfileError(f"{run}: trial {trial} has no network (not found or not started)")
        return Genome.from_dict(found[0].user_attrs["genome"]), f"trial {trial} of {run}"
    from flightco.measure import sample_genomes
    from flightco.space import SearchSpace

    return sample_genomes(SearchSpace.load(space), 1, seed)[0], f"random network (seed {seed}) of {space}"


@app.command()
def breakdown(
    profile: Path = typer.Argument(..., help="Profile YAML (analytic, measured or learned)."),
    run: Optional[Path] = typer.Option(None, "--run", help="Run folder; price one of its trials (with --trial)."),
    trial: Optional[int] = typer.Option(None, "--trial", help="Trial number within --run."),
    space: Path = typer.Option(Path("search_spaces/mobilenet.yaml"), "--space", help="Without --run: sample a network from this space."),
    seed: int = typer.Option(0, "--seed", help="Without --run: which random network."),
    as_json: bool = typer.Option(False, "--json", help="Print the per-kernel costs as JSON."),
) -> None:
    """Per-kernel latency, energy and executed precision of one network under PROFILE.

    Shows where a network's cost goes (which kernels, compute- or memory-bound) and which requested bit-widths the target really runs (weightless add/pool kernels show activation bits only).
    """
    try:
        from rich.table import Table

        from flightco.cli import console
        from flightco.hw.profile import load_profile
        from flightco.hw.workload import workload

        prof = load_profile(profile)
        genome, what = _genome_for_breakdown(run, trial, space, seed)
        layers = workload(genome)
        costs = prof.cost(layers)
        if as_json:
            typer.echo(json.dumps({"network": what, "profile": prof.name, **costs.as_dict(),
                                   "layers": [c._asdict() for c in costs.layers]}))
            return
        columns = ("kernel", "op", "shape", "requested", "executed", "latency µs", "energy nJ", "share of energy", "bound")
        table = Table(title=f"{prof.name}: {what}")
        for col in columns:
            table.add_column(col, justify="left" if col in ("kernel", "op", "shape", "bound") else "right")
        for lw, c in zip(layers, costs.layers):
            shape = f"{lw.cin}→{lw.cout} {lw.h}×{lw.w} k{lw.k}/{lw.stride}"
            terms = f" (≤{lw.w_terms:g} pow2 terms)" if lw.w_terms else ""
            share = c.energy_mj / costs.energy_mj if costs.energy_mj else 0.0
            weightless = lw.op in ("add", "pool")  # no weights: only activation bits mean anything
            requested = f"A{lw.a_bits}" if weightless else f"W{lw.w_bits}A{lw.a_bits}{terms}"
            executed = f"A{c.executed_a_bits}" if weightless else f"W{c.executed_w_bits}A{c.executed_a_bits}"
            table.add_row(lw.name, lw.op, shape, requested, executed, f"{c.latency_ms * 1e3:.2f}",
                          f"{c.energy_mj * 1e6:.2f}", f"{100 * share:.1f}%", c.bound)
        if console.is_terminal:
            console.print(table)
        else:  # piped: a plain full-width table, never cut at 80 columns
            import pandas as pd

            typer.echo(table.title)
            rows = [[cell for cell in col.cells] for col in table.columns]
            typer.echo(pd.DataFrame(dict(zip(columns, rows))).to_string(index=False))
        console.print(f"total: latency {costs.latency_ms * 1e3:.2f} µs, energy {costs.energy_mj * 1e6:.2f} nJ, "
                      f"memory {costs.memory_kb:.1f} KB (weights at executed bits + peak activations)")
        console.print(prof.describe_precision())
    except FlightcoError as exc:
        _fail(exc)


@app.command()
def show(
    profile: Path = typer.Argument(..., help="Profile YAML."),
    as_json: bool = typer.Option(False, "--json", help="Print name, version, assumptions and validation as JSON."),
) -> None:
    """What PROFILE assumes and how far it can be trusted: its sources, modelling assumptions,
    executed precision, and every validation recorded in it (what it was compared with, n,
    Spearman, share within ±10%, MAPE, date, tool versions).

    A profile without validation records has never been checked against anything: treat its
    figures as a model, not a measurement.
    """
    try:
        from rich.table import Table

        from flightco.cli import console
        from flightco.errors import ProfileError
        from flightco.hw.profile import load_profile
        from flightco.hw.validation import profile_provenance
        from flightco.yamlio import read_yaml

        prof = load_profile(profile)
        data = read_yaml(profile, ProfileError)
        prov = profile_provenance(profile)
        assumptions = prof.assumptions() if hasattr(prof, "assumptions") else []
        records = data.get("validation") or []
        if isinstance(records, dict):
            records = [records]
        if as_json:
            from flightco.hw.validation import json_safe

            typer.echo(json.dumps(json_safe({**prov, "assumptions": assumptions, "sources": data.get("sources", []),
                                             "precision": prof.describe_precision(), "validation": records})))
            return
        console.print(f"[bold]{prov['name']}[/] ({prov['kind']}, version {prov['version']}, sha {prov['sha']})")
        if data.get("description"):
            console.print(str(data["description"]).strip())
        console.print(prof.describe_precision())
        if assumptions:
            console.print("[bold]assumptions[/]")
            for a in assumptions:
                console.print(f"  - {a}")
        for src in data.get("sources", []) or []:
            console.print(f"  source: {' '.join(str(src).split())}")
        if not records:
            console.print("[yellow]validation: none recorded[/] (never compared with measurements or a reference "
                          "simulator; record one with `flightco profile eval PROFILE TABLE --record`)")
            return
        table = Table(title="validation")
        for col in ("against", "metric", "n", "Spearman", "within ±10%", "MAPE", "date", "tools"):
            table.add_column(col)
        for rec in records:
            tools = ", ".join(f"{k} {v}" for k, v in (rec.get("tools") or {}).items() if k != "python")
            for metric, r in (rec.get("metrics") or {}).items():
                rho = r.get("spearman")
                within = f"{100 * r.get('acc10', 0):.1f}%"
                if r.get("acc10_ci95"):
                    within += f" ({100 * r['acc10_ci95'][0]:.0f}-{100 * r['acc10_ci95'][1]:.0f}%)"
                against = str(rec.get("against", "?"))
                if "background_cores" in r:  # timed beside other work: say so where the figure is read
                    against += f" ({r['background_cores']:.2f} busy cores beside)"
                table.add_row(against, metric, str(r.get("n", "")),
                              "n/a" if rho is None else f"{rho:.3f}", within,
                              f"{r.get('mape', float('nan')):.1f}%", str(rec.get("date", "")), tools)
        console.print(table)
    except FlightcoError as exc:
        _fail(exc)


from flightco import profile_networks_cli as _networks  # noqa: E402,F401  (registers measure-networks, fit-networks, predict)
