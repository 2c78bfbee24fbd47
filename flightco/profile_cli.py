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


def _write_profile(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=200))


def _predict_and_measure(prof, space: Path, networks: int, seed: int, threads: int,
                         transient: bool = False) -> tuple[list[float], list[float]]:
    """Predicted and measured batch-1 latency (ms) of ``networks`` random networks of ``space``."""
    from rich.progress import Progress

    from flightco.cli import console
    from flightco.measure import ROUNDS, measure_networks, sample_genomes
    from flightco.hw.workload import workload
    from flightco.space import SearchSpace

    genomes = sample_genomes(SearchSpace.load(space), networks, seed)
    pred = [prof.cost(workload(g)).latency_ms for g in genomes]
    with Progress(console=console, transient=transient) as progress:
        task = progress.add_task(f"exporting {networks} networks, then timing them in {ROUNDS} interleaved passes",
                                 total=networks * (ROUNDS + 1))
        true = measure_networks(genomes, threads, rounds=ROUNDS, seed=seed,
                                progress=lambda i: progress.update(task, completed=i))
    return pred, true


def _table_metadata(path: Path) -> dict[str, str]:
    """Constant columns that `profile measure` writes (runtime version, threads, add cost)."""
    import csv

    with open(path, newline="") as fh:
        first = next(csv.DictReader(fh), {}) or {}
    keys = ("runtime_version", "threads", "elementwise_ns_per_element", "session_overhead_ms")
    return {k: first[k] for k in keys if first.get(k)}


@app.command()
def fit(
    measurements: Path = typer.Argument(..., help="CSV: op,cin,cout,h,w,k,stride,groups,w_bits,a_bits,latency_ms[,energy_mj]."),
    out: Path = typer.Option(..., "--out", help="Profile YAML to write (e.g. hw_profiles/ort_cpu.yaml)."),
    name: Optional[str] = typer.Option(None, "--name", help="Profile name (default: the output file's stem)."),
    kind: str = typer.Option("learned", "--kind", help="learned (regressors predict unseen shapes) or measured (exact look-up)."),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="Runtime the table was measured on."),
    supported_bits: str = typer.Option("8", "--supported-bits", help="Bit-widths the runtime executes natively, comma-separated; others round up."),
) -> None:
    """Turn a measurement table into a measured or learned profile (rows are embedded in the YAML)."""
    try:
        from flightco.errors import ProfileError
        from flightco.hw.learned import profile_yaml
        from flightco.hw.profile import load_profile
        from flightco.hw.table import read_table

        if kind not in ("learned", "measured"):
            raise ProfileError(f"--kind must be learned or measured, got {kind!r}")
        try:
            bits = sorted({int(b) for b in supported_bits.split(",")})
        except ValueError:
            raise ProfileError(f"--supported-bits must be integers separated by commas, got {supported_bits!r}") from None
        rows = read_table(measurements)
        meta = _table_metadata(measurements)
        runtime_spec = {"name": runtime, "version": meta.get("runtime_version", ""), "threads": int(meta.get("threads", 1) or 1)}
        data = profile_yaml(name or out.stem, kind, rows, runtime_spec, bits, 32,
                            float(meta.get("elementwise_ns_per_element", 1.0) or 1.0),
                            float(meta.get("session_overhead_ms", 0.0) or 0.0),
                            description=f"{kind} profile fitted on {len(rows)} rows of {measurements.name}")
        _write_profile(out, data)
        load_profile(out)  # fails now, not later, if the rows cannot be fitted
        typer.echo(f"wrote {out} ({kind}, {len(rows)} rows)")
    except FlightcoError as exc:
        _fail(exc)


