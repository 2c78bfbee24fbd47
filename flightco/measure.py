"""Measure layers and whole networks in onnxruntime, as users deploy them.

This module sits above `flightco.hw` and `flightco.nn`: it builds torch models, exports them and
times them, so `hw/` stays torch-free and only prices workloads.

Every measured graph is produced by the same export path as ``flightco export`` (by default its
``onnx-int`` deploy form, whose quantized layers onnxruntime runs as integer kernels; ``qcdq``
on request), so the timings are of what a user would run: onnxruntime's CPU
provider with its default optimizations, batch 1. Each timing takes ``repeats`` runs after
``warmup`` runs and keeps the lowest median of five blocks of them (see ``time_session``), with the
thread count recorded.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from flightco.hw.table import TABLE_OPS, MeasuredLayer, layer_key
from flightco.hw.workload import LayerWorkload, workload
from flightco.space import Genome, SearchSpace


def sample_genomes(space: SearchSpace, n: int, seed: int, in_channels: int = 1, resolution: int = 28,
                   num_classes: int = 10) -> list[Genome]:
    """``n`` random Genomes of the space (Optuna's RandomSampler, seeded)."""
    import optuna

    from flightco.space import sample_genome

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [sample_genome(study.ask(), space, in_channels=in_channels, resolution=resolution,
                          num_classes=num_classes) for _ in range(n)]


def sample_layers(space: SearchSpace, n: int, seed: int, **io: int) -> list[LayerWorkload]:
    """Up to ``n`` distinct conv/dwconv/linear kernels drawn from random networks of the space."""
    seen: dict[tuple, LayerWorkload] = {}
    for genome in sample_genomes(space, max(4, n), seed, **io):
        for layer in workload(genome):
            if layer.op in TABLE_OPS and layer_key(layer) not in seen:
                seen[layer_key(layer)] = layer
        if len(seen) >= n:
            break
    # one of every op first, so that even a small sample covers every op a network needs,
    # then the rest in random order (keeping the space's natural mix of ops)
    rng = np.random.default_rng(seed)
    layers = list(seen.values())
    rng.shuffle(layers)
    first = [next(lw for lw in layers if lw.op == op) for op in TABLE_OPS if any(lw.op == op for lw in layers)]
    rest = [lw for lw in layers if all(lw is not f for f in first)]
    return (first + rest)[:n]


def time_session(sess, feeds: dict[str, np.ndarray], warmup: int, repeats: int, blocks: int = 5,
                 tolerance: float = 0.03, max_tries: int = 3) -> float:
    """Robust wall time of one run, in milliseconds: the lowest of ``blocks`` block medians,
    measured again (up to ``max_tries`` times) while the two quietest blocks disagree by more
    than ``tolerance``.

    On a shared machine another process occasionally takes the core for a few milliseconds,
    which shifts a plain median of sub-millisecond runs by tens of percent. Splitting the
    repeats into blocks and keeping the quietest block's median filters such bursts while
    still averaging the ordinary run-to-run jitter inside each block; requiring two blocks to
    agree rejects a timing taken while the machine was busy throughout all but one block.
    """
    return time_session_stats(sess, feeds, warmup, repeats, blocks, tolerance, max_tries)[0]


def time_session_stats(sess, feeds: dict[str, np.ndarray], warmup: int, repeats: int, blocks: int = 5,
                       tolerance: float = 0.03, max_tries: int = 3) -> tuple[float, float]:
    """``(ms, spread)``: the timing of :func:`time_session` and the relative gap between its two
    quietest block medians (how far the timing itself can be trusted)."""
    for _ in range(warmup):
        sess.run(None, feeds)
    blocks = max(1, min(blocks, repeats // 3))
    size = max(1, repeats // blocks)
    medians: list[float] = []
    for _ in range(max(1, max_tries)):
        for _ in range(blocks):
            times = []
            for _ in range(size):
                t = time.perf_counter()
                sess.run(None, feeds)
                times.append(time.perf_counter() - t)
            medians.append(statistics.median(times))
        best = sorted(medians)
        spread = (best[1] - best[0]) / best[0] if len(best) > 1 else 0.0
        if spread <= tolerance:
            break
    return best[0] * 1e3, spread


def _session(path: Path, threads: int, optimized_path: Path | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


ROUNDS = 3  # interleaved passes over whole networks (see measure_networks)


def runtime_session(path: Path, threads: int, runtime: str = "onnxruntime"):
    """A batch-1 session of the ONNX file ``path`` in ``runtime`` (a :mod:`flightco.runtimes`
    plug-in: its artifact is built beside the file) and a one-line summary of what it compiled."""
    from flightco.runtimes import get_runtime

    _, plugin = get_runtime(runtime)
    artifact = plugin.compile(Path(path), Path(path).with_name(f"{Path(path).stem}.{runtime}.b1"), 1, threads,
                              **dict(get_runtime(runtime)[0].options))
    e = plugin.executed(artifact, threads)
    ints = sum(n["precision"] != "float" for n in e.get("nodes", []))
    return plugin.load(artifact, threads), f"{runtime}: {ints}/{len(e.get('nodes', []))} compute nodes integer"

INTEGER_KERNELS = ("QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QGemm")


def executed_kernel(optimized_path: Path) -> str:
    """What onnxruntime really runs after its graph optimizations: an integer kernel, or a float
    convolution between QuantizeLinear/DequantizeLinear nodes."""
    import onnx

    ops = {n.op_type for n in onnx.load(str(optimized_path)).graph.node}
    integer = sorted(ops & set(INTEGER_KERNELS))
    return f"integer ({', '.join(integer)})" if integer else "float between Q/DQ"


FORMATS = ("onnx-int", "qcdq")  # how measured kernels are exported (flightco export --format)


def _layer_module(layer: LayerWorkload, fmt: str = "onnx-int"):
    """The deployed form of one kernel: input quantizer, (quantized) conv or linear, BN (folded
    into a conv bias for ``onnx-int``, as the deploy form has it), ReLU quantizer."""
    import torch.nn as nn

    from flightco.nn import quant
    from flightco.nn.mobilenet import ConvBNAct

    if layer.op == "linear":
        return nn.Sequential(nn.Flatten(), quant.identity(layer.a_bits, 1),
                             quant.linear(layer.cin, layer.cout, w_bits=layer.w_bits))
    folded = fmt == "onnx-int"
    conv = quant.conv2d(layer.cin, layer.cout, layer.k, layer.stride, layer.groups, w_bits=layer.w_bits, bias=folded)
    block = ConvBNAct(conv, layer.cout, quant.relu(layer.out_bits, 1))
    if folded:
        block.bn = nn.Identity()
    return nn.Sequential(quant.identity(layer.a_bits, 1), block)


def _prepare(model, x) -> None:
    """One training-mode pass so every activation quantizer has a scale, then eval mode."""
    import torch

    model.train()
    with torch.no_grad():
        model(x)
        model(x)
    model.eval()


def _export(model, x, path: Path, fmt: str = "onnx-int") -> None:
    from flightco.export import _brevitas_qcdq, export_onnx, export_onnx_int

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "onnx-int":
            from flightco.nn.deploy import snap_biases
            from flightco.onnx_passes import bias_scales

            snap_biases(model, bias_scales(_brevitas_qcdq(model, x, path)))
            export_onnx_int(model, x, path)
        else:
            export_onnx(model, x, path)


def measure_layers(layers: list[LayerWorkload], threads: int, warmup: int = 10, repeats: int = 50,
                   progress: Callable[[int], None] | None = None, fmt: str = "onnx-int",
                   runtime: str = "onnxruntime", rounds: int = ROUNDS, tolerance: float = 0.03,
                   max_rounds: int = 3 * ROUNDS, seed: int = 0, statistic: str = "block-median",
                   wait_quiet_s: float = 0.0) -> Iterator[MeasuredLayer]:
    """Build, export (as ``fmt``: by default the integer form ``flightco export`` writes, so
    quantized layers are timed as the QLinearConv kernels onnxruntime runs; sub-8-bit layers
    run on the same 8-bit kernels) and time each kernel at batch 1; yields one measurement per
    layer, noting the kernel onnxruntime really executed and the timing's own spread.

    Every layer is exported first, then all are timed together in interleaved passes
    (:func:`interleaved_timing`, the rule whole networks use): timed one after another, a slow
    spell of a shared machine lands on a run of consecutive layers and skews the table; spread
    over passes in random order, it touches every layer a little, and a layer whose two quietest
    passes disagree is timed again."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        sessions, feeds, kernels = [], [], []
        for i, layer in enumerate(layers):
            torch.manual_seed(i)
            model = _layer_module(layer, fmt)
            shape = (1, layer.cin, layer.h, layer.w) if layer.op != "linear" else (1, layer.cin, 1, 1)
            x = torch.randn(*shape)
            _prepare(model, x)
            path = Path(tmp) / f"layer{i}.onnx"
            _export(model, x, path, fmt)
            optimized = Path(tmp) / f"layer{i}.opt.onnx"
            if runtime != "onnxruntime":  # another runtime's artifact of the same exported layer
                sess, kernel = runtime_session(path, threads, runtime)
            else:
                sess = _session(path, threads, optimized)
                kernel = executed_kernel(optimized)
            sessions.append(sess)
            feeds.append({"input": x.numpy()})
            kernels.append(kernel)
            if progress:
                progress(i + 1)
        best, gaps = interleaved_timing(sessions, feeds, warmup, repeats, rounds, tolerance, max_rounds, seed,
                                        statistic=statistic, wait_quiet_s=wait_quiet_s)
        for layer, ms, gap, kernel in zip(layers, best, gaps, kernels):
            notes = {"executed_kernel": kernel}
            if np.isfinite(gap):
                notes["timing_spread_pct"] = f"{100 * gap:.2f}"
            yield MeasuredLayer(layer, {"latency_ms": ms}, notes)


def measure_elementwise_ns(threads: int, elements: int = 64 * 14 * 14, warmup: int = 10, repeats: int = 200) -> float:
    """Nanoseconds per element of a float Add in onnxruntime (residual adds and pooling)."""
    import onnx
    from onnx import TensorProto, helper

    shape = [1, elements]
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"])], "add",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, shape),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, shape)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "add.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
        a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        ms = time_session(_session(path, threads), {"a": a, "b": a}, warmup, repeats)
    return ms * 1e6 / elements


def measure_session_overhead_ms(threads: int, warmup: int = 20, repeats: int = 200) -> float:
    """Time of one ``InferenceSession.run`` on a trivial graph (batch-1 Identity): the fixed cost
    that every single-layer timing includes but a whole network pays only once."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["a"], ["b"])], "id",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 16])])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "id.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
        return time_session(_session(path, threads), {"a": np.zeros((1, 16), np.float32)}, warmup, repeats)


def _export_network(genome: Genome, path: Path, fmt: str = "onnx-int") -> np.ndarray:
    """Export a randomly initialised (calibrated) network as ``flightco export`` does; returns an input."""
    import torch

    from flightco.nn.mobilenet import build_model

    torch.manual_seed(0)
    model = build_model(genome, collect_stats_steps=1)
    x = torch.randn(1, genome.in_channels, genome.resolution, genome.resolution)
    calib = torch.randn(8, genome.in_channels, genome.resolution, genome.resolution)
    _prepare(model, calib)
    if fmt == "onnx-int":
        from flightco.nn.deploy import fold_for_deploy

        model = fold_for_deploy(model, calib)
    _export(model, x, path, fmt)
    return x.numpy()


LAST_SPREAD: dict[str, float] = {}
"""Run-to-run spread of the latest :func:`measure_networks` call (median and max, in %), so that
reports can put the measurement's own noise next to a predictor's error."""


def _record_spread(gaps: list[float], tolerance: float) -> None:
    """Summarise the gaps between each network's two quietest passes into ``LAST_SPREAD``."""
    finite = [g for g in gaps if np.isfinite(g)]
    LAST_SPREAD.clear()
    if finite:
        LAST_SPREAD.update({"median_pct": float(np.median(finite) * 100), "max_pct": float(max(finite) * 100),
                            "unsettled": float(sum(g > tolerance for g in finite))})


def measure_networks(genomes: list[Genome], threads: int, warmup: int = 20, repeats: int = 100, rounds: int = ROUNDS,
                     seed: int = 0, progress: Callable[[int], None] | None = None, tolerance: float = 0.03,
                     max_rounds: int = 3 * ROUNDS, fmt: str = "onnx-int", runtime: str = "onnxruntime",
                     statistic: str = "block-median", wait_quiet_s: float = 0.0) -> list[float]:
    """Batch-1 latency (ms) of several networks (exported as ``fmt``), timed together in
    interleaved passes with noisy timings rejected (:func:`interleaved_timing`), so that networks
    measured together (a calibration set and a validation set, say) are compared under the same
    conditions. The spread left (second-quietest over quietest pass) is stored in ``LAST_SPREAD``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        sessions, feeds = [], []
        for i, genome in enumerate(genomes):
            path = Path(tmp) / f"net{i}.onnx"
            feeds.append({"input": _export_network(genome, path, fmt)})
            sessions.append(_session(path, threads) if runtime == "onnxruntime" else runtime_session(path, threads, runtime)[0])
            if progress:
                progress(i + 1)
        best, gaps = interleaved_timing(
            sessions, feeds, warmup, repeats, rounds, tolerance, max_rounds, seed,
            after_pass=(lambda r: progress(len(genomes) * (min(r, rounds) + 1))) if progress else None,
            statistic=statistic, wait_quiet_s=wait_quiet_s)
    _record_spread(gaps, tolerance)
    return best


LAST_BACKGROUND: dict[str, Any] = {}
"""Other processes' load during the latest :func:`interleaved_timing` call, in busy cores
(``mean_cores`` over the whole timing; ``kept_cores``: mean over the stretches each session's
kept timing came from; ``busy_share``: share of stretches rejected as busy spells; ``rounds``:
passes run; ``cores``: CPUs available), so that a report can say whether it timed a quiet machine."""

STATISTICS = ("block-median", "lowest")
"""How one pass reduces its timed runs: ``block-median`` (:func:`time_session`, the lowest of 5
block medians: averages ordinary jitter) or ``lowest`` (:func:`time_session_lowest`, the fastest
single run: the run most likely to have had the core and its caches to itself)."""


SPELL_WINDOW_S = 0.2
"""Timings are grouped into stretches of at least this long, each with the other processes' load
read over it: long enough for the kernel's clock ticks (see :class:`LoadMeter`), short against
the seconds-long phases of a training job (train, evaluate, export) running beside it."""


def busy_spell_limit(stretch_loads: list[float]) -> float:
    """Busy cores above which a stretch of timing was a busy spell: the measurement's quiet
    stretches (10th percentile of all its stretches) plus ``SPELL_MARGIN``; ``inf`` if unknown."""
    from flightco.machine_load import SPELL_MARGIN

    finite = [x for x in stretch_loads if np.isfinite(x)]
    return float(np.percentile(finite, 10)) + SPELL_MARGIN if finite else float("inf")


def counted_timings(times: list[float], loads: list[float], limit: float) -> list[float]:
    """The timings of one session that count: those not taken in a busy spell (load above
    ``limit``; an unknown load counts), or all of them if every one was."""
    quiet = [t for t, load in zip(times, loads) if not load > limit]
    return quiet or list(times)


def interleaved_timing(sessions: list, feeds: list[dict[str, np.ndarray]], warmup: int, repeats: int,
                       rounds: int = ROUNDS, tolerance: float = 0.03, max_rounds: int = 3 * ROUNDS, seed: int = 0,
                       after_pass: Callable[[int], None] | None = None, statistic: str = "block-median",
                       wait_quiet_s: float = 0.0, elapsed: list[float] | None = None) -> tuple[list[float], list[float]]:
    """``(ms, gap)`` per session: its quietest of several interleaved timing passes, and the
    relative gap between its two quietest passes (``inf`` with fewer than two).

    Each pass times every session (:func:`time_session`) in a new random order, so a slow spell
    of the machine touches every session a little instead of a few sessions a lot, and sessions
    timed together (calibration and validation sets, a layer table) see the same conditions.

    Busy spells are rejected: timings are grouped into stretches of ``SPELL_WINDOW_S`` with the
    other processes' load read over each (:mod:`flightco.machine_load`), and a timing taken in a
    stretch busier than the measurement's quiet stretches (10th percentile + ``SPELL_MARGIN``
    cores) does not count while the session has others. Under a steady load every stretch is
    alike and all count; under a job that comes and goes (a search training, then evaluating)
    a session timed only in its busy phases would otherwise keep a slow timing whose passes agree.

    After ``rounds`` passes, a session whose two quietest counted passes still differ by more
    than ``tolerance`` (or that has fewer than two) gets further passes, up to ``max_rounds`` in
    all. Loads are summarised in ``LAST_BACKGROUND``; with ``wait_quiet_s``, each pass first waits
    up to that long for the machine to go quiet. ``elapsed``, if given, accumulates each
    session's seconds of timing (for budgets)."""
    from flightco.machine_load import LoadMeter, cores, wait_for_quiet

    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    timer = time_session_lowest if statistic == "lowest" else time_session
    rng = np.random.default_rng(seed)
    passes: list[list[float]] = [[] for _ in sessions]
    loads: list[list[float]] = [[] for _ in sessions]  # other processes' busy cores around each timing
    stretch_loads: list[float] = []

    def gap(i: int, limit: float) -> float:
        b = sorted(counted_timings(passes[i], loads[i], limit))
        return (b[1] - b[0]) / b[0] if len(b) > 1 else float("inf")

    todo = list(range(len(sessions)))
    r = 0
    whole, stretch = LoadMeter(), LoadMeter()
    pending: list[tuple[int, int]] = []  # (session, timing) pairs of the open stretch

    def close_stretch() -> None:
        load = stretch.read()
        stretch_loads.append(load)
        for i, k in pending:
            loads[i][k] = load
        pending.clear()
        stretch.start()

    while todo and r < max(rounds, max_rounds):
        if wait_quiet_s > 0:
            if pending:
                close_stretch()
            wait_for_quiet(wait_quiet_s)
            stretch.start()
        for i in rng.permutation(todo):
            t0 = time.perf_counter()
            passes[i].append(timer(sessions[i], feeds[i], warmup, repeats))
            if elapsed is not None:
                elapsed[i] += time.perf_counter() - t0
            loads[i].append(float("nan"))  # known once its stretch closes; stretches span passes
            pending.append((i, len(loads[i]) - 1))
            if stretch.seconds >= SPELL_WINDOW_S:
                close_stretch()
        if stretch.seconds >= SPELL_WINDOW_S / 2:
            close_stretch()
        r += 1
        if after_pass:
            after_pass(r)
        if r >= rounds:
            limit = busy_spell_limit(stretch_loads)
            todo = [i for i in todo if gap(i, limit) > tolerance]
    if pending:
        close_stretch()
    limit = busy_spell_limit(stretch_loads)
    best = [min(counted_timings(passes[i], loads[i], limit)) for i in range(len(sessions))]
    kept = [loads[i][passes[i].index(best[i])] for i in range(len(sessions))]
    LAST_BACKGROUND.clear()
    LAST_BACKGROUND["cores"] = float(cores())
    mean = whole.read()
    if np.isfinite(mean):
        finite = [x for x in stretch_loads if np.isfinite(x)]
        LAST_BACKGROUND.update(mean_cores=float(mean), kept_cores=float(np.nanmean(kept)) if kept else float(mean),
                               busy_share=float(np.mean([x > limit for x in finite])) if finite else 0.0,
                               rounds=float(r))
    return best, [gap(i, limit) for i in range(len(sessions))]


# ---- whole networks from ONNX files: latency and peak memory (network tables) ---------------

def export_genome_network(genome: Genome, path: Path) -> np.ndarray:
    """Export a randomly initialised, calibrated network of ``genome`` to ``path`` exactly as
    ``flightco export`` writes it; returns an example input."""
    return _export_network(genome, Path(path))


def _random_feeds(sess, seed: int = 0) -> dict[str, np.ndarray]:
    """Batch-1 random float inputs for every graph input (dynamic dimensions set to 1)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def peak_memory_kb(path: Path, threads: int = 1, runs: int = 200, timeout_s: float = 300.0) -> float:
    """Peak heap KB an onnxruntime session of ``path`` holds over ``runs`` batch-1 runs, measured in
    a fresh process (see :mod:`flightco.ort_memory` for what exactly is counted)."""
    import subprocess
    import sys

    from flightco.errors import ProfileError

    script = Path(__file__).with_name("ort_memory.py")
    proc = subprocess.run([sys.executable, str(script), str(path), str(threads), str(runs)],
                          capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProfileError(f"{path}: onnxruntime memory measurement failed: {last}")
    return float(proc.stdout.strip().splitlines()[-1])


def time_session_lowest(sess, feeds: dict[str, np.ndarray], warmup: int, repeats: int) -> float:
    """Lowest wall time of ``repeats`` runs after ``warmup``, in milliseconds.

    For heavily shared machines: with a load of ~11 on 2 cores, the median run of a 1.7 ms network
    measured 35 ms (most runs were preempted) while the lowest stayed within ~10 % between passes.
    The lowest run is the one no other process interrupted, which is the cost being modelled."""
    for _ in range(warmup):
        sess.run(None, feeds)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feeds)
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def measure_onnx_networks(paths: list[Path], threads: int, warmup: int = 20, repeats: int = 100,
                          rounds: int = ROUNDS, seed: int = 0, memory: bool = True,
                          progress: Callable[[int], None] | None = None, tolerance: float = 0.03,
                          max_rounds: int = 3 * ROUNDS, wait_quiet_s: float = 0.0) -> list[dict[str, float]]:
    """Batch-1 latency (ms) and, with ``memory``, peak heap memory (KB) of ONNX files.

    Latency: interleaved passes over the networks (:func:`interleaved_timing`: busy spells
    rejected, further passes until two agree within ``tolerance``), each pass keeping a network's
    lowest run (:func:`time_session_lowest`: the estimator that survives a heavily loaded
    machine); the load and spread are left in ``LAST_BACKGROUND`` and ``LAST_SPREAD``. Memory:
    :func:`peak_memory_kb`, one fresh process per file. Each result also holds ``measure_s``, the
    seconds spent measuring that network (for budgets), and ``spread_pct``, the gap between its
    two quietest passes.
    """
    sessions, feeds, seconds = [], [], []
    for p in paths:
        t = time.perf_counter()
        sess = _session(Path(p), threads)
        sessions.append(sess)
        feeds.append(_random_feeds(sess))
        seconds.append(time.perf_counter() - t)
    n = len(paths)
    best, gaps = interleaved_timing(
        sessions, feeds, warmup, repeats, rounds, tolerance, max_rounds, seed,
        after_pass=(lambda r: progress(n * min(r, rounds))) if progress else None,
        statistic="lowest", wait_quiet_s=wait_quiet_s, elapsed=seconds)
    _record_spread(gaps, tolerance)
    done = n * rounds
    out = []
    for i, p in enumerate(paths):
        values = {"latency_ms": best[i]}
        if np.isfinite(gaps[i]):
            values["spread_pct"] = 100 * gaps[i]
        if memory:
            t = time.perf_counter()
            values["memory_kb"] = peak_memory_kb(Path(p), threads)
            seconds[i] += time.perf_counter() - t
        values["measure_s"] = seconds[i]
        out.append(values)
        if progress:
            progress(done + i + 1)
    return out
