"""Characterize a search space on one target before searching it (MLSys 2021-style behaviour study).

The plan (:func:`plan`) is a list of points: around several base networks of the space (the
smallest, median and largest choice of every option) each design dimension is swept one at a
time (stem and stage widths, a fine width sweep that also visits channel counts the space does not
offer, depth, kernel, expansion, input resolution, weight, activation and first/last bits, and the
target's own knobs), plus random configurations of the whole space. :func:`run` measures the
points not yet in the table, in chunks, appending each chunk to the table atomically (a rerun
resumes where it stopped) and the findings are then derived from the table alone
(:mod:`flightco.cost_shape`).

Every row holds the network's MACs, bit-operations (MACs x weight bits x activation bits, what a
bit-flexible array scales with), bytes (weights at their bits + every kernel's input and output
activations) and parameters, so costs can be compared against each.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from flightco.atomic import write_text
from flightco.errors import FlightcoError
from flightco.hw.workload import total_macs, weight_bytes, workload
from flightco.space import FLOAT_BITS, BlockGene, Genome, Precision, SearchSpace
from flightco.stack_targets import BUILT_FORMAT, Knobs, Target

TABLE = "points.csv"
BASES = ("small", "median", "large")
DEFAULT_RESOLUTIONS = (16, 20, 24, 28, 32, 40)
ARCH_DIMS_WORK = "macs"
BITS_DIMS_WORK = "bops"


class CharacterizeError(FlightcoError):
    """The characterization cannot run as asked (bad option, unreadable table)."""


@dataclass(frozen=True)
class Point:
    """One network (and runtime setting) to measure, and why it is in the plan."""

    kind: str        # "sweep" or "random"
    base: str        # the base network a sweep moves around ("" for random points)
    dimension: str   # a space field such as "stages[1].channels", "precision.w_bits", "runtime.threads"
    value: str
    genome: Genome
    knobs: Knobs

    @property
    def key(self) -> str:
        text = json.dumps([self.genome.to_json(), self.knobs.as_dict()], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---- building genomes from per-option choices --------------------------------------------------

def _pick(values: Sequence[Any], base: str) -> Any:
    ordered = sorted(values, key=lambda v: (isinstance(v, str), v))
    return {"small": ordered[0], "median": ordered[(len(ordered) - 1) // 2], "large": ordered[-1]}[base]


def base_choices(space: SearchSpace, base: str) -> dict[str, Any]:
    """The choice of every option for a base network (smallest / median / largest of each list)."""
    c: dict[str, Any] = {"stem.channels": _pick(space.stem.channels, base), "resolution": None}
    for i, st in enumerate(space.stages):
        for f in ("depth", "channels", "expansion", "kernel"):
            c[f"stages[{i}].{f}"] = _pick(getattr(st, f), base)
    p = space.precision
    ints = lambda v: [b for b in v if isinstance(b, int)]  # noqa: E731 (FLightNN choices are not swept)
    c["precision.w_bits"] = _pick(ints(p.w_bits), base)
    c["precision.a_bits"] = _pick(ints(p.a_bits), base)
    c["precision.first_last_bits"] = _pick(p.first_last_bits, base)
    return c


def genome_from_choices(space: SearchSpace, c: dict[str, Any], in_channels: int, resolution: int,
                        num_classes: int) -> Genome:
    """A Genome in which every block of a stage shares its stage's choices and every middle layer
    the same weight/activation bits (what a one-at-a-time sweep moves)."""
    mid = Precision(int(c["precision.w_bits"]), int(c["precision.a_bits"]))
    fl = int(c["precision.first_last_bits"])
    edge = Precision(fl, fl)
    blocks = []
    for i, st in enumerate(space.stages):
        for b in range(int(c[f"stages[{i}].depth"])):
            e = int(c[f"stages[{i}].expansion"])
            blocks.append(BlockGene(out_channels=int(c[f"stages[{i}].channels"]), expansion=e,
                                    kernel=int(c[f"stages[{i}].kernel"]), stride=st.stride if b == 0 else 1,
                                    expand=mid if e > 1 else None, dw=mid, project=mid))
    return Genome(in_channels=in_channels, resolution=int(c.get("resolution") or resolution), num_classes=num_classes,
                  stem_channels=int(c["stem.channels"]), stem_kernel=space.stem.kernel, stem_stride=space.stem.stride,
                  stem=edge, blocks=tuple(blocks), classifier=edge)


def sweep_values(space: SearchSpace, resolutions: Sequence[int], fine_step: int) -> dict[str, list[Any]]:
    """Every swept dimension and its values (the space's own choices; ``~fine`` sweeps also visit
    channel counts between them, to expose vector-width effects)."""
    dims: dict[str, list[Any]] = {"stem.channels": list(space.stem.channels)}
    for i, st in enumerate(space.stages):
        for f in ("channels", "depth", "expansion", "kernel"):
            dims[f"stages[{i}].{f}"] = list(getattr(st, f))
    if fine_step > 0:
        last = len(space.stages) - 1
        for dim, values in (("stem.channels", space.stem.channels), (f"stages[{last}].channels", space.stages[last].channels)):
            lo, hi = min(values), max(values)
            fine = sorted(set(range(lo, hi + 1, fine_step)) | set(values))
            if len(fine) > len(set(values)):
                dims[f"{dim}~fine"] = fine
    p = space.precision
    dims["precision.w_bits"] = [b for b in p.w_bits if isinstance(b, int)]
    dims["precision.a_bits"] = list(p.a_bits)
    dims["precision.first_last_bits"] = list(p.first_last_bits)
    dims["resolution"] = list(resolutions)
    return dims


def plan(space: SearchSpace, target: Target, *, random: int, seed: int = 0, bases: Sequence[str] = BASES,
         resolutions: Sequence[int] = DEFAULT_RESOLUTIONS, fine_step: int = 4, in_channels: int = 1,
         resolution: int = 28, num_classes: int = 10) -> list[Point]:
    """The points to measure: one-at-a-time sweeps around each base, the target's knobs around
    each base, then ``random`` random networks of the space (Optuna's RandomSampler)."""
    from flightco.measure import sample_genomes

    io_ = {"in_channels": in_channels, "resolution": resolution, "num_classes": num_classes}
    default = Knobs(format=BUILT_FORMAT) if target.kind == "runtime" else Knobs()
    points: list[Point] = []
    seen: set[str] = set()

    def add(p: Point) -> None:
        if (p.key, p.base, p.dimension) not in seen:
            seen.add((p.key, p.base, p.dimension))
            points.append(p)

    dims = sweep_values(space, resolutions, fine_step)
    for base in bases:
        c0 = base_choices(space, base)
        g0 = genome_from_choices(space, c0, **io_)
        add(Point("sweep", base, "base", "", g0, default))
        for dim, values in dims.items():
            field = dim.split("~")[0]
            for v in values:
                g = genome_from_choices(space, {**c0, field: v}, **io_)
                # "float" only for bit-widths: 32 channels or a 32-pixel resolution is a number
                label = "float" if v == FLOAT_BITS and field.startswith("precision.") else str(v)
                add(Point("sweep", base, dim, label, g, default))
        for knob, values in target.knob_values.items():
            for v in values:
                add(Point("sweep", base, f"runtime.{knob}", str(v), g0, replace(default, **{knob: v})))
    for g in sample_genomes(space, random, seed, **io_):
        add(Point("random", "", "random", "", g, default))
    return points


# ---- network figures ---------------------------------------------------------------------------

def network_figures(genome: Genome) -> dict[str, float]:
    """MACs, bit-operations, bytes and parameters of a Genome (at its requested bits)."""
    layers = workload(genome)
    acts = sum(lw.input_bytes + lw.output_bytes for lw in layers)
    bops = sum(lw.macs * min(lw.w_bits, 16) * min(lw.a_bits, 16) for lw in layers
               if lw.op in ("conv", "dwconv", "linear"))
    return {"macs": float(total_macs(layers)), "bops": float(bops), "bytes": weight_bytes(layers) + acts,
            "weight_kb": weight_bytes(layers) / 1024, "params": float(sum(lw.params for lw in layers))}


# ---- the table -----------------------------------------------------------------------------------

def read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    try:
        return pd.read_csv(path, dtype={"value": str, "base": str}, keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise CharacterizeError(f"{path}: cannot read the points table ({exc}); move it away to start afresh") from None


def append_rows(path: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Append ``rows`` to the table at ``path`` atomically (the whole file is rewritten by rename)."""
    old = read_table(path)
    new = pd.concat([old, pd.DataFrame(rows)], ignore_index=True) if len(old) else pd.DataFrame(rows)
    buf = io.StringIO()
    new.to_csv(buf, index=False)
    write_text(path, buf.getvalue())
    return new


def run(points: list[Point], target: Target, out: Path, *, chunk: int = 25, memory_every: int = 10,
        progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Measure every point whose (key, base, dimension) is not in ``out/points.csv`` yet; return the table.

    Sweep points all get peak memory measured; random points every ``memory_every``-th (a fresh
    process per file: ~2 s each, the dominant cost of a runtime point)."""
    path = out / TABLE
    table = read_table(path)
    done = set()
    if len(table):
        if "target" in table and set(table["target"]) - {target.name}:
            raise CharacterizeError(f"{path}: holds points of target {sorted(set(table['target']))[0]!r}, "
                                    f"not {target.name!r}; use another --out")
        done = set(zip(table["key"], table["base"].fillna(""), table["dimension"]))
    todo = [p for p in points if (p.key, p.base, p.dimension) not in done]
    total, finished = len(points), len(points) - len(todo)
    if progress:
        progress(finished, total)
    known: dict[str, dict[str, float]] = {}  # key -> measurement: a network in several sweeps is measured once
    if len(table):
        metric_cols = [c for c in ("latency_ms", "energy_mj", "memory_kb", "spread", "file_kb") if c in table]
        for rec in table[["key", *metric_cols]].drop_duplicates("key").to_dict("records"):
            known[rec.pop("key")] = {k: v for k, v in rec.items() if pd.notna(v)}
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        fresh: dict[str, tuple[Point, bool]] = {}
        for i, p in enumerate(part):
            if p.key not in known and p.key not in fresh:
                fresh[p.key] = (p, p.kind == "sweep" or (start + i) % max(1, memory_every) == 0)
        measured = target.measure([(p.genome, p.knobs) for p, _ in fresh.values()], [m for _, m in fresh.values()])
        known.update(zip(fresh, measured))
        rows = []
        for p in part:
            rows.append({"key": p.key, "target": target.name, "kind": p.kind, "base": p.base,
                         "dimension": p.dimension, "value": p.value, **p.knobs.as_dict(),
                         **network_figures(p.genome), "resolution": p.genome.resolution,
                         "blocks": len(p.genome.blocks), "bits": p.genome.bits_summary(),
                         **known[p.key], "genome": p.genome.to_json()})
        table = append_rows(path, rows)
        finished += len(part)
        if progress:
            progress(finished, total)
    return table if len(table) else read_table(path)
