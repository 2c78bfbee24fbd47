"""The quiet-machine check: other processes' load read from the kernel's counters."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from flightco.machine_load import LoadMeter, background_cores, cores, wait_for_quiet

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux only)")


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_busy_child_process_counts_as_other_work():
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start
        busy = background_cores(1.0)
    finally:
        child.kill()
        child.wait()
    assert 0.6 <= busy <= cores() + 0.1


def test_this_process_own_work_is_not_counted():
    before = background_cores(0.5)
    if before > 0.2:
        pytest.skip(f"the machine is busy ({before:.2f} cores used by other processes): cannot isolate own work")
    meter = LoadMeter()
    _spin(1.0)  # one full core of *our own* work
    assert meter.read() < 0.5


def test_wait_for_quiet_gives_up_after_its_limit():
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        t = time.monotonic()
        load = wait_for_quiet(max_wait_s=0.6, window_s=0.3)
        waited = time.monotonic() - t
    finally:
        child.kill()
        child.wait()
    assert load >= 0.6 and 0.5 <= waited < 3.0


def test_interleaved_timing_reports_the_load_and_both_statistics(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from flightco.measure import LAST_BACKGROUND, _session, interleaved_timing

    graph = helper.make_graph([helper.make_node("Relu", ["a"], ["b"])], "g",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4096])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4096])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    sess = _session(path, 1)
    feeds = [{"a": np.ones((1, 4096), np.float32)}]
    block, _ = interleaved_timing([sess], feeds, warmup=2, repeats=15, rounds=2, max_rounds=2)
    assert LAST_BACKGROUND["cores"] >= 1 and LAST_BACKGROUND["mean_cores"] >= 0
    assert 0 <= LAST_BACKGROUND["busy_share"] <= 1 and LAST_BACKGROUND["rounds"] >= 2
    lowest, _ = interleaved_timing([sess], feeds, warmup=2, repeats=15, rounds=2, max_rounds=2, statistic="lowest")
    assert np.isfinite(lowest[0]) and np.isfinite(block[0]) and 0 < lowest[0] and 0 < block[0]
    with pytest.raises(ValueError, match="statistic must be one of"):
        interleaved_timing([sess], feeds, warmup=1, repeats=3, statistic="mean")


def test_timings_from_busy_spells_do_not_count_while_quiet_ones_exist():
    from flightco.measure import busy_spell_limit, counted_timings

    # a job that comes and goes: stretches of ~0 and ~1.9 busy cores
    stretches = [0.0, 0.1, 1.9, 2.0, 0.0, 1.8, 0.05, 1.9, 0.0, 2.0]
    limit = busy_spell_limit(stretches)
    assert 0.3 <= limit < 0.5
    # slow-but-agreeing timings from busy spells are dropped; the quiet one is kept
    assert counted_timings([1.30, 1.31, 1.00], [1.9, 2.0, 0.0], limit) == [1.00]
    # only busy timings: keep them all (a reading beats none), unknown loads count as quiet
    assert counted_timings([1.3, 1.31], [1.9, 2.0], limit) == [1.3, 1.31]
    assert counted_timings([1.3, 1.0], [float("nan"), 1.9], limit) == [1.3]
    # a steady load: every stretch alike, every timing counts
    steady = [1.6, 1.7, 1.65, 1.55, 1.7, 1.6]
    assert counted_timings([1.1, 1.0, 1.05], [1.6, 1.7, 1.65], busy_spell_limit(steady)) == [1.1, 1.0, 1.05]
    assert busy_spell_limit([float("nan")]) == float("inf")
