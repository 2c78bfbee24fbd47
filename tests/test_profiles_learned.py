"""Measurement tables, measured and learned profiles, and the profile CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from flightco.errors import ProfileError
from flightco.hw.learned import LayerCostRegressor
from flightco.hw.profile import load_profile, profile_from_data
from flightco.hw.table import read_table

from conftest import BITFUSION, SPACE

HEADER = "op,cin,cout,h,w,k,stride,groups,w_bits,a_bits,latency_ms"


@parametrize_with_checks([LayerCostRegressor(n_estimators=30, learning_rate=0.1)])
def test_regressor_follows_the_sklearn_contract(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("conv,8,8,14,14,3,1,1,8,8\n", "row 1, column latency_ms: is required"),
        ("conv,8,-8,14,14,3,1,1,8,8,0.1\n", "row 1, column cout: must be > 0"),
        ("conv,8,8,14,14,3,1,1,8,8,0.1\nmatmul,8,8,1,1,1,1,1,8,8,0.1\n", "row 2, column op: must be one of conv, dwconv, linear"),
        ("dwconv,8,8,14,14,3,1,3,8,8,0.1\n", "row 1, column groups: must divide cin=8"),
        ("conv,8,8,14,14,3,1,1,8,8,abc\n", "row 1, column latency_ms: must be a number"),
    ],
)
def test_malformed_table_names_file_row_and_column(tmp_path, body, expected):
    path = tmp_path / "m.csv"
    path.write_text(HEADER + "\n" + body)
    with pytest.raises(ProfileError) as exc:
        read_table(path)
    assert str(path) in str(exc.value) and expected in str(exc.value) and "\n" not in str(exc.value)


def test_missing_columns_are_listed(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("op,cin,cout\nconv,1,2\n")
    with pytest.raises(ProfileError, match="missing column\\(s\\) h, w, k"):
        read_table(path)


def _synthetic_table(path, n=300, seed=0):
    """A table whose 'measurements' are the analytic BitFusion profile's latencies, with noise."""
    from flightco.measure import sample_layers
    from flightco.space import SearchSpace

    prof = load_profile(BITFUSION)
    rng = np.random.default_rng(seed)
    layers = sample_layers(SearchSpace.load(SPACE), n, seed)
    lines = [HEADER]
    for lw in layers:
        lat = prof.independent_layer_costs([lw])[0].latency_ms * 1e3 * (1 + rng.normal(0, 0.01))
        lines.append(f"{lw.op},{lw.cin},{lw.cout},{lw.h},{lw.w},{lw.k},{lw.stride},{lw.groups},{lw.w_bits},{lw.a_bits},{lat:.6g}")
    path.write_text("\n".join(lines) + "\n")
    return len(layers)


def test_fit_then_eval_learned_profile_on_held_out_rows(tmp_path, cli):
    full = tmp_path / "all.csv"
    n = _synthetic_table(full, 300)
    lines = full.read_text().splitlines()
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("\n".join([lines[0]] + lines[1::2]) + "\n")
    test.write_text("\n".join([lines[0]] + lines[2::2]) + "\n")
    prof = tmp_path / "learned.yaml"
    proc = cli("profile", "fit", train, "--out", prof, "--supported-bits", "2,4,8,16")  # BitFusion's bricks
    assert proc.returncode == 0, proc.stderr
    proc = cli("profile", "eval", prof, test, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) == {"latency_ms"}
    r = report["latency_ms"]
    assert set(r) == {"n", "mape", "rmspe", "acc10", "spearman"} and r["n"] == n // 2
    assert r["spearman"] > 0.9 and r["acc10"] >= 0.4


def test_measured_profile_refuses_unmeasured_layers(tmp_path, cli):
    table = tmp_path / "m.csv"
    table.write_text(HEADER + "\nconv,8,8,14,14,3,1,1,8,8,0.1\n")
    prof = tmp_path / "measured.yaml"
    assert cli("profile", "fit", table, "--out", prof, "--kind", "measured").returncode == 0
    p = load_profile(prof)
    from flightco.hw.table import read_table as rt

    layer = rt(table)[0].layer
    assert p.independent_layer_costs([layer])[0].latency_ms == pytest.approx(0.1)

    with pytest.raises(ProfileError, match="was not measured"):
        p.independent_layer_costs([layer._replace(cout=16)])