@app.command("eval")
def evaluate(
    profile: Path = typer.Argument(..., help="Profile YAML."),
    measurements: Path = typer.Argument(..., help="Measurement CSV to compare with, or a network table (JSON lines: whole networks)."),
    calibrate: bool = typer.Option(False, "--calibrate", help="First fit one global scale per metric (for nominal analytic units)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: {metric: {n, mape, rmspe, acc10, spearman}}."),
) -> None:
    """How well PROFILE predicts the measured layers (or whole networks): MAPE, RMSPE, share within ±10%, Spearman."""
    try:
        from flightco.hw.network_table import is_network_table

        if is_network_table(measurements):
            from flightco.profile_networks_cli import eval_networks

            return eval_networks(profile, measurements, calibrate, as_json)
        import numpy as np

        from flightco.hw.accuracy import accuracy_report, global_scale
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
            pred = np.array([getattr(costs[i], metric) for i in idx])
            true = np.array([rows[i].values[metric] for i in idx])
            if not np.all(pred > 0):
                continue  # the profile does not model this metric
            scale = global_scale(pred, true) if calibrate else 1.0
            report[metric] = accuracy_report(pred * scale, true)
            if calibrate:
                report[metric]["scale"] = scale
        if as_json:
            typer.echo(json.dumps(report))
            return
        for metric, r in report.items():
            extra = f", scale {r['scale']:.4g}" if "scale" in r else ""
            typer.echo(f"{metric}: n={r['n']}  MAPE {r['mape']:.1f}%  RMSPE {r['rmspe']:.1f}%  "
                       f"within ±10%: {100 * r['acc10']:.1f}%  Spearman {r['spearman']:.3f}{extra}")
    except FlightcoError as exc:
        _fail(exc)


def _check_runtime(runtime: str) -> None:
    from flightco.errors import ProfileError

    if runtime != "onnxruntime":
        raise ProfileError(f"--runtime must be onnxruntime (the runtime measurable on this machine), got {runtime!r}")


