"""Measure the tables that ``benchmarks/block_models.py`` learns from and scores on (cached).

Writes under ``--dir`` (default ``outputs/block_models/``, git-ignored):
  networks-{default,flightnn}.jsonl  random networks of the default and FLightNN spaces (onnxruntime, batch 1:
                  latency and peak memory), with ``export_s``/``measure_s`` per network;
  layers.csv      single fused layers of the default space (the per-layer route), with the
                  seconds each took to export and time (``measure_s``);
  archs.jsonl     a few well-known architectures (small torch definitions, float ONNX), their
                  workloads read back from the ONNX files.

Networks are measured in chunks and the table rewritten (atomically) after each chunk, so an
interrupted run resumes where it stopped. Usage:
  python benchmarks/block_tables.py [--default 160] [--flight 140] [--layers 120] [--only networks,layers,archs]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from flightco.hw.network_table import NetworkRecord, read_network_table, write_network_table

ROOT = Path(__file__).resolve().parents[1]
SPACES = {"default": ROOT / "search_spaces" / "mobilenet.yaml", "flightnn": ROOT / "search_spaces" / "mobilenet_flightnn.yaml"}


def measure_space_networks(out: Path, onnx_dir: Path, counts: dict[str, int], threads: int, chunk: int = 20,
                           part: str = "") -> None:
    from flightco.hw.workload import workload
    from flightco.measure import export_genome_network, measure_onnx_networks, sample_genomes
    from flightco.space import SearchSpace

    records = read_network_table(out) if out.is_file() else []
    have = {r.name for r in records}
    per_space = []
    for label, n in counts.items():
        seed = {"default": 10, "flightnn": 20}[label] + (1000 if part else 0)
        per_space.append([(f"{label}{part}-{i}", label, seed, g)
                          for i, g in enumerate(sample_genomes(SearchSpace.load(SPACES[label]), n, seed))])
    # alternate the spaces, so that an interrupted run still holds both
    todo = [x for i in range(max(counts.values(), default=0)) for lst in per_space if i < len(lst)
            for x in [lst[i]] if x[0] not in have]
    onnx_dir.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        paths, export_s = [], []
        for name, *_, g in part:
            t = time.perf_counter()
            path = onnx_dir / f"{name}.onnx"
            export_genome_network(g, path)
            paths.append(path)
            export_s.append(time.perf_counter() - t)
        values = measure_onnx_networks(paths, threads)
        for (name, label, seed, g), v, e in zip(part, values, export_s):
            notes = {"space": label, "seed": seed, "threads": threads, "export_s": round(e, 3),
                     "measure_s": round(v.pop("measure_s"), 3), "genome": g.to_dict()}
            records.append(NetworkRecord(name, tuple(workload(g)), v, notes))
        write_network_table(out, records)
        print(f"{time.strftime('%H:%M:%S')} {len(records)} networks in {out}", flush=True)


def _tiny_graph(path: Path, op: str, shape: list[int]) -> None:
    import onnx
    from onnx import TensorProto, helper

    ins = ["a", "b"] if op == "Add" else ["a"]
    graph = helper.make_graph([helper.make_node(op, ins, ["c"])], op.lower(),
                              [helper.make_tensor_value_info(i, TensorProto.FLOAT, shape) for i in ins],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def measure_layer_table(out: Path, n: int, threads: int, rounds: int = 3) -> None:
    """Single fused layers exported as `profile measure` exports them, timed like the networks (the
    lowest run of ``rounds`` passes), with the per-call overhead and the element-wise cost."""
    import onnxruntime as ort
    import torch

    from flightco.hw.table import MeasuredLayer, write_table
    from flightco.measure import _export, _layer_module, _prepare, _random_feeds, _session, sample_layers
    from flightco.measure import time_session_lowest
    from flightco.space import SearchSpace

    layers = sample_layers(SearchSpace.load(SPACES["default"]), n, seed=0)
    tmp = out.parent / "layer_onnx"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, layer in enumerate(layers):
        t = time.perf_counter()
        torch.manual_seed(i)
        model = _layer_module(layer)
        shape = (1, layer.cin, layer.h, layer.w) if layer.op != "linear" else (1, layer.cin, 1, 1)
        x = torch.randn(*shape)
        _prepare(model, x)
        path = tmp / f"layer{i}.onnx"
        _export(model, x, path)
        sess = _session(path, threads)
        feeds = _random_feeds(sess)
        ms = min(time_session_lowest(sess, feeds, 20, 100) for _ in range(rounds))
        rows.append(MeasuredLayer(layer, {"latency_ms": ms}, {"measure_s": f"{time.perf_counter() - t:.3f}"}))
    elements = 64 * 14 * 14
    _tiny_graph(tmp / "add.onnx", "Add", [1, elements])
    _tiny_graph(tmp / "id.onnx", "Identity", [1, 16])
    add, ident = _session(tmp / "add.onnx", threads), _session(tmp / "id.onnx", threads)
    overhead = min(time_session_lowest(ident, _random_feeds(ident), 20, 200) for _ in range(rounds))
    ns = min(time_session_lowest(add, _random_feeds(add), 20, 200) for _ in range(rounds)) * 1e6 / elements
    write_table(out, rows, {"runtime": "onnxruntime", "runtime_version": ort.__version__, "threads": threads,
                            "elementwise_ns_per_element": f"{ns:.4g}", "session_overhead_ms": f"{overhead:.4g}"})
    print(f"{time.strftime('%H:%M:%S')} {len(rows)} layers in {out}", flush=True)


def retime_networks(table: Path, onnx_dir: Path, threads: int) -> None:
    """Time a table's networks again from their ONNX files (lowest run of 3 interleaved passes),
    keeping memory and the original measuring seconds (what a user pays to measure one)."""
    from flightco.measure import measure_onnx_networks

    records = read_network_table(table)
    values = measure_onnx_networks([onnx_dir / f"{r.name}.onnx" for r in records], threads, memory=False)
    out = [NetworkRecord(r.name, r.layers, {**r.values, "latency_ms": v["latency_ms"]},
                         {**r.notes, "latency": "fastest run, 3+ interleaved passes of 100 runs, busy spells rejected"})
           for r, v in zip(records, values)]
    write_network_table(table, out)
    print(f"{time.strftime('%H:%M:%S')} re-timed {len(out)} networks in {table}", flush=True)


def measure_archs(out: Path, onnx_dir: Path, threads: int) -> None:
    from benchmarks.archs import ARCHS, export_arch
    from flightco.hw.onnx_workload import workload_from_onnx
    from flightco.measure import measure_onnx_networks

    onnx_dir.mkdir(parents=True, exist_ok=True)
    paths, names, export_s = [], [], []
    for name in ARCHS:
        t = time.perf_counter()
        path = onnx_dir / f"{name}.onnx"
        export_arch(name, path)
        paths.append(path)
        names.append(name)
        export_s.append(time.perf_counter() - t)
    values = measure_onnx_networks(paths, threads)
    records = [NetworkRecord(n, tuple(workload_from_onnx(p)), v, {"source": p.name, "threads": threads,
                             "export_s": round(e, 3), "measure_s": round(v.pop("measure_s"), 3)})
               for n, p, v, e in zip(names, paths, values, export_s)]
    write_network_table(out, records)
    print(f"{time.strftime('%H:%M:%S')} {len(records)} architectures in {out}", flush=True)


def main() -> None:
    import torch

    torch.set_num_threads(1)  # exporting is Python-bound; more threads only fight on a loaded machine
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=ROOT / "outputs" / "block_models")
    ap.add_argument("--default", type=int, default=160)
    ap.add_argument("--flight", type=int, default=140)
    ap.add_argument("--layers", type=int, default=120)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="networks,layers,archs")
    ap.add_argument("--part", default="", help="e.g. -b: measure another sample of both spaces into networks-b.jsonl")
    ap.add_argument("--chunk", type=int, default=15, help="networks exported, then timed together")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    if "networks" in parts:  # one table per space, so that two processes can measure them side by side
        if args.part:  # a second, independent sample of both spaces in its own table (a parallel measurer)
            measure_space_networks(args.dir / f"networks{args.part}.jsonl", args.dir / "onnx",
                                   {"default": args.default, "flightnn": args.flight}, args.threads, args.chunk, args.part)
        for label, n in (("default", args.default), ("flightnn", args.flight)):
            if n and not args.part:
                measure_space_networks(args.dir / f"networks-{label}.jsonl", args.dir / "onnx", {label: n},
                                       args.threads, args.chunk)
    if "layers" in parts and not (args.dir / "layers.csv").is_file():
        measure_layer_table(args.dir / "layers.csv", args.layers, args.threads)
    if "retime" in parts:
        for table in sorted(args.dir.glob("networks*.jsonl")):
            retime_networks(table, args.dir / "onnx", args.threads)
    if "archs" in parts:
        measure_archs(args.dir / "archs.jsonl", args.dir / "onnx", args.threads)


if __name__ == "__main__":
    main()