def test_calibrated_eval_of_analytic_profile(tmp_path, cli):
    table = tmp_path / "t.csv"
    _synthetic_table(table, 40)
    proc = cli("profile", "eval", BITFUSION, table, "--calibrate", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)["latency_ms"]
    # the table's layers write outputs at their own bits, the sampled ones at their consumer's: ~5% apart
    assert r["scale"] == pytest.approx(1e3, rel=0.15) and r["acc10"] > 0.5


def test_measure_fit_validate_on_onnxruntime(tmp_path, cli):
    """Real timings in onnxruntime: a few layers, a profile, two whole networks."""
    table = tmp_path / "ort.csv"
    proc = cli("profile", "measure", "--runtime", "onnxruntime", "--space", SPACE, "--out", table,
               "--layers", 12, "--repeats", 5)
    assert proc.returncode == 0, proc.stderr
    rows = read_table(table)
    assert len(rows) == 12 and all(r.values["latency_ms"] > 0 for r in rows)
    header = table.read_text().splitlines()[0]
    assert "runtime_version" in header and "threads" in header
    # layers are timed in interleaved passes, each row with its own run-to-run spread
    assert "timing_spread_pct" in header
    spreads = [float(r["timing_spread_pct"]) for r in csv.DictReader(table.read_text().splitlines())]
    assert len(spreads) == 12 and all(s >= 0 for s in spreads)
    # the other processes' load while timing is read and kept with the table
    assert "background_cores" in header
    assert all(float(r["background_cores"]) >= 0 for r in csv.DictReader(table.read_text().splitlines()))
    prof = tmp_path / "ort.yaml"
    assert cli("profile", "fit", table, "--out", prof).returncode == 0
    proc = cli("profile", "validate", prof, "--runtime", "onnxruntime", "--space", SPACE, "--networks", 2, "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])["latency_ms"]
    assert r["n"] == 2 and r["mape"] >= 0
    assert r["background_cores"] >= 0 and r["cores"] >= 1
    lo, hi = r["acc10_ci95"]
    assert 0 <= lo <= r["acc10"] <= hi <= 1 and hi - lo > 0.3  # two networks say little


def test_unknown_runtime_is_one_line_error(cli, tmp_path):
    proc = cli("profile", "measure", "--runtime", "tensorrt", "--out", tmp_path / "x.csv")
    assert proc.returncode == 2 and "--runtime must be one of onnxruntime, openvino" in proc.stderr
    assert "tensorrt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_network_calibration_recovers_scale_and_offset():
    from flightco.hw.learned import fit_network_calibration

    kernels = np.array([0.2, 0.3, 0.5, 0.8, 1.3])
    scale, offset = fit_network_calibration(kernels, 1.25 * kernels + 0.04)
    assert scale == pytest.approx(1.25) and offset == pytest.approx(0.04)


def test_network_correction_recovers_its_per_kernel_term_and_falls_back_where_it_cannot():
    from flightco.hw.learned import fit_network_correction

    kernels = np.array([0.2, 0.3, 0.5, 0.8, 1.3, 0.6, 0.9])
    counts = np.array([9, 12, 10, 15, 20, 8, 14])
    scale, per_kernel, offset = fit_network_correction(kernels, counts, 0.8 * kernels - 0.008 * counts + 0.15)
    assert (scale, per_kernel, offset) == pytest.approx((0.8, -0.008, 0.15))
    # too few networks, or no spread of kernel counts: the term cannot be told from the offset
    assert fit_network_correction(kernels[:4], counts[:4], 0.8 * kernels[:4] + 0.1)[1] == 0.0
    same = np.full(7, 10)
    scale, per_kernel, offset = fit_network_correction(kernels, same, 1.25 * kernels + 0.04)
    assert per_kernel == 0.0 and (scale, offset) == pytest.approx((1.25, 0.04))


def test_per_kernel_correction_is_paid_once_per_conv_or_linear_kernel(tmp_path, cli):
    from flightco.hw.table import TABLE_OPS
    from flightco.hw.workload import workload
    from flightco.measure import sample_genomes
    from flightco.space import SearchSpace
    from flightco.yamlio import read_yaml

    table = tmp_path / "t.csv"
    _synthetic_table(table, 60)
    prof_path = tmp_path / "l.yaml"
    assert cli("profile", "fit", table, "--out", prof_path).returncode == 0
    data = read_yaml(prof_path, Exception)
    g = workload(sample_genomes(SearchSpace.load(SPACE), 1, seed=0)[0])
    kernels = sum(x.op in TABLE_OPS for x in g)
    assert 0 < kernels < len(g)  # the network also has adds / pooling, which pay no per-kernel term
    plain = profile_from_data(data, "l").cost(g).latency_ms
    corrected = profile_from_data({**data, "network_per_kernel_ms": -1e-4}, "l").cost(g).latency_ms
    assert corrected - plain == pytest.approx(-1e-4 * kernels)


def test_learned_profile_caches_kernel_predictions(tmp_path, cli):
    from flightco.measure import sample_genomes
    from flightco.hw.workload import workload
    from flightco.space import SearchSpace

    table = tmp_path / "t.csv"
    _synthetic_table(table, 60)
    prof_path = tmp_path / "l.yaml"
    assert cli("profile", "fit", table, "--out", prof_path).returncode == 0
    prof = load_profile(prof_path)
    g = sample_genomes(SearchSpace.load(SPACE), 1, seed=0)[0]
    first = prof.cost(workload(g))
    cached = len(prof._cache)
    assert cached > 0 and prof.cost(workload(g)) == first and len(prof._cache) == cached


def test_calibrate_writes_the_correction_into_the_profile(tmp_path, cli):
    table = tmp_path / "ort.csv"
    assert cli("profile", "measure", "--space", SPACE, "--out", table, "--layers", 9, "--repeats", 5).returncode == 0
    prof = tmp_path / "ort.yaml"
    assert cli("profile", "fit", table, "--out", prof).returncode == 0
    proc = cli("profile", "calibrate", prof, "--space", SPACE, "--networks", 3)
    assert proc.returncode == 0, proc.stderr
    p = load_profile(prof)
    assert p.spec.network_scale > 0 and p.spec.network_calibration["networks"] == 3
    assert p.spec.network_per_kernel_ms == 0.0  # 3 networks cannot separate a per-kernel term: scale + offset
    assert p.spec.network_calibration["background_cores"] >= 0
    proc = cli("profile", "calibrate", BITFUSION, "--networks", 2)
    assert proc.returncode == 2 and "only learned or measured profiles" in proc.stderr


def test_measurement_records_what_onnxruntime_really_executes(tmp_path):
    from flightco.measure import measure_layers
    from flightco.hw.table import write_table
    from flightco.hw.workload import LayerWorkload

    layers = [LayerWorkload("a", "conv", 8, 8, 8, 8, 1, 1, 1, 8, 8, 8),
              LayerWorkload("b", "conv", 8, 8, 8, 8, 1, 1, 1, 4, 4, 4)]
    # the integer export (default): 8-bit and 4-bit layers both run as QLinearConv (no sub-8-bit kernel)
    assert [r.notes["executed_kernel"] for r in measure_layers(layers, threads=1, warmup=1, repeats=3)] == \
        ["integer (QLinearConv)"] * 2
    rows = list(measure_layers(layers, threads=1, warmup=1, repeats=3, fmt="qcdq"))
    kernels = [r.notes["executed_kernel"] for r in rows]
    assert all(k.startswith(("integer", "float")) for k in kernels)
    # QCDQ: a 4-bit layer keeps its clip between dequantization and the convolution: never an int8 kernel
    assert kernels[1] == "float between Q/DQ"
    path = tmp_path / "t.csv"
    write_table(path, rows)
    assert [r["executed_kernel"] for r in csv.DictReader(open(path))] == kernels
    assert len(read_table(path)) == 2  # extra columns are ignored by readers