@app.command()
def measure(
    runtime: str = typer.Option("onnxruntime", "--runtime", help="Runtime to measure (onnxruntime)."),
    space: Path = typer.Option(Path("search_spaces/mobilenet.yaml"), "--space", help="Search space whose layers are sampled."),
    out: Path = typer.Option(..., "--out", help="Measurement CSV to write."),
    layers: int = typer.Option(200, "--layers", min=1, help="Distinct layers to sample and time."),
    threads: str = typer.Option("1", "--threads", help="Thread counts to measure, comma-separated (e.g. 1,2)."),
    repeats: int = typer.Option(100, "--repeats", min=3, help="Timed runs per layer after 20 warm-up runs (the lowest median of 5 blocks is kept)."),
    seed: int = typer.Option(0, "--seed"),
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
        sampled = sample_layers(SearchSpace.load(space), layers, seed)
        for t in thread_counts:
            path = out if len(thread_counts) == 1 else out.with_name(f"{out.stem}.t{t}{out.suffix}")
            with Progress(console=console) as progress:
                task = progress.add_task(f"timing {len(sampled)} layers, {t} thread(s)", total=len(sampled))
                rows = list(measure_layers(sampled, t, warmup=20, repeats=repeats,
                                          progress=lambda i, task=task: progress.update(task, completed=i)))
            ns = measure_elementwise_ns(t)
            overhead = measure_session_overhead_ms(t)
            write_table(path, rows, {"runtime": "onnxruntime", "runtime_version": ort.__version__, "threads": t,
                                     "elementwise_ns_per_element": f"{ns:.4g}", "session_overhead_ms": f"{overhead:.4g}"})
            console.print(f"wrote {path} ({len(rows)} layers, onnxruntime {ort.__version__}, {t} thread(s))")
    except FlightcoError as exc:
        _fail(exc)


@app.command()
def validate(
    profile: Path = typer.Argument(..., help="Profile YAML to validate."),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="Runtime to measure whole networks on."),
    space: Path = typer.Option(Path("search_spaces/mobilenet.yaml"), "--space", help="Search space to sample networks from."),
    networks: int = typer.Option(50, "--networks", min=2, help="Random networks to predict and measure."),
    threads: int = typer.Option(1, "--threads", min=1),
    seed: int = typer.Option(1, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object, keys as `profile eval --json`."),
) -> None:
    """Predict and measure whole random networks end to end; report the prediction accuracy."""
    try:
        import numpy as np

        from flightco.cli import console
        from flightco.hw.accuracy import accuracy_report
        from flightco.hw.profile import load_profile

        _check_runtime(runtime)
        prof = load_profile(profile)
        pred, true = _predict_and_measure(prof, space, networks, seed, threads, transient=as_json)
        report = {"latency_ms": accuracy_report(np.array(pred), np.array(true))}
        if as_json:
            typer.echo(json.dumps(report))
            return
        r = report["latency_ms"]
        console.print(f"latency_ms over {r['n']} networks: MAPE {r['mape']:.1f}%  RMSPE {r['rmspe']:.1f}%  "
                      f"within ±10%: {100 * r['acc10']:.1f}%  Spearman {r['spearman']:.3f}")
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
) -> None:
    """Fit a whole-network correction (scale, offset) from a few measured networks."""
    try:
        import numpy as np

        from flightco.cli import console
        from flightco.errors import ProfileError
        from flightco.hw.learned import fit_network_calibration
        from flightco.hw.profile import profile_from_data
        from flightco.yamlio import read_yaml

        _check_runtime(runtime)
        data = read_yaml(profile, ProfileError)
        if data.get("kind") not in ("learned", "measured"):
            raise ProfileError(f"{profile}: only learned or measured profiles can be calibrated, not kind {data.get('kind')!r}")
        # predict with the correction off; the file itself is only written once the fit is done
        prof = profile_from_data({**data, "network_scale": 1.0, "network_offset_ms": 0.0}, str(profile))
        overhead = prof.spec.session_overhead_ms
        pred, true = _predict_and_measure(prof, space, networks, seed, threads)
        scale, offset = fit_network_calibration(np.array(pred) - overhead, np.array(true) - overhead)
        data.update({"network_scale": scale, "network_offset_ms": offset,
                     "network_calibration": {"networks": networks, "seed": seed, "threads": threads}})
        target = out or profile
        _write_profile(target, data)
        console.print(f"wrote {target}: whole network = {scale:.4g} x kernels + {offset * 1e3:.1f} us (+ {overhead * 1e3:.1f} us per call)")
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

    Shows where a network's cost goes (which kernels, compute- or memory-bound) and which
    requested bit-widths the target really runs.
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
        table = Table(title=f"{prof.name}: {what}")
        for col in ("kernel", "op", "shape", "requested", "executed", "latency µs", "energy nJ", "share of energy", "bound"):
            table.add_column(col, justify="left" if col in ("kernel", "op", "shape", "bound") else "right")
        for lw, c in zip(layers, costs.layers):
            shape = f"{lw.cin}→{lw.cout} {lw.h}×{lw.w} k{lw.k}/{lw.stride}"
            terms = f" (≤{lw.w_terms:g} pow2 terms)" if lw.w_terms else ""
            share = c.energy_mj / costs.energy_mj if costs.energy_mj else 0.0
            table.add_row(lw.name, lw.op, shape, f"W{lw.w_bits}A{lw.a_bits}{terms}",
                          f"W{c.executed_w_bits}A{c.executed_a_bits}", f"{c.latency_ms * 1e3:.2f}",
                          f"{c.energy_mj * 1e6:.2f}", f"{100 * share:.1f}%", c.bound)
        console.print(table)
        console.print(f"total: latency {costs.latency_ms * 1e3:.2f} µs, energy {costs.energy_mj * 1e6:.2f} nJ, "
                      f"memory {costs.memory_kb:.1f} KB (weights at executed bits + peak activations)")
        console.print(prof.describe_precision())
    except FlightcoError as exc:
        _fail(exc)


from flightco import profile_networks_cli as _networks  # noqa: E402,F401  (registers measure-networks, fit-networks, predict)
