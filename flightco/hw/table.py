"""Per-layer measurement tables (CSV): reading, validating, and turning rows into workloads.

One row per layer: ``op,cin,cout,h,w,k,stride,groups,w_bits,a_bits,latency_ms`` and optionally
``energy_mj``; ``h``/``w`` are the input size, padding is ``k // 2``, ``op`` is conv, dwconv or
linear; extra columns are ignored. Errors name the file, the row (1 = first data row) and the
column.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from flightco.errors import ProfileError
from flightco.hw.workload import LayerWorkload

REQUIRED = ("op", "cin", "cout", "h", "w", "k", "stride", "groups", "w_bits", "a_bits", "latency_ms")
INT_COLUMNS = ("cin", "cout", "h", "w", "k", "stride", "groups", "w_bits", "a_bits")
METRIC_COLUMNS = ("latency_ms", "energy_mj")
TABLE_OPS = ("conv", "dwconv", "linear")


def table_kernels(layers) -> int:
    """How many of ``layers`` are table kernels (conv, dwconv, linear): what the per-kernel term of
    a whole-network correction counts."""
    return sum(layer.op in TABLE_OPS for layer in layers)


@dataclass(frozen=True)
class MeasuredLayer:
    layer: LayerWorkload
    values: dict[str, float]  # metric -> measured value
    notes: dict[str, str] = field(default_factory=dict)  # e.g. which kernel the runtime ran


def layer_key(layer: LayerWorkload) -> tuple:
    """What identifies a layer shape in a table (name and output bits excluded)."""
    return (layer.op, layer.cin, layer.cout, layer.h, layer.w, layer.k, layer.stride, layer.groups,
            layer.w_bits, layer.a_bits)


def _error_for_row(source: str, i: int, row: dict[str, str]):
    def bad(col: str, why: str) -> ProfileError:
        return ProfileError(f"{source}: row {i}, column {col}: {why}, got {row.get(col)!r}")

    return bad


def parse_rows(rows: list[dict[str, str]], source: str) -> list[MeasuredLayer]:
    """Validate raw rows (as read by ``csv.DictReader``) into measured layers."""
    if not rows:
        raise ProfileError(f"{source}: no data rows")
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        raise ProfileError(f"{source}: missing column(s) {', '.join(missing)}; required: {','.join(REQUIRED)}")
    out = []
    for i, row in enumerate(rows, start=1):
        bad = _error_for_row(source, i, row)

        op = (row.get("op") or "").strip()
        if op not in TABLE_OPS:
            raise bad("op", f"must be one of {', '.join(TABLE_OPS)}")
        ints = {}
        for col in INT_COLUMNS:
            try:
                ints[col] = int(str(row[col]).strip())
            except (TypeError, ValueError):
                raise bad(col, "must be an integer") from None
            if ints[col] <= 0:
                raise bad(col, "must be > 0")
            if col in ("w_bits", "a_bits") and ints[col] > 32:
                raise bad(col, "must be a bit-width from 1 to 32 (32 = float)")
        if ints["cin"] % ints["groups"]:
            raise bad("groups", f"must divide cin={ints['cin']}")
        values = {}
        for col in METRIC_COLUMNS:
            text = row.get(col)
            if text is None or str(text).strip() == "":
                if col == "latency_ms":
                    raise bad(col, "is required")
                continue
            try:
                v = float(text)
            except ValueError:
                raise bad(col, "must be a number") from None
            if not math.isfinite(v) or v <= 0:
                raise bad(col, "must be a positive number")
            values[col] = v
        layer = LayerWorkload(f"row{i}", op, ints["cin"], ints["cout"], ints["h"], ints["w"], ints["k"],
                              ints["stride"], ints["groups"], ints["w_bits"], ints["a_bits"], ints["a_bits"])
        out.append(MeasuredLayer(layer, values))
    return out


def read_table(path: str | Path) -> list[MeasuredLayer]:
    """Read and validate a measurement CSV."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: file not found")
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read as CSV ({exc})") from None
    return parse_rows(rows, str(path))


def write_table(path: str | Path, measured: list[MeasuredLayer], extra: dict[str, object] | None = None) -> None:
    """Write measured layers in the table format (``extra`` columns are constant per file)."""
    metrics = [m for m in METRIC_COLUMNS if any(m in x.values for x in measured)]
    notes = sorted({k for x in measured for k in x.notes})
    cols = list(REQUIRED[:-1]) + metrics + notes + list(extra or {})
    from flightco.atomic import atomic_path  # a killed measurement never leaves half a table

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for x in measured:
            lw = x.layer
            w.writerow([lw.op, lw.cin, lw.cout, lw.h, lw.w, lw.k, lw.stride, lw.groups, lw.w_bits, lw.a_bits]
                       + [f"{x.values[m]:.6g}" if m in x.values else "" for m in metrics]
                       + [x.notes.get(k, "") for k in notes]
                       + list((extra or {}).values()))
