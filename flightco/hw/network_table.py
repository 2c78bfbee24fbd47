"""Network tables: JSON lines of whole networks (their fused kernels) with measured figures.

One network per line::

    {"name": "net0", "layers": [{"op": "conv", "cin": 1, "cout": 16, "h": 28, "w": 28, "k": 3,
      "stride": 2, "groups": 1, "w_bits": 8, "a_bits": 32}, ...],
     "latency_ms": 0.41, "energy_mj": 0.002, "memory_kb": 1290.5}

``op`` is conv, dwconv, linear, add or pool; ``h``/``w`` are the layer's input size, padding is
``k // 2``; bits are 2-8, or 32 for float. Layers may also carry ``name``, ``out_bits`` (default:
the next layer's ``a_bits``, as :func:`flightco.hw.workload.workload` links them) and ``w_terms``
(FLightNN terms per weight). The metrics are optional (whatever was measured), but each must be
a positive number; any other top-level keys (``source``, ``threads``...) are kept as notes.

This is the data a block-based profile learns from (:mod:`flightco.hw.block`): users can rarely
time single layers on their device, but they can run a few dozen whole networks. Errors name
the file, the line (1 = first line) and the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flightco.errors import ProfileError
from flightco.hw.workload import OPS, LayerWorkload
from flightco.space import FLOAT_BITS

NETWORK_METRICS = ("latency_ms", "energy_mj", "memory_kb")
LAYER_INTS = ("cin", "cout", "h", "w", "k", "stride", "groups", "w_bits", "a_bits")
BITS = (2, 3, 4, 5, 6, 7, 8, FLOAT_BITS)


@dataclass(frozen=True)
class NetworkRecord:
    """One whole network: its kernels in execution order and what was measured for it."""

    name: str
    layers: tuple[LayerWorkload, ...]
    values: dict[str, float] = field(default_factory=dict)  # metric -> measured value
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. source file, threads, runtime


def _bits_ok(v: int) -> bool:
    return v in BITS


def _parse_layer(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: must be an object with op, cin, cout, h, w, k, stride, groups, w_bits, a_bits")
    op = raw.get("op")
    if op not in OPS:
        raise ProfileError(f"{where}.op: must be one of {', '.join(OPS)}, got {op!r}")
    out: dict[str, Any] = {"op": op, "name": raw.get("name")}
    for col in LAYER_INTS:
        v = raw.get(col)
        if v is None:
            raise ProfileError(f"{where}.{col}: is required")
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ProfileError(f"{where}.{col}: must be a positive integer, got {v!r}")
        out[col] = v
    for col in ("w_bits", "a_bits"):
        if not _bits_ok(out[col]):
            raise ProfileError(f"{where}.{col}: must be 2-8 or 32 (float), got {out[col]!r}")
    if out["cin"] % out["groups"]:
        raise ProfileError(f"{where}.groups: must divide cin={out['cin']}, got {out['groups']!r}")
    if "out_bits" in raw:
        ob = raw["out_bits"]
        if isinstance(ob, bool) or not isinstance(ob, int) or not _bits_ok(ob):
            raise ProfileError(f"{where}.out_bits: must be 2-8 or 32 (float), got {ob!r}")
        out["out_bits"] = ob
    terms = raw.get("w_terms", 0)
    if isinstance(terms, bool) or not isinstance(terms, (int, float)) or not 0 <= terms <= 8:
        raise ProfileError(f"{where}.w_terms: must be a number of power-of-two terms 0-8, got {terms!r}")
    out["w_terms"] = float(terms)
    if out["name"] is not None and not isinstance(out["name"], str):
        raise ProfileError(f"{where}.name: must be a string, got {out['name']!r}")
    return out


def parse_network(data: Any, where: str) -> NetworkRecord:
    """Validate one decoded JSON line; ``where`` (file and line) starts every error message."""
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected a JSON object, got {type(data).__name__}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError(f"{where}: field name: must be a non-empty string, got {name!r}")
    layers_raw = data.get("layers")
    if not isinstance(layers_raw, list) or not layers_raw:
        raise ProfileError(f"{where}: field layers: must be a non-empty list of layers, got {layers_raw!r:.60}")
    parsed = [_parse_layer(raw, f"{where}: field layers[{i}]") for i, raw in enumerate(layers_raw)]
    layers = []
    for i, p in enumerate(parsed):
        out_bits = p.get("out_bits", parsed[i + 1]["a_bits"] if i + 1 < len(parsed) else FLOAT_BITS)
        layers.append(LayerWorkload(p["name"] or f"layer{i}", p["op"], p["cin"], p["cout"], p["h"], p["w"], p["k"],
                                    p["stride"], p["groups"], p["w_bits"], p["a_bits"], out_bits, p["w_terms"]))
    values = {}
    for metric in NETWORK_METRICS:
        if metric not in data or data[metric] is None:
            continue
        v = data[metric]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ProfileError(f"{where}: field {metric}: must be a positive number, got {v!r}")
        values[metric] = float(v)
    notes = {k: v for k, v in data.items() if k not in ("name", "layers", *NETWORK_METRICS)}
    return NetworkRecord(name, tuple(layers), values, notes)


def read_network_table(path: str | Path) -> list[NetworkRecord]:
    """Read and validate a network table (JSON lines; blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: file not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read ({exc})") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{path}: line {n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        out.append(parse_network(data, f"{path}: line {n}"))
    if not out:
        raise ProfileError(f"{path}: no networks (expected one JSON object per line)")
    return out


def layer_dict(layer: LayerWorkload) -> dict[str, Any]:
    """A kernel as a network-table layer (``name``, ``out_bits``, ``w_terms`` only when they matter)."""
    d: dict[str, Any] = {"name": layer.name, "op": layer.op}
    d.update({col: getattr(layer, col) for col in LAYER_INTS})
    d["out_bits"] = layer.out_bits
    if layer.w_terms:
        d["w_terms"] = layer.w_terms
    return d


def network_line(record: NetworkRecord) -> str:
    """One record as its JSON line (metrics rounded to 6 significant digits)."""
    data: dict[str, Any] = {"name": record.name, "layers": [layer_dict(lw) for lw in record.layers]}
    data.update({m: float(f"{record.values[m]:.6g}") for m in NETWORK_METRICS if m in record.values})
    data.update(record.notes)
    return json.dumps(data, separators=(",", ":"))


def write_network_table(path: str | Path, records: list[NetworkRecord]) -> None:
    """Write records as a network table, atomically (the whole file or nothing)."""
    from flightco.atomic import write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(network_line(r) + "\n" for r in records))


def is_network_table(path: str | Path) -> bool:
    """Whether ``path`` is a network table (``.jsonl``/``.ndjson``, or a first line that is a JSON
    object) rather than a per-layer CSV."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return True
    try:
        with open(path) as fh:
            first = fh.readline().lstrip()
    except (OSError, UnicodeDecodeError):
        return False
    return first.startswith("{")
