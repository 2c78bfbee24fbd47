"""``flightco profile`` commands for whole networks: measure-networks, fit-networks, predict, and
network tables in ``profile eval``.

They live apart from :mod:`flightco.profile_cli` (which registers them on its Typer app by
importing this module) because they form one workflow of their own: measure a few dozen whole
networks (JSON lines, :mod:`flightco.hw.network_table`), learn a block-based profile from them
(:mod:`flightco.hw.block`), price any network, including any ONNX file, on any profile.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import typer

from flightco.errors import FlightcoError, ProfileError
from flightco.profile_cli import WAIT_QUIET_HELP, _background_check, _fail, app


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> null, recursively: JSON has no NaN, and tools that read ours must not choke."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _parse_bits(text: str) -> list[int]:
    try:
        bits = sorted({int(b) for b in text.split(",")})
    except ValueError:
        raise ProfileError(f"--supported-bits must be integers separated by commas, got {text!r}") from None
    if not bits or any(b < 1 or b > 32 for b in bits):
        raise ProfileError(f"--supported-bits must lie between 1 and 32, got {text!r}")
    return bits


def read_networks(path: Path) -> list[Any]:
    """Networks to price: a network table, or one ONNX file as a single network."""
    from flightco.hw.network_table import NetworkRecord, read_network_table

    if path.suffix.lower() == ".onnx":
        from flightco.hw.onnx_workload import workload_from_onnx

        return [NetworkRecord(path.stem, tuple(workload_from_onnx(path)), {}, {"source": str(path)})]
    return read_network_table(path)


@app.command("measure-networks")
def measure_networks_cmd(
    onnx_files: Optional[list[Path]] = typer.Argument(None, help="ONNX files to measure (their workloads are read from the graphs)."),
    out: Path = typer.Option(..., "--out", help="Network table (JSON lines) to write."),
    space: Path = typer.Option(Path("search_spaces/mobilenet.yaml"), "--space", help="Search space to sample random networks from."),
    networks: int = typer.Option(0, "--networks", min=0, help="Random networks of --space to export and measure (0: only the ONNX files)."),
    threads: int = typer.Option(1, "--threads", min=1),
    repeats: int = typer.Option(100, "--repeats", min=3, help="Timed runs per pass after 20 warm-up runs (the fastest is kept)."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Also measure each session's peak heap memory (a fresh process per network)."),
    seed: int = typer.Option(0, "--seed", help="Which random networks."),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="Runtime to measure (onnxruntime)."),
    wait_quiet: float = typer.Option(0.0, "--wait-quiet", min=0.0, help=WAIT_QUIET_HELP),
) -> None:
    """Measure whole networks in onnxruntime (batch 1) and write a network table.

    Latency: 3 or more interleaved timing passes (more until a network's two quietest agree
    within 3 %), each keeping the network's fastest run; passes taken while other processes were
    busier than the quiet stretches do not count. Each record stores that spread and the load
    the timing ran beside (other processes' busy cores). Memory: the peak heap
    bytes its session holds while running (glibc in-use bytes sampled during 200 runs, CPU arena
    off, minus the count before the session). Random networks are exported exactly as
    `flightco export` writes them. Fit a profile on the table with `profile fit-networks`.
    """
    try:
        import tempfile

        import onnxruntime as ort
        from rich.progress import Progress

        from flightco.cli import console
        from flightco.hw.network_table import NetworkRecord, write_network_table
        from flightco.hw.onnx_workload import workload_from_onnx
        from flightco.hw.workload import workload
        from flightco.measure import ROUNDS, export_genome_network, measure_onnx_networks, sample_genomes
        from flightco.space import SearchSpace

        if runtime != "onnxruntime":
            raise ProfileError(f"--runtime must be onnxruntime (the runtime measurable on this machine), got {runtime!r}")
        files = list(onnx_files or [])
        if not files and not networks:
            raise ProfileError("give ONNX files to measure, or --networks N random networks of --space")
        entries: list[tuple[str, Path, tuple, dict[str, Any]]] = []
        for f in files:
            entries.append((f.stem, f, tuple(workload_from_onnx(f)), {"source": str(f)}))
        with tempfile.TemporaryDirectory() as tmp, Progress(console=console) as progress:
            if networks:
                genomes = sample_genomes(SearchSpace.load(space), networks, seed)
                task = progress.add_task(f"exporting {networks} networks of {space.name}", total=networks)
                for i, g in enumerate(genomes):
                    path = Path(tmp) / f"net{i}.onnx"
                    export_genome_network(g, path)
                    entries.append((f"{space.stem}-{seed}-{i}", path, tuple(workload(g)),
                                    {"space": str(space), "seed": seed, "genome": g.to_dict()}))
                    progress.update(task, completed=i + 1)
            n = len(entries)
            task = progress.add_task(f"timing {n} networks in {ROUNDS} interleaved passes"
                                     + (", then their peak memory" if memory else ""), total=n * ROUNDS + n)
            values = measure_onnx_networks([e[1] for e in entries], threads, repeats=repeats, seed=seed, memory=memory,
                                           wait_quiet_s=wait_quiet, progress=lambda i: progress.update(task, completed=i))
        load = _background_check(f"{n} networks")
        records = []
        for (name, _, layers, notes), v in zip(entries, values):
            v.pop("measure_s", None)
            spread = v.pop("spread_pct", None)
            extra = {"spread_pct": round(spread, 3)} if spread is not None else {}
            records.append(NetworkRecord(name, layers, v, {**notes, "runtime": f"onnxruntime {ort.__version__}",
                                                           "threads": threads, **load, **extra}))
        write_network_table(out, records)
        console.print(f"wrote {out} ({len(records)} networks, onnxruntime {ort.__version__}, {threads} thread(s))")
    except FlightcoError as exc:
        _fail(exc)


@app.command("fit-networks")
def fit_networks(
    table: Path = typer.Argument(..., help="Network table (JSON lines) from `profile measure-networks` or your own measurements."),
    out: Path = typer.Option(..., "--out", help="Block profile YAML to write."),
    name: Optional[str] = typer.Option(None, "--name", help="Profile name (default: the output file's stem)."),
    base: Optional[Path] = typer.Option(None, "--base", help="Learn a correction of this profile's per-layer predictions instead of costs from scratch."),
    supported_bits: str = typer.Option("8", "--supported-bits", help="Bit-widths the target executes natively, comma-separated; others round up (float stays float)."),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="Runtime (or device) the table was measured on, recorded in the profile."),
    bootstrap: int = typer.Option(50, "--bootstrap", min=0, help="Bootstrap refits for the uncertainty of predictions."),
) -> None:
    """Learn a block-based profile from whole-network figures only (20-50 networks suffice).

    Latency and energy: a per-network overhead plus, per kernel group (conv, dwconv, linear,
    element-wise), non-negative costs per kernel, per MAC, per MAC x executed bits and per byte
    moved, shared by every kernel of the group. Memory: overhead + weights at executed bits + peak
    live activations. Each metric is fitted where the table has it, with its cross-validated error
    and bootstrap spread, so `profile predict` can state an uncertainty.
    """
    try:
        import yaml

        from flightco.atomic import write_text
        from flightco.hw.block import fit_block_profile
        from flightco.hw.network_table import read_network_table
        from flightco.hw.profile import load_profile
        from flightco.yamlio import read_yaml

        records = read_network_table(table)
        base_data = read_yaml(base, ProfileError) if base is not None else None
        if base_data is not None:
            load_profile(base)  # a broken base fails here, naming its file
        runtimes = {str(r.notes.get("runtime", "")) for r in records}
        threads = {r.notes.get("threads") for r in records if isinstance(r.notes.get("threads"), int)}
        spec_runtime = {"name": runtime, "version": runtimes.pop() if len(runtimes) == 1 else "",
                        "threads": threads.pop() if len(threads) == 1 else 1}
        data = fit_block_profile(records, name or out.stem, base=base_data, supported_bits=_parse_bits(supported_bits),
                                 runtime=spec_runtime, bootstrap=bootstrap, source=table.name,
                                 description=f"block-based profile fitted on {len(records)} networks of {table.name}"
                                 + (f", correcting {base.name}" if base else ""))
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text(out, yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=200))
        load_profile(out)
        summary = ", ".join(f"{m} CV MAPE {d['cv_mape']:.1f}%" for m, d in data["models"].items() if d.get("cv_mape") is not None)
        typer.echo(f"wrote {out} (block, {len(records)} networks; {summary or 'too few networks for cross-validation'})")
    except FlightcoError as exc:
        _fail(exc)


def _predict_rows(prof: Any, records: list[Any]) -> list[dict[str, Any]]:
    from flightco.hw.block import BlockProfile
    from flightco.hw.profile import METRICS

    rows = []
    for r in records:
        costs = prof.cost(list(r.layers)).as_dict()
        row: dict[str, Any] = {"name": r.name, "kernels": len(r.layers)}
        for m in METRICS:
            row[m] = costs[m] if costs[m] > 0 else None
            if isinstance(prof, BlockProfile) and m in prof.coef:
                row[f"{m}_std"] = prof.predict_metric(list(r.layers), m)[1]
            if m in r.values:
                row[f"measured_{m}"] = r.values[m]
        rows.append(row)
    return rows


@app.command()
def predict(
    profile: Path = typer.Argument(..., help="Profile YAML (any kind: analytic, measured, learned, block)."),
    networks: Path = typer.Argument(..., help="An ONNX file (float, QCDQ/QDQ or QONNX) or a network table (JSON lines)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object per network."),
) -> None:
    """Price networks on PROFILE: latency, energy, memory (± one standard deviation for block profiles).

    An ONNX file's kernels are read from its graph (conv+BN+activation as one kernel, bit-widths
    from its quantizers), so any exported model can be priced, e.g. to compare devices.
    """
    try:
        from flightco.hw.profile import load_profile

        prof = load_profile(profile)
        rows = _predict_rows(prof, read_networks(networks))
        if as_json:
            typer.echo(json.dumps(_json_safe(rows)))
            return
        from rich.table import Table

        from flightco.cli import console

        table = Table(title=f"{prof.name}: {networks.name}")
        for col in ("network", "kernels", "latency ms", "energy mJ", "memory KB", "measured"):
            table.add_column(col, justify="left" if col in ("network", "measured") else "right")

        def fmt(row: dict[str, Any], m: str) -> str:
            v = row.get(m)
            if v is None:
                return "-"
            std = row.get(f"{m}_std")
            return f"{v:.4g} ± {std:.2g}" if std else f"{v:.4g}"

        for row in rows:
            measured = ", ".join(f"{k.removeprefix('measured_')} {v:.4g}" for k, v in row.items() if k.startswith("measured_"))
            table.add_row(row["name"], str(row["kernels"]), fmt(row, "latency_ms"), fmt(row, "energy_mj"),
                          fmt(row, "memory_kb"), measured)
        console.print(table)
    except FlightcoError as exc:
        _fail(exc)


def network_accuracy(prof: Any, records: list[Any], calibrate: bool = False) -> dict[str, dict[str, Any]]:
    """``{metric: {n, mape, rmspe, acc10, spearman}}`` of whole-network predictions, per metric
    that both the table and the profile have."""
    import numpy as np

    from flightco.hw.accuracy import calibrated_report
    from flightco.hw.profile import METRICS

    costs = [prof.cost(list(r.layers)).as_dict() for r in records]
    report: dict[str, dict[str, Any]] = {}
    for metric in METRICS:
        idx = [i for i, r in enumerate(records) if metric in r.values]
        if not idx:
            continue
        r = calibrated_report(np.array([costs[i][metric] for i in idx]),
                              np.array([records[i].values[metric] for i in idx]), calibrate)
        if r is not None:  # else the profile does not model this metric
            report[metric] = r
    return report


def eval_networks(profile: Path, table: Path, calibrate: bool, as_json: bool) -> None:
    """`profile eval` on a network table (called by `profile eval` when given one)."""
    from flightco.hw.network_table import read_network_table
    from flightco.hw.profile import load_profile

    report = network_accuracy(load_profile(profile), read_network_table(table), calibrate)
    if as_json:
        typer.echo(json.dumps(_json_safe(report)))
        return
    if not report:
        typer.echo("no metric is both measured in the table and modelled by the profile")
    for metric, r in report.items():
        extra = f", scale {r['scale']:.4g}" if "scale" in r else ""
        rho = "n/a" if not math.isfinite(r["spearman"]) else f"{r['spearman']:.3f}"
        typer.echo(f"{metric} (whole networks): n={r['n']}  MAPE {r['mape']:.1f}%  RMSPE {r['rmspe']:.1f}%  "
                   f"within ±10%: {100 * r['acc10']:.1f}%  Spearman {rho}{extra}")
